//! Tamper evidence for audit events: the canonical encoding `audit_db.event.v1`, the
//! event hash, the signature and the hash chain. An external verifier can recompute
//! all of it from a row with this description:
//!
//! ```text
//! encoding = "audit_db.event.v1\n" || for each field, in the order of FIELDS:
//!            name || "=" || value || "\n"
//! value    = "~"                               for NULL
//!          | JSON string (RFC 8259, escaping only '"', '\\' and control characters
//!            as \b \f \n \r \t or \u00XX, everything else as UTF-8)   for text
//!          | decimal digits, optional leading '-'                     for integers
//!          | microseconds since 1970-01-01 00:00:00 UTC, decimal      for timestamps
//!          | canonical JSON: objects with keys sorted by their UTF-8 bytes, no
//!            whitespace, numbers as PostgreSQL's jsonb prints them    for jsonb
//! hash      = lowercase hex SHA-256(encoding)
//! signature = key_id || ":" || lowercase hex HMAC-SHA256(k_sign, hash as ASCII),
//!             k_sign = HKDF(root key, "audit_db/v1/integrity-signing")
//! chain     = lowercase hex SHA-256(previous chain hash || hash), both as ASCII hex;
//!             the first link of a chain uses 64 '0' characters as previous hash
//! ```
//!
//! Personal data enters through references, so pseudonymizing a subject later does
//! not change the hash: the principal and the string values of the personal `details`
//! keys are encoded as their `hash` pseudonym (`pseudo-` + hex HMAC-SHA256 under the
//! pseudonym key), or as `sha256:` + hex SHA-256 when no key is configured; and the
//! `details` keys `pseudonymized` / `pseudonymizedAt`, which pseudonymization adds, are
//! left out (and a NULL `details` is encoded as `{}`, since pseudonymization turns it
//! into an object holding only those keys).
//!
//! audit_log fields, in order: id, timestamp, ttl, principal (reference), organization_id,
//! action, target_resource_type, target_resource_id, status, outcome_description,
//! event_version, correlation_id, data_classification, retention_policy,
//! processing_latency, details. Not covered: hash, hash_algorithm, signature, chain_seq,
//! chain_hash (they are the evidence) and archived_at (set later by retention policies).

use crate::crypto::{Purpose, RootKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const ENCODING: &str = "audit_db.event.v1";
pub const HASH_ALGORITHM: &str = "audit_db.event.v1/SHA-256";
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `details` keys pseudonymization adds; never part of the hash.
pub const MARKER_KEYS: &[&str] = &["pseudonymized", "pseudonymizedAt"];

/// A field value as encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Null,
    Text(String),
    Int(i64),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Json(Value),
}

pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
}

/// Appends `json_string(s)` to `out` (no allocation when nothing needs escaping).
pub fn push_json_string(out: &mut String, s: &str) {
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => json_string(s),
        Value::Array(items) => format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let parts: Vec<String> =
                keys.iter().map(|k| format!("{}:{}", json_string(k), canonical_json(&map[*k]))).collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

pub fn encode(fields: &[(&str, Field)]) -> Vec<u8> {
    let mut out = format!("{ENCODING}\n");
    for (name, value) in fields {
        out.push_str(name);
        out.push('=');
        match value {
            Field::Null => out.push('~'),
            Field::Text(s) => out.push_str(&json_string(s)),
            Field::Int(i) => out.push_str(&i.to_string()),
            Field::Timestamp(us) => out.push_str(&us.to_string()),
            Field::Json(v) => out.push_str(&canonical_json(v)),
        }
        out.push('\n');
    }
    out.into_bytes()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex32(&Sha256::digest(bytes).into())
}

/// Lowercase hex of 32 bytes, written into one allocation of the exact size (the
/// insert trigger calls this twice per row; `hex::encode` goes through an iterator).
pub fn hex32(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    push_hex32(&mut out, bytes);
    out
}

/// Appends the lowercase hex of 32 bytes to `out`.
pub fn push_hex32(out: &mut String, bytes: &[u8; 32]) {
    let mut buf = [0u8; 64];
    hex::encode_to_slice(bytes, &mut buf).expect("64 bytes hold 32 in hex");
    out.push_str(std::str::from_utf8(&buf).expect("hex is ASCII"));
}

pub fn event_hash(fields: &[(&str, Field)]) -> String {
    sha256_hex(&encode(fields))
}

pub fn chain_hash(previous: &str, hash: &str) -> String {
    sha256_hex(format!("{previous}{hash}").as_bytes())
}

/// Whether `mac_hex` is the lowercase hex of the signature MAC of `hash` under `key`
/// (what `sign` writes after `key_id:`), compared without building strings.
pub fn mac_matches(key: &RootKey, hash: &str, mac_hex: &str) -> bool {
    let mut expected = [0u8; 64];
    hex::encode_to_slice(key.mac(Purpose::IntegritySigning, hash.as_bytes()), &mut expected)
        .expect("64 bytes hold 32 in hex");
    expected.as_slice() == mac_hex.as_bytes()
}

pub fn sign(key: &RootKey, hash: &str) -> String {
    let mut out = String::with_capacity(key.id.len() + 65);
    out.push_str(&key.id);
    out.push(':');
    push_hex32(&mut out, &key.mac(Purpose::IntegritySigning, hash.as_bytes()));
    out
}

/// The reference that stands for a personal value in the encoding.
pub fn personal_ref(key: Option<&RootKey>, value: &str) -> String {
    match key {
        Some(k) => crate::pseudonym::hash_pseudonym(k, value),
        None => format!("sha256:{}", sha256_hex(value.as_bytes())),
    }
}

/// `details` as encoded: markers dropped, string values of personal keys replaced by
/// `reference(value)`.
pub fn encoded_details(details: &Value, personal_keys: &[String], reference: &dyn Fn(&str) -> String) -> Value {
    match details {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                if MARKER_KEYS.contains(&k.as_str()) {
                    continue;
                }
                let v = match v {
                    Value::String(s) if personal_keys.iter().any(|p| p == k) => Value::String(reference(s)),
                    other => other.clone(),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Vec<(&'static str, Field)> {
        vec![
            ("id", Field::Int(42)),
            ("timestamp", Field::Timestamp(1_700_000_000_123_456)),
            ("principal", Field::Text("sha256:abc".into())),
            ("action", Field::Text("auth.login.success".into())),
            ("ttl", Field::Null),
            ("details", Field::Json(json!({"b": 1, "a": [true, null, "x"], "é": "ü"}))),
        ]
    }

    #[test]
    fn encoding_is_byte_exact() {
        let expected = "audit_db.event.v1\nid=42\ntimestamp=1700000000123456\nprincipal=\"sha256:abc\"\n\
                        action=\"auth.login.success\"\nttl=~\ndetails={\"a\":[true,null,\"x\"],\"b\":1,\"é\":\"ü\"}\n";
        assert_eq!(String::from_utf8(encode(&sample())).unwrap(), expected);
        assert_eq!(event_hash(&sample()), sha256_hex(expected.as_bytes()));
    }

    #[test]
    fn null_is_not_the_empty_string_nor_the_text_null() {
        let with = |f: Field| event_hash(&[("ttl", f)]);
        let all = [with(Field::Null), with(Field::Text(String::new())), with(Field::Text("~".into())),
                   with(Field::Json(Value::Null))];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
    }

    #[test]
    fn json_key_order_does_not_matter_and_escapes_are_fixed() {
        let a: Value = serde_json::from_str(r#"{"z": {"y": 1, "x": 2}, "a": "q\"\\\n\u0001"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": "q\"\\\n\u0001", "z": {"x": 2, "y": 1}}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":"q\"\\\n\u0001","z":{"x":2,"y":1}}"#);
        // Numbers keep PostgreSQL's text: no float rounding.
        let n: Value = serde_json::from_str(r#"{"big": 12345678901234567890123, "f": 1.50}"#).unwrap();
        assert_eq!(canonical_json(&n), r#"{"big":12345678901234567890123,"f":1.50}"#);
        // Unicode is kept as UTF-8, not escaped.
        assert_eq!(json_string("東京 😀"), "\"東京 😀\"");
    }

    #[test]
    fn chain_and_signature() {
        let h = event_hash(&sample());
        let c1 = chain_hash(GENESIS, &h);
        assert_eq!(c1, sha256_hex(format!("{GENESIS}{h}").as_bytes()));
        assert_ne!(chain_hash(&c1, &h), c1);
        let key = RootKey::new("k1", [7; 32]);
        let s = sign(&key, &h);
        assert!(s.starts_with("k1:"));
        assert_eq!(s.len(), 3 + 64);
        assert_ne!(s, sign(&RootKey::new("k1", [8; 32]), &h));
        // mac_matches accepts exactly what sign wrote after "k1:".
        assert!(mac_matches(&key, &h, &s[3..]));
        assert!(!mac_matches(&key, &h, &s[3..].to_uppercase()));
        assert!(!mac_matches(&key, &h, &s[4..]));
        assert!(!mac_matches(&RootKey::new("k1", [8; 32]), &h, &s[3..]));
    }

    #[test]
    fn personal_values_enter_as_references() {
        let key = RootKey::new("k1", [7; 32]);
        let r = |v: &str| personal_ref(Some(&key), v);
        assert_eq!(r("alice"), crate::pseudonym::hash_pseudonym(&key, "alice"));
        assert!(personal_ref(None, "alice").starts_with("sha256:"));
        let d = json!({"email": "a@x", "n": 1, "pseudonymized": true, "pseudonymizedAt": "2024"});
        let e = encoded_details(&d, &["email".to_string()], &r);
        assert_eq!(e, json!({"email": r("a@x"), "n": 1}));
    }
}
