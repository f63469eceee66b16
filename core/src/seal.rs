//! Tamper evidence, version 2 (audit_db 0.6.0): rows hashed and signed one by one with
//! no shared state, then sealed in batches ("epochs") into a signed chain of blocks.
//!
//! ```text
//! row_hash  = lowercase hex SHA-256(encoding), encoding = "audit_db.event.v2\n" ||
//!             for each field of FIELDS_V2, in order: name "=" value "\n"
//!             (values as in audit_db.event.v1; `details` is PostgreSQL's jsonb text
//!             of the details with the pseudonymization markers removed and the
//!             personal keys' string values replaced by their references; NULL
//!             details count as {}; personal_keys is the jsonb text of the array of
//!             details keys that were personal when the row was written, sorted
//!             (`["email", "name"]`), or ~)
//! signature = key_id ":" hex HMAC-SHA256(k_sign, row_hash)          (NULL without key)
//! element   = the 32 signature bytes (or SHA-256(row_hash) for an unsigned row),
//!             read as four big-endian u64 limbs
//! block     = per sealed epoch: rows = count, sum = element sum, limb by limb mod 2^64
//!             (MSet-Add-Hash over a keyed PRF: Clarke et al. 2003), and
//!             block_hash = SHA-256("audit_db.block.v2\nepoch=E\nrows=N\nsum=S\nprev=P\n"),
//!             P = block_hash of the previous block (or of the anchor), signed like a row.
//! ```
//!
//! Rows that leave legitimately (retention, erasure) are subtracted into a retirement
//! record of their epoch, so `present + retired = sealed` still holds for each block.

use crate::crypto::RootKey;
use crate::integrity::{json_string, push_json_string, sha256_hex, sign};
use crate::jsontext::top_members;
use crate::pseudonym::{hash_pseudonym, is_reference};
use serde_json::Value;

pub const ENCODING_V2: &str = "audit_db.event.v2";
pub const BLOCK_ENCODING: &str = "audit_db.block.v2";
/// `hash_algorithm`-style name of the server's row hash, for documentation and digests.
pub const ROW_HASH_ALGORITHM: &str = "audit_db.event.v2/SHA-256";
/// The details keys pseudonymization adds; never part of the hash.
pub use crate::integrity::MARKER_KEYS;

/// An audit_log row as the hash sees it (borrowed: no copies on the insert path).
#[derive(Debug, Default, Clone)]
pub struct EventV2<'a> {
    pub id: Option<i64>,
    /// Microseconds since the Unix epoch (None = NULL; infinities are refused on insert).
    pub timestamp_us: Option<i64>,
    pub ttl: Option<&'a str>,
    pub principal_id: Option<&'a str>,
    pub organization_id: Option<&'a str>,
    pub action: Option<&'a str>,
    pub target_resource_type: Option<&'a str>,
    pub target_resource_id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub outcome_description: Option<&'a str>,
    pub hash: Option<&'a str>,
    pub hash_algorithm: Option<&'a str>,
    pub event_version: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub data_classification: Option<&'a str>,
    pub retention_policy: Option<&'a str>,
    pub processing_latency: Option<i32>,
    /// PostgreSQL's text of the jsonb value (`details::text`).
    pub details: Option<&'a str>,
    pub seal_epoch: Option<i64>,
}

/// Whether a value is already in reference form: it enters the hash as it is, on
/// insert and on verification alike (a hash pseudonym or a `sha256:` reference, by
/// their whole shape: `pseudonym::is_reference`). Every other value, token and
/// encryption pseudonyms and `system` principals included, enters as its hash
/// pseudonym, so whatever a subject operation replaces it by still verifies.
pub fn is_reference_form(value: &str) -> bool {
    is_reference(value)
}

/// The reference that stands for a personal value: the value itself when it is in
/// reference form, else its hash pseudonym under `key` (or `sha256:` + hex without key).
pub fn reference(key: Option<&RootKey>, value: &str) -> String {
    if is_reference_form(value) {
        return value.to_string();
    }
    match key {
        Some(k) => hash_pseudonym(k, value),
        None => format!("sha256:{}", sha256_hex(value.as_bytes())),
    }
}

/// PostgreSQL's jsonb text output of a parsed value: object keys ordered by length,
/// then bytes; ", " between items and ": " after keys; strings escaped as `escape_json`.
pub fn jsonb_text(v: &Value) -> String {
    let mut out = String::new();
    write_jsonb(v, &mut out);
    out
}

fn write_jsonb(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => push_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_json_string(out, k);
                out.push_str(": ");
                write_jsonb(&map[*k], out);
            }
            out.push('}');
        }
    }
}

fn mentions_key(text: &str, key: &str) -> bool {
    if key.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return text.contains(&format!("{}: ", json_string(key)));
    }
    // `"key": ` without building the pattern.
    text.match_indices(key).any(|(i, _)| {
        i > 0 && text.as_bytes()[i - 1] == b'"' && text.as_bytes()[i + key.len()..].starts_with(b"\": ")
    })
}

/// Whether `text` mentions any of `keys` (`mentions_key` for each), in one pass over
/// the text: the insert trigger asks this for every row, and a searcher set up per key
/// cost more than the search.
fn mentions_any_key<K: AsRef<str>>(text: &str, keys: &[K]) -> bool {
    let special = |k: &str| k.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
    if keys.iter().any(|k| special(k.as_ref()) && mentions_key(text, k.as_ref())) {
        return true;
    }
    // Each `": ` closes a candidate key: compare the bytes before it with each key.
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = bytes[from..].iter().position(|&b| b == b'"') {
        let end = from + at;
        if bytes[end + 1..].starts_with(b": ") {
            let before = &bytes[..end];
            // The bytes first: `special` (a scan of the key) only runs on a match.
            let closes = |k: &str| {
                let b = k.as_bytes();
                before.len() > b.len() && before.ends_with(b) && before[before.len() - b.len() - 1] == b'"' && !special(k)
            };
            if keys.iter().any(|k| closes(k.as_ref())) {
                return true;
            }
        }
        from = end + 1;
    }
    false
}

/// The personal keys that apply to `details` on insert: those of `configured` present
/// at the top level with a string value, sorted and without duplicates. Any depth of
/// the values around them (the text is walked, not parsed into a tree).
pub fn personal_keys_of(details: Option<&str>, configured: &[String]) -> Vec<String> {
    let Some(text) = details else { return Vec::new() };
    if !mentions_any_key(text, configured) {
        return Vec::new();
    }
    let Some(members) = top_members(text) else { return Vec::new() };
    let mut keys: Vec<String> = configured
        .iter()
        .filter(|k| members.iter().any(|m| m.key == k.as_str() && text.as_bytes()[m.value.start] == b'"'))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// `details` as hashed: markers dropped, the string values of `personal` keys replaced
/// by `reference(value)`, as jsonb text; NULL counts as `{}`. Without markers or
/// personal keys, and for a value that is not an object, this is the stored text
/// itself. The text is walked, not parsed into a tree, so any depth PostgreSQL
/// accepts is hashed the same way.
pub fn encoded_details(details: Option<&str>, personal: &[String], reference: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    push_encoded_details(&mut out, details, personal, reference);
    out
}

/// Appends `encoded_details(..)` to `out`: the members of the stored text in its
/// order (jsonb's), markers left out, personal string values replaced by their
/// references, each other key and value byte for byte as stored.
fn push_encoded_details(out: &mut String, details: Option<&str>, personal: &[String], reference: &dyn Fn(&str) -> String) {
    let Some(text) = details else {
        out.push_str("{}");
        return;
    };
    let touched = mentions_any_key(text, MARKER_KEYS) || mentions_any_key(text, personal);
    let members = if touched { top_members(text) } else { None };
    let Some(members) = members else {
        out.push_str(text);
        return;
    };
    out.push('{');
    let mut first = true;
    for m in members.iter().filter(|m| !is_marker(&m.key, &text[m.value.clone()])) {
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str(m.key_text);
        out.push_str(": ");
        let value = &text[m.value.clone()];
        match crate::jsontext::decode_string(value).filter(|_| personal.iter().any(|k| *k == m.key)) {
            Some(s) => push_json_string(out, &reference(&s)),
            None => out.push_str(value),
        }
    }
    out.push('}');
}

/// A pseudonymization marker as audit_pseudonymize_subject writes it, left out of the
/// hash: `"pseudonymized": true`, or `"pseudonymizedAt"` with a timestamptz as
/// PostgreSQL writes it in JSON (`2026-12-03T07:15:00.123456+00:00`). Under these keys
/// any other value is hashed like every member, so nothing can be added to a row under
/// a marker's name (issue 25), and pseudonymization adds a marker only where its key
/// is free or holds a marker already (src/privacy/subject.rs), never over a value.
pub fn is_marker(key: &str, value: &str) -> bool {
    match key {
        "pseudonymized" => value == "true",
        "pseudonymizedAt" => crate::jsontext::decode_string(value).is_some_and(|s| is_json_timestamptz(&s)),
        _ => false,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}]` and a zone `+HH`, `+HH:MM` or `+HH:MM:SS` (or `-`).
fn is_json_timestamptz(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(digits(0..4) && at(4, b'-') && digits(5..7) && at(7, b'-') && digits(8..10) && at(10, b'T')
        && digits(11..13) && at(13, b':') && digits(14..16) && at(16, b':') && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start || i - start > 6 {
            return false;
        }
    }
    let zone = &b[i..];
    matches!(zone.first(), Some(b'+' | b'-'))
        && matches!(zone.len(), 3 | 6 | 9)
        && zone[1..].iter().enumerate().all(|(k, c)| if k % 3 == 2 { *c == b':' } else { c.is_ascii_digit() })
}

/// `name=value\n` lines of the encoding, written straight into one buffer.
struct Lines(String);

impl Lines {
    fn name(&mut self, name: &str) {
        self.0.push_str(name);
        self.0.push('=');
    }

    fn text(&mut self, name: &str, v: Option<&str>) {
        self.name(name);
        match v {
            Some(s) => push_json_string(&mut self.0, s),
            None => self.0.push('~'),
        }
        self.0.push('\n');
    }

    fn int(&mut self, name: &str, v: Option<i64>) {
        self.name(name);
        match v {
            Some(i) => {
                use std::fmt::Write;
                write!(self.0, "{i}").expect("writing to a String cannot fail");
            }
            None => self.0.push('~'),
        }
        self.0.push('\n');
    }
}

pub fn encode_v2(row: &EventV2, personal: &[String], reference: &dyn Fn(&str) -> String) -> Vec<u8> {
    let mut out = Lines(String::with_capacity(512));
    out.0.push_str(ENCODING_V2);
    out.0.push('\n');
    out.int("id", row.id);
    out.int("timestamp", row.timestamp_us);
    out.text("ttl", row.ttl);
    out.text("principal", row.principal_id.map(reference).as_deref());
    out.text("organization_id", row.organization_id);
    out.text("action", row.action);
    out.text("target_resource_type", row.target_resource_type);
    // A reference, like the principal: the target is often a person (a patient record),
    // and a subject operation may replace it by a pseudonym without breaking the hash.
    out.text("target_resource_id", row.target_resource_id.map(reference).as_deref());
    out.text("status", row.status);
    out.text("outcome_description", row.outcome_description);
    out.text("hash", row.hash);
    out.text("hash_algorithm", row.hash_algorithm);
    out.text("event_version", row.event_version);
    out.text("correlation_id", row.correlation_id);
    out.text("data_classification", row.data_classification);
    out.text("retention_policy", row.retention_policy);
    out.int("processing_latency", row.processing_latency.map(i64::from));
    out.name("details");
    push_encoded_details(&mut out.0, row.details, personal, reference);
    out.0.push('\n');
    out.int("seal_epoch", row.seal_epoch);
    out.name("personal_keys");
    if personal.is_empty() {
        out.0.push('~');
    } else {
        // jsonb's text of an array of strings.
        out.0.push('[');
        for (i, k) in personal.iter().enumerate() {
            if i > 0 {
                out.0.push_str(", ");
            }
            push_json_string(&mut out.0, k);
        }
        out.0.push(']');
    }
    out.0.push('\n');
    out.0.into_bytes()
}

pub fn row_hash(row: &EventV2, personal: &[String], reference: &dyn Fn(&str) -> String) -> String {
    sha256_hex(&encode_v2(row, personal, reference))
}

/// A 256-bit element or sum, as four u64 limbs added independently mod 2^64.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Limbs(pub [u64; 4]);

impl Limbs {
    pub fn from_bytes(b: &[u8; 32]) -> Limbs {
        let mut l = [0u64; 4];
        for (i, limb) in l.iter_mut().enumerate() {
            *limb = u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        Limbs(l)
    }

    pub fn add(&mut self, o: &Limbs) {
        for i in 0..4 {
            self.0[i] = self.0[i].wrapping_add(o.0[i]);
        }
    }

    pub fn sub(&mut self, o: &Limbs) {
        for i in 0..4 {
            self.0[i] = self.0[i].wrapping_sub(o.0[i]);
        }
    }

    /// The limbs as signed 64-bit integers (same bits), so SQL can sum them: `sum()`
    /// of int8 is exact (numeric), and a sum of two's-complement values taken mod 2^64
    /// is the wrapping sum of the unsigned limbs.
    pub fn as_signed(&self) -> [i64; 4] {
        self.0.map(|l| l as i64)
    }

    /// The limbs from SQL's exact sums of `as_signed` values (decimal text), mod 2^64.
    pub fn from_signed_sums(sums: [&str; 4]) -> Option<Limbs> {
        let mut l = [0u64; 4];
        for (limb, text) in l.iter_mut().zip(sums) {
            *limb = text.trim().parse::<i128>().ok()? as u64;
        }
        Some(Limbs(l))
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|l| format!("{l:016x}")).collect()
    }

    pub fn parse(hex_text: &str) -> Option<Limbs> {
        let bytes = hex::decode(hex_text).ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Limbs::from_bytes(&arr))
    }
}

/// The element of a row: its signature's HMAC bytes, or SHA-256 of its hash if unsigned.
pub fn element(row_hash: &str, signature: Option<&str>) -> Limbs {
    if let Some((_, h)) = signature.and_then(|s| s.split_once(':')) {
        let mut mac = [0u8; 32];
        if hex::decode_to_slice(h, &mut mac).is_ok() {
            return Limbs::from_bytes(&mac);
        }
    }
    use sha2::Digest;
    Limbs::from_bytes(&sha2::Sha256::digest(row_hash.as_bytes()).into())
}

pub fn block_hash(epoch: i64, rows: i64, sum: &Limbs, prev: &str) -> String {
    sha256_hex(format!("{BLOCK_ENCODING}\nepoch={epoch}\nrows={rows}\nsum={}\nprev={prev}\n", sum.hex()).as_bytes())
}

/// What existed without audit_db 0.6.0 evidence when the evidence began (the 0.5.0 ->
/// 0.6.0 step, or an install that adopted the original's rows): every such row has an
/// id of at most `max_id`, and there were `rows` of them. A row without evidence past
/// it was written with the trigger off.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    pub max_id: i64,
    pub rows: i64,
}

/// The anchor (epoch 0) that ties the blocks to what came before them: SHA-256 over
/// the heads of the per-organization chains written before 0.6.0, sorted, and the
/// horizon. The first block's `prev` is this hash, so the anchor is covered by the
/// signature of every block after it.
///
/// ```text
/// "audit_db.anchor.v2\n" || for each head, sorted: json(chain) "=" seq ":" hash "\n"
///                       || "horizon=" max_id ":" rows "\n"
/// ```
pub fn anchor_hash(legacy_heads: &[(String, i64, String)], horizon: Horizon) -> String {
    let mut heads = legacy_heads.to_vec();
    heads.sort();
    let mut text = String::from("audit_db.anchor.v2\n");
    for (chain, seq, hash) in heads {
        text.push_str(&format!("{}={seq}:{hash}\n", json_string(&chain)));
    }
    text.push_str(&format!("horizon={}:{}\n", horizon.max_id, horizon.rows));
    sha256_hex(text.as_bytes())
}

/// What the signature of a kept reference covers: a forgotten token or encryption
/// pseudonym and the reference its original had in the row hashes under one key
/// (`pseudonym_forgotten`, signed with that key: a row of it no key signed, or one
/// whose pseudonym or reference was changed, is not used by verification).
///
/// ```text
/// "audit_db.forgotten.v1\n" || byte length of pseudonym ":" pseudonym "\n" || reference "\n"
/// ```
pub fn forgotten_message(pseudonym: &str, reference: &str) -> String {
    format!("audit_db.forgotten.v1\n{}:{pseudonym}\n{reference}\n", pseudonym.len())
}

/// Signs a block hash like a row hash.
pub fn sign_block(key: &RootKey, block_hash: &str) -> String {
    sign(key, block_hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row<'a>() -> EventV2<'a> {
        EventV2 {
            id: Some(7),
            timestamp_us: Some(1_700_000_000_000_000),
            principal_id: Some("alice@example.com"),
            organization_id: Some("org-1"),
            action: Some("auth.login.success"),
            status: Some("success"),
            hash: Some("app-hash"),
            hash_algorithm: Some("SHA-256"),
            details: Some(r#"{"ip": "203.0.113.7", "email": "alice@example.com"}"#),
            seal_epoch: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn mentions_any_key_finds_a_key_only_as_a_key() {
        let text = r#"{"ip": "203.0.113.7", "note": "email: x", "email": "a@b", "q\"k": 1}"#;
        assert!(mentions_any_key(text, &["name", "email"]));
        assert!(!mentions_any_key(text, &["name", "mail", "phone"]));
        assert!(mentions_any_key(text, &["q\"k"]));
        assert!(!mentions_any_key(text, &[] as &[&str]));
        assert!(!mentions_any_key(r#"{"x": "email": }"#, &["mail"]));
    }

    proptest::proptest! {
        /// The allocation-free search finds `"key": ` exactly where the plain one does.
        #[test]
        fn mentions_key_equals_the_plain_search(text in "[a-z\"\\\\: {}]{0,40}", key in "[a-z\"]{1,4}") {
            proptest::prop_assert_eq!(mentions_key(&text, &key), text.contains(&format!("{}: ", json_string(&key))));
        }

        /// The one-pass search over several keys answers as `mentions_key` for each.
        #[test]
        fn mentions_any_key_equals_each_search(text in "[a-z\"\\\\: {}]{0,40}",
                                               keys in proptest::collection::vec("[a-z\"]{1,4}", 0..4)) {
            proptest::prop_assert_eq!(mentions_any_key(&text, &keys), keys.iter().any(|k| mentions_key(&text, k)));
        }
    }

    /// Pinned: the encoding is a format (rows written by earlier builds must keep
    /// verifying), so any change of its bytes fails here.
    #[test]
    fn encoding_v2_is_pinned() {
        let key = RootKey::new("k1", [7; 32]);
        let r = |v: &str| reference(Some(&key), v);
        let mut full = row();
        full.ttl = Some("30d");
        full.target_resource_type = Some("Patient");
        full.target_resource_id = Some("p-\"1\"\n");
        full.outcome_description = Some("tab\there \u{1}");
        full.event_version = Some("1.0");
        full.correlation_id = Some("c-1");
        full.data_classification = Some("PHI");
        full.retention_policy = Some("standard");
        full.processing_latency = Some(-12);
        full.details = Some(r#"{"ip": "203.0.113.7", "name": "Zoë", "email": "alice@example.com", "pseudonymized": true}"#);
        let personal = vec!["email".to_string(), "name".to_string()];
        let digest = |e: &EventV2, p: &[String]| sha256_hex(&encode_v2(e, p, &r));
        assert_eq!(digest(&full, &personal), "ac0e154e09ff957992c8e9701b626d942fdbc7ed46b46a84681bf0a0c543cab2");
        assert_eq!(digest(&row(), &[]), "f1b83cf8e3d5f22d8cf1ff5354dff250679d4e68885c38a15d2e8a2427e94344");
        assert_eq!(digest(&EventV2::default(), &[]), "82087dc1a4e9de0a6f13d0235406406b902a9e8d99284032d6aa7232e9789d38");
    }

    #[test]
    fn jsonb_text_matches_postgres_output() {
        let v: Value = serde_json::from_str(r#"{"bb": [1, 2.50, null], "a": {"zz": true, "y": "q\"\n"}, "ccc": {}}"#).unwrap();
        assert_eq!(jsonb_text(&v), r#"{"a": {"y": "q\"\n", "zz": true}, "bb": [1, 2.50, null], "ccc": {}}"#);
    }

    #[test]
    fn untouched_details_are_hashed_as_stored() {
        let t = r#"{"ip": "x", "n": 1}"#;
        assert_eq!(encoded_details(Some(t), &["email".into()], &|v| v.to_string()), t);
        assert_eq!(encoded_details(None, &[], &|v| v.to_string()), "{}");
    }

    #[test]
    fn markers_and_personal_values_are_normalised() {
        let t = r#"{"ip": "x", "email": "a@x", "pseudonymized": true, "pseudonymizedAt": "2026-12-03T07:15:00.5+00:00"}"#;
        let e = encoded_details(Some(t), &["email".into()], &|v| format!("R({v})"));
        assert_eq!(e, r#"{"ip": "x", "email": "R(a@x)"}"#);
        // The same row after pseudonymization (value replaced by its reference, markers added).
        let after = r#"{"ip": "x", "email": "R(a@x)", "pseudonymized": true}"#;
        let same = encoded_details(Some(after), &["email".into()], &|v| if v.starts_with("R(") { v.to_string() } else { format!("R({v})") });
        assert_eq!(same, e);
    }

    #[test]
    fn personal_keys_are_recorded_only_when_present_as_strings() {
        let keys = vec!["email".to_string(), "name".to_string(), "ip".to_string()];
        assert_eq!(personal_keys_of(Some(r#"{"ip": 5, "email": "a", "x": "y"}"#), &keys), vec!["email".to_string()]);
        assert!(personal_keys_of(Some(r#"{"x": "y"}"#), &keys).is_empty());
        assert!(personal_keys_of(None, &keys).is_empty());
    }

    #[test]
    fn reference_form_values_enter_as_they_are() {
        let key = RootKey::new("k1", [7; 32]);
        let hp = hash_pseudonym(&key, "bob");
        assert_eq!(reference(Some(&key), &hp), hp);
        let s = format!("sha256:{}", "a".repeat(64));
        assert_eq!(reference(Some(&key), &s), s);
        assert_eq!(reference(Some(&key), "bob"), hp);
        // Not by prefix (issue 26): a system principal or a look-alike is a value like any other.
        assert_eq!(reference(Some(&key), "system"), hash_pseudonym(&key, "system"));
        assert_eq!(reference(Some(&key), "pseudo-abc"), hash_pseudonym(&key, "pseudo-abc"));
    }

    #[test]
    fn row_hash_covers_every_field_and_the_application_hash() {
        let key = RootKey::new("k1", [7; 32]);
        let r = |v: &str| reference(Some(&key), v);
        let base = row_hash(&row(), &["email".into()], &r);
        let mut other = row();
        other.hash = Some("other");
        assert_ne!(row_hash(&other, &["email".into()], &r), base);
        let mut other = row();
        other.seal_epoch = Some(4);
        assert_ne!(row_hash(&other, &["email".into()], &r), base);
        assert_ne!(row_hash(&row(), &[], &r), base, "the personal keys applied are part of the hash");
    }

    #[test]
    fn personal_keys_are_encoded_as_a_jsonb_array() {
        let text = String::from_utf8(encode_v2(&row(), &["email".into(), "name".into()], &|v| v.to_string())).unwrap();
        assert!(text.ends_with("seal_epoch=3\npersonal_keys=[\"email\", \"name\"]\n"), "{text}");
        let none = String::from_utf8(encode_v2(&row(), &[], &|v| v.to_string())).unwrap();
        assert!(none.ends_with("personal_keys=~\n"));
    }

    #[test]
    fn sums_subtract_back() {
        let a = element("h1", Some(&format!("k:{}", "ff".repeat(32))));
        let b = element("h2", None);
        let mut s = Limbs::default();
        s.add(&a);
        s.add(&b);
        assert_eq!(s.0[0], u64::MAX.wrapping_add(b.0[0]));
        s.sub(&a);
        assert_eq!(s, b);
        assert_eq!(Limbs::parse(&s.hex()), Some(s));
    }

    #[test]
    fn block_and_anchor_hashes_are_stable() {
        let s = Limbs([1, 2, 3, 4]);
        let h = block_hash(5, 10, &s, &"0".repeat(64));
        assert_eq!(h.len(), 64);
        assert_ne!(h, block_hash(5, 11, &s, &"0".repeat(64)));
        let h0 = Horizon { max_id: 7, rows: 3 };
        let a = anchor_hash(&[("b".into(), 2, "x".into()), ("a".into(), 1, "y".into())], h0);
        assert_eq!(a, anchor_hash(&[("a".into(), 1, "y".into()), ("b".into(), 2, "x".into())], h0));
        assert_ne!(a, anchor_hash(&[("a".into(), 1, "y".into()), ("b".into(), 2, "x".into())], Horizon { max_id: 8, rows: 3 }));
        assert_ne!(a, anchor_hash(&[("a".into(), 1, "y".into()), ("b".into(), 2, "x".into())], Horizon { max_id: 7, rows: 4 }));
        // The exact text, as the 0.5.0 -> 0.6.0 step and an adopting install build it in SQL.
        assert_eq!(
            anchor_hash(&[("org-1".into(), 2, "ab".into())], Horizon { max_id: 9, rows: 5 }),
            sha256_hex(b"audit_db.anchor.v2\n\"org-1\"=2:ab\nhorizon=9:5\n")
        );
        assert_eq!(anchor_hash(&[], Horizon::default()), sha256_hex(b"audit_db.anchor.v2\nhorizon=0:0\n"));
        assert_eq!(forgotten_message("pseudo-ab", "pseudo-cd"), "audit_db.forgotten.v1\n9:pseudo-ab\npseudo-cd\n");
        assert_ne!(forgotten_message("a\nb", "c"), forgotten_message("a", "b\nc"));
        let _ = json!(null);
    }

    #[test]
    fn only_markers_in_their_own_shape_leave_the_hash() {
        assert!(is_marker("pseudonymized", "true"));
        assert!(!is_marker("pseudonymized", "false"));
        assert!(!is_marker("pseudonymized", r#"{"amount": 1000000}"#));
        assert!(is_marker("pseudonymizedAt", r#""2026-12-03T07:15:00.123456+00:00""#));
        assert!(is_marker("pseudonymizedAt", r#""2026-12-03T07:15:00-05""#));
        assert!(is_marker("pseudonymizedAt", r#""1850-01-01T00:00:00+00:53:28""#));
        assert!(!is_marker("pseudonymizedAt", r#""forged""#));
        assert!(!is_marker("pseudonymizedAt", r#""2026-12-03T07:15:00.1234567+00:00""#));
        assert!(!is_marker("pseudonymizedAt", r#""2026-12-03T07:15:00+00:00 and more""#));
        assert!(!is_marker("pseudonymizedAt", "20261203"));
        // Content under a marker's name is hashed: adding it changes the encoding.
        let plain = encoded_details(Some(r#"{"n": 1}"#), &[], &|v| v.to_string());
        let smuggled = encoded_details(Some(r#"{"n": 1, "pseudonymized": {"approved_by": "ceo"}}"#), &[], &|v| v.to_string());
        let marked = encoded_details(Some(r#"{"n": 1, "pseudonymized": true, "pseudonymizedAt": "2026-12-03T07:15:00+00:00"}"#), &[], &|v| v.to_string());
        assert_ne!(plain, smuggled);
        assert_eq!(plain, marked);
    }
}
