//! JSON text walked without recursion (issue 26): PostgreSQL accepts jsonb nested far
//! deeper than serde_json's parser (128 levels), so nothing that reads a `details`
//! value or a jsonb column for a data subject parses it into a tree. Each function
//! here walks the text once, left to right, keeping only a nesting counter.
//!
//! The text is what `jsonb_out` writes (`", "` and `": "` between items), but any
//! valid JSON text is read the same way. A malformed text is reported as `None`.

use std::borrow::Cow;
use std::ops::Range;

/// One member of a top-level object: its key (decoded), the key's text (with its
/// quotes, as written) and the byte range of its value's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    pub key: Cow<'a, str>,
    pub key_text: &'a str,
    pub value: Range<usize>,
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `i` is at an opening quote: the index after the closing one.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// `i` is at the first byte of a value: the index after its last byte. Arrays and
/// objects are skipped with a depth counter, strings by their quotes.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The value of a JSON string token (quotes included): borrowed when it has no escapes.
pub fn decode_string(token: &str) -> Option<Cow<'_, str>> {
    let inner = token.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(token).ok().map(Cow::Owned)
}

/// The members of `text` when it is an object, in the order written; `None` for any
/// other value (array, string, number, true, false, null) or a malformed text.
pub fn top_members(text: &str) -> Option<Vec<Member<'_>>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, i)?;
        let key_text = &text[i..key_end];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = value_end(b, start)?;
        out.push(Member { key: decode_string(key_text)?, key_text, value: start..end });
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

/// Every string *value* of `text` at any depth (keys left out), as byte ranges of
/// their tokens (quotes included), in order.
pub fn string_values(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let Some(end) = string_end(b, i) else { break };
        // A key is the string a colon follows.
        if b.get(skip_ws(b, end)) != Some(&b':') {
            out.push(i..end);
        }
        i = end;
    }
    out
}

/// Whether any string value of `text`, at any depth, equals one of `names`.
pub fn mentions<S: AsRef<str>>(text: &str, names: &[S]) -> bool {
    string_values(text).into_iter().any(|r| {
        // (borrowed, without a copy, unless the token has escapes)
        decode_string(&text[r]).is_some_and(|v| names.iter().any(|n| v == n.as_ref()))
    })
}

/// `text` with string values replaced where `replace` answers (the replacement is
/// written as a JSON string); everything else byte for byte as it was.
/// * `top_keys = None`: every string value at any depth, in arrays and objects.
/// * `top_keys = Some(keys)`: only the values of the top-level members whose key is in
///   `keys` (an object's personal keys); any other text is returned unchanged.
pub fn replace_strings(text: &str, top_keys: Option<&[String]>, replace: &dyn Fn(&str) -> Option<String>) -> String {
    let ranges: Vec<Range<usize>> = match top_keys {
        None => string_values(text),
        Some(keys) => top_members(text)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| text.as_bytes()[m.value.start] == b'"' && keys.iter().any(|k| *k == m.key))
            .map(|m| m.value)
            .collect(),
    };
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        let Some(value) = decode_string(&text[r.clone()]) else { continue };
        if let Some(new) = replace(&value) {
            out.push_str(&text[at..r.start]);
            crate::integrity::push_json_string(&mut out, &new);
            at = r.end;
        }
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(levels: usize, inner: &str) -> String {
        format!("{}{inner}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn members_of_objects_only() {
        let t = r#"{"a": 1, "bb": {"x": [1, "}"]}, "q\"k": "v\\w"}"#;
        let m = top_members(t).unwrap();
        assert_eq!(m.iter().map(|m| m.key.as_ref()).collect::<Vec<_>>(), vec!["a", "bb", "q\"k"]);
        assert_eq!(&t[m[1].value.clone()], r#"{"x": [1, "}"]}"#);
        assert_eq!(&t[m[2].value.clone()], r#""v\\w""#);
        assert_eq!(top_members("{}").unwrap(), vec![]);
        for other in ["[1]", "\"s\"", "1", "true", "null", "", "{", "{\"a\" 1}", "{\"a\": 1,}"] {
            assert_eq!(top_members(other), None, "{other}");
        }
    }

    #[test]
    fn depth_is_no_limit() {
        let t = format!(r#"{{"deep": {}, "email": "a@x"}}"#, deep(100_000, "\"a@x\""));
        let m = top_members(&t).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(&t[m[1].value.clone()], "\"a@x\"");
        assert!(mentions(&deep(50_000, "\"n\""), &["n"]));
        let r = replace_strings(&deep(50_000, "\"n\""), None, &|v| (v == "n").then(|| "p".into()));
        assert_eq!(r, deep(50_000, "\"p\""));
    }

    #[test]
    fn keys_are_not_values() {
        let t = r#"{"carol": "x", "l": ["carol", {"k": "carol"}], "e": "x\"carol"}"#;
        assert_eq!(string_values(t).len(), 4);
        assert!(mentions(t, &["carol"]));
        assert!(!mentions(r#"{"carol": 1, "e": "x\"carol"}"#, &["carol"]));
        assert!(mentions(r#"["a\"b"]"#, &["a\"b"]));
        let r = replace_strings(t, None, &|v| (v == "carol").then(|| "P".into()));
        assert_eq!(r, r#"{"carol": "x", "l": ["P", {"k": "P"}], "e": "x\"carol"}"#);
    }

    #[test]
    fn top_keys_only() {
        let t = r#"{"n": {"email": "a"}, "email": "a", "name": 5}"#;
        let keys = vec!["email".to_string(), "name".to_string()];
        let r = replace_strings(t, Some(&keys), &|v| Some(format!("<{v}>")));
        assert_eq!(r, r#"{"n": {"email": "a"}, "email": "<a>", "name": 5}"#);
        assert_eq!(replace_strings("[\"a\"]", Some(&keys), &|_| Some("x".into())), "[\"a\"]");
    }
}
