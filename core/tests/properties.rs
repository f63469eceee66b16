//! Property tests (proptest) of the pure-Rust core: calendar and partition-bound
//! maths, the canonical event encoding, pseudonym formats and parsers, key files and
//! manifests. Each property runs `PROPTEST_CASES` cases (default 256, set by
//! scripts/test.sh); a failure prints the shrunk input.
//!
//! Two kinds of property: round trips and invariants on generated valid input, and
//! "never panics, and rejects or returns the one right answer" on arbitrary input,
//! which is what the SQL functions hand these parsers.

use audit_db_core::calendar::Date;
use audit_db_core::crypto::{KeyRing, RootKey};
use audit_db_core::integrity::{canonical_json, chain_hash, encode, event_hash, Field};
use audit_db_core::manifest;
use audit_db_core::partition::{self, PartitionInterval, MAX_PREMAKE};
use audit_db_core::pseudonym::{self, Strategy as PseudonymStrategy};
use proptest::prelude::*;
use serde_json::Value;

// ------------------------------------------------------------------ generators

fn interval() -> impl Strategy<Value = PartitionInterval> {
    prop_oneof![
        Just(PartitionInterval::Daily),
        Just(PartitionInterval::Weekly),
        Just(PartitionInterval::Monthly)
    ]
}

/// Every date PostgreSQL's timestamptz can hold lies within these day numbers
/// (4713 BC .. 294276 AD); the calendar must be exact over all of them.
fn any_day() -> impl Strategy<Value = i64> {
    -2_500_000i64..107_000_000i64
}

/// Dates whose partitions can be named (years 1..9998).
fn nameable_date() -> impl Strategy<Value = Date> {
    (1i32..=9998, 1u32..=12, 1u32..=31).prop_map(|(y, m, d)| {
        let last = audit_db_core::calendar::days_in_month(y, m);
        Date::new(y, m, d.min(last)).unwrap()
    })
}

fn key_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,64}"
}

fn root_key() -> impl Strategy<Value = RootKey> {
    (key_id(), any::<[u8; 32]>()).prop_map(|(id, secret)| RootKey::new(&id, secret))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::from(i)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((".{0,6}", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field::Null),
        ".{0,16}".prop_map(Field::Text),
        any::<i64>().prop_map(Field::Int),
        any::<i64>().prop_map(Field::Timestamp),
        json_value().prop_map(Field::Json),
    ]
}

const NAMES: [&str; 4] = ["id", "action", "principal", "details"];

fn fields() -> impl Strategy<Value = Vec<Field>> {
    prop::collection::vec(field(), NAMES.len())
}

fn named(values: &[Field]) -> Vec<(&'static str, Field)> {
    NAMES.iter().copied().zip(values.iter().cloned()).collect()
}

// ------------------------------------------------------------------ calendar

proptest! {
    #[test]
    fn days_round_trip(days in any_day()) {
        let d = Date::from_days(days);
        prop_assert_eq!(d.to_days(), days);
        prop_assert!(Date::new(d.year, d.month, d.day).is_ok(), "{:?} is not a valid date", d);
        prop_assert!(Date::from_days(days + 1) > d, "the day after {:?} sorts after it", d);
    }

    #[test]
    fn iso_week_is_monday_based(days in any_day()) {
        let d = Date::from_days(days);
        let monday = d.add_days(1 - i64::from(d.iso_weekday()));
        prop_assert_eq!(monday.iso_weekday(), 1);
        let (y, w) = d.iso_week();
        prop_assert_eq!(monday.iso_week(), (y, w));
        prop_assert!((1..=53).contains(&w));
    }

    #[test]
    fn add_months_lands_on_first(days in any_day(), n in -1200i64..1200) {
        let d = Date::from_days(days);
        let m = d.add_months_to_first(n);
        prop_assert_eq!(m.day, 1);
        prop_assert_eq!(partition::months_between(d, m), n);
    }
}

// ------------------------------------------------------------------ partition bounds

proptest! {
    #[test]
    fn plan_covers_today_contiguously(today in nameable_date(), iv in interval(), premake in 0i64..60) {
        let periods = match partition::plan("audit_log", iv, today, premake) {
            Ok(p) => p,
            // Only a plan running past year 9999 may be refused.
            Err(partition::PlanError::YearOutOfRange(y)) => { prop_assert!(y > 9999); return Ok(()); }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
        };
        prop_assert_eq!(periods.len() as i64, premake + 1);
        prop_assert!(periods[0].from <= today && today < periods[0].to);
        for p in &periods {
            prop_assert!(p.from < p.to);
            prop_assert_eq!(iv.period_start(p.from), p.from);
            prop_assert_eq!(iv.period_start(p.to), p.to);
            match iv {
                PartitionInterval::Daily => prop_assert_eq!(p.to.to_days() - p.from.to_days(), 1),
                PartitionInterval::Weekly => {
                    prop_assert_eq!(p.from.iso_weekday(), 1);
                    prop_assert_eq!(p.to.to_days() - p.from.to_days(), 7);
                }
                PartitionInterval::Monthly => {
                    prop_assert_eq!(p.from.day, 1);
                    prop_assert_eq!(partition::months_between(p.from, p.to), 1);
                }
            }
            prop_assert!(p.name.len() <= partition::MAX_IDENTIFIER_BYTES);
            prop_assert_eq!(p.from_literal(), format!("{} 00:00:00+00", p.from));
        }
        for w in periods.windows(2) {
            prop_assert_eq!(w[0].to, w[1].from, "gap or overlap between {} and {}", &w[0].name, &w[1].name);
            // Names sort in time order, so `ORDER BY relname` lists partitions chronologically.
            prop_assert!(w[0].name < w[1].name, "{} does not sort before {}", &w[0].name, &w[1].name);
        }
    }

    #[test]
    fn every_instant_has_exactly_one_period(day in 1i64..2_900_000, iv in interval()) {
        // Days 1..2.9M after 1970 stay within nameable years.
        let d = Date::from_days(day);
        let start = iv.period_start(d);
        let next = iv.advance(start, 1);
        prop_assert!(start <= d && d < next);
        prop_assert_eq!(iv.advance(iv.advance(start, 5), -5), start);
        prop_assert_eq!(iv.period_start(next.add_days(-1)), start);
    }

    #[test]
    fn plan_rejects_premake_out_of_range(premake in prop_oneof![i64::MIN..0, (MAX_PREMAKE + 1)..i64::MAX]) {
        let today = Date::new(2026, 11, 25).unwrap();
        prop_assert_eq!(
            partition::plan("audit_log", PartitionInterval::Monthly, today, premake),
            Err(partition::PlanError::PremakeOutOfRange(premake))
        );
    }

    #[test]
    fn partition_names_never_exceed_identifier_limit(parent in "\\PC{0,70}", today in nameable_date(), iv in interval()) {
        match partition::partition_name(&parent, iv, iv.period_start(today)) {
            Ok(name) => {
                prop_assert!(name.len() <= partition::MAX_IDENTIFIER_BYTES);
                prop_assert!(name.starts_with(&parent));
            }
            Err(partition::PlanError::NameTooLong(name)) => prop_assert!(name.len() > partition::MAX_IDENTIFIER_BYTES),
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
        }
    }

    #[test]
    fn interval_parser_total(text in "\\PC{0,20}") {
        if let Ok(iv) = PartitionInterval::parse(&text) {
            prop_assert_eq!(PartitionInterval::parse(iv.as_str()), Ok(iv));
        }
    }
}

// ------------------------------------------------------------------ canonical encoding

proptest! {
    #[test]
    fn encoding_is_injective(a in fields(), b in fields()) {
        let (ea, eb) = (encode(&named(&a)), encode(&named(&b)));
        // Equal encodings only for equal values (JSON compared canonically: key order
        // and duplicate spellings of one object are one value).
        let canon = |v: &[Field]| v.iter().map(|f| match f {
            Field::Null => (0, String::new()),
            Field::Text(s) => (1, s.clone()),
            Field::Int(i) => (2, i.to_string()),
            Field::Timestamp(t) => (3, t.to_string()),
            Field::Json(j) => (4, canonical_json(j)),
        }).collect::<Vec<_>>();
        prop_assert_eq!(ea == eb, canon(&a) == canon(&b));
    }

    #[test]
    fn encoding_has_one_line_per_field(values in fields()) {
        let text = String::from_utf8(encode(&named(&values))).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        // header, one line per field, and the empty rest after the final newline
        prop_assert_eq!(lines.len(), NAMES.len() + 2);
        prop_assert_eq!(lines[0], "audit_db.event.v1");
        for (line, name) in lines[1..].iter().zip(NAMES) {
            let prefix = format!("{name}=");
            prop_assert!(line.starts_with(&prefix), "{:?}", line);
        }
        prop_assert_eq!(event_hash(&named(&values)).len(), 64);
    }

    #[test]
    fn canonical_json_is_order_free_and_parses_back(pairs in prop::collection::btree_map("[a-zé]{0,4}", json_value(), 0..8)) {
        let forward: serde_json::Map<String, Value> = pairs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let backward: serde_json::Map<String, Value> = pairs.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
        let obj = Value::Object(forward);
        let text = canonical_json(&obj);
        prop_assert_eq!(&text, &canonical_json(&Value::Object(backward)));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&parsed, &obj);
        prop_assert_eq!(canonical_json(&parsed), text);
    }

    #[test]
    fn chain_depends_on_both_links(a in "[0-9a-f]{64}", b in "[0-9a-f]{64}", c in "[0-9a-f]{64}") {
        prop_assume!(a != c);
        prop_assert_ne!(chain_hash(&a, &b), chain_hash(&c, &b));
        prop_assert_ne!(chain_hash(&b, &a), chain_hash(&b, &c));
    }
}

// ------------------------------------------------------------------ pseudonyms

proptest! {
    #[test]
    fn encryption_pseudonym_round_trip(id in key_id(), secret in any::<[u8; 32]>(), original in "\\PC{0,200}") {
        prop_assume!(secret != [0u8; 32]);
        let key = RootKey::new(&id, secret);
        let p = pseudonym::encrypt_pseudonym(&key, &original);
        prop_assert_eq!(pseudonym::classify(&p), Some(PseudonymStrategy::Encryption));
        prop_assert!(!pseudonym::is_reference(&p), "an encryption pseudonym enters the row hash as its reference");
        prop_assert_eq!(pseudonym::pseudonym_key_id(&p).unwrap(), key.id.clone());
        // Deterministic under one key: the same original, the same pseudonym.
        prop_assert_eq!(&p, &pseudonym::encrypt_pseudonym(&key, &original));
        let ring = KeyRing::parse(&format!("{} {}\n", key.id, "00".repeat(32))).unwrap();
        // A ring holding the same id with another secret must not decrypt it.
        prop_assert!(pseudonym::decrypt_pseudonym(&ring, &p).is_err());
    }

    #[test]
    fn encryption_pseudonym_decrypts_with_its_ring(secret in any::<[u8; 32]>(), original in "\\PC{0,200}") {
        let ring = KeyRing::parse(&format!("k1 {}\n", hex::encode(secret))).unwrap();
        let p = pseudonym::encrypt_pseudonym(ring.current(), &original);
        prop_assert_eq!(pseudonym::decrypt_pseudonym(&ring, &p).unwrap(), original.clone());
        let sealed = pseudonym::seal_original(ring.current(), &original);
        prop_assert_eq!(pseudonym::sealed_key_id(&sealed), Some("k1"));
        prop_assert_eq!(pseudonym::open_original(&ring, &sealed).unwrap(), original);
    }

    #[test]
    fn tampered_pseudonyms_never_decrypt_to_something_else(
        secret in any::<[u8; 32]>(), original in "\\PC{0,40}", pos in any::<prop::sample::Index>(), ch in any::<char>()
    ) {
        let ring = KeyRing::parse(&format!("k1 {}\n", hex::encode(secret))).unwrap();
        for made in [pseudonym::encrypt_pseudonym(ring.current(), &original), pseudonym::seal_original(ring.current(), &original)] {
            let mut chars: Vec<char> = made.chars().collect();
            let i = pos.index(chars.len());
            chars[i] = ch;
            let tampered: String = chars.into_iter().collect();
            for result in [pseudonym::decrypt_pseudonym(&ring, &tampered), pseudonym::open_original(&ring, &tampered)] {
                if let Ok(plain) = result {
                    prop_assert_eq!(&plain, &original, "{:?} decrypted to something else", tampered);
                }
            }
        }
    }

    #[test]
    fn parsers_are_total(text in "\\PC{0,120}") {
        let ring = KeyRing::parse(&format!("k1 {}\n", "ab".repeat(32))).unwrap();
        let _ = pseudonym::classify(&text);
        let _ = pseudonym::pseudonym_key_id(&text);
        let _ = pseudonym::sealed_key_id(&text);
        prop_assert!(pseudonym::decrypt_pseudonym(&ring, &text).is_err());
        prop_assert!(pseudonym::open_original(&ring, &text).is_err());
        for prefixed in [format!("pseudo-enc-{text}"), format!("v1:k1:{text}"), format!("pseudo-{text}")] {
            let _ = pseudonym::classify(&prefixed);
            let _ = pseudonym::pseudonym_key_id(&prefixed);
            prop_assert!(pseudonym::decrypt_pseudonym(&ring, &prefixed).is_err());
            prop_assert!(pseudonym::open_original(&ring, &prefixed).is_err());
        }
    }

    #[test]
    fn hash_and_token_shapes(key in root_key(), original in "\\PC{0,64}") {
        let h = pseudonym::hash_pseudonym(&key, &original);
        prop_assert_eq!(pseudonym::classify(&h), Some(PseudonymStrategy::Hash));
        prop_assert_eq!(h.len(), "pseudo-".len() + 64);
        prop_assert_eq!(pseudonym::classify(&pseudonym::new_token()), Some(PseudonymStrategy::Token));
        prop_assert_eq!(pseudonym::blind_index(&key, &original).len(), 64);
    }

    #[test]
    fn strategy_names_round_trip(text in "[a-z]{0,12}") {
        if let Some(s) = PseudonymStrategy::parse(&text) {
            prop_assert_eq!(s.name(), text.as_str());
        }
    }
}

// ------------------------------------------------------------------ key files, manifests

proptest! {
    #[test]
    fn key_file_parser_is_total(text in "\\PC{0,300}") {
        if let Ok(ring) = KeyRing::parse(&text) {
            prop_assert!(!ring.keys().is_empty());
            let ids: std::collections::HashSet<&str> = ring.keys().iter().map(|k| k.id.as_str()).collect();
            prop_assert_eq!(ids.len(), ring.keys().len(), "duplicate ids accepted");
        }
    }

    #[test]
    fn key_files_round_trip(keys in prop::collection::btree_map(key_id(), any::<[u8; 32]>(), 1..5)) {
        let text: String = keys.iter().map(|(id, s)| format!("# comment\n{id} {}\n\n", hex::encode(s))).collect();
        let ring = KeyRing::parse(&text).unwrap();
        prop_assert_eq!(ring.keys().len(), keys.len());
        prop_assert_eq!(&ring.current().id, keys.keys().last().unwrap());
    }

    #[test]
    fn manifest_render_parse_round_trip(entries in prop::collection::vec(("[a-z ]{1,10}", "[a-z_.()]{1,20}", "\\PC{0,30}"), 0..20)) {
        // Render replaces tabs and newlines, so compare with what it keeps.
        let clean = |s: &String| s.replace(['\t', '\n', '\r'], " ");
        let mut expected: Vec<manifest::Entry> = entries.iter().map(|(t, n, d)| (clean(t), clean(n), clean(d))).collect();
        expected.sort();
        let parsed = manifest::parse(&manifest::render(&entries)).unwrap();
        prop_assert_eq!(&parsed, &expected);
        prop_assert!(manifest::diff(&parsed, &expected).is_empty());
    }

    #[test]
    fn manifest_parser_is_total(text in "\\PC{0,200}") {
        let _ = manifest::parse(&text);
    }
}

proptest! {
    /// SQL sums the limbs as int8 (exactly, in numeric); reduced mod 2^64 that is the
    /// wrapping sum verification and the sealer compute in Rust.
    #[test]
    fn signed_limb_sums_reduce_to_the_wrapping_sum(elements in proptest::collection::vec(any::<[u8; 32]>(), 0..300)) {
        use audit_db_core::seal::Limbs;
        let mut wrapping = Limbs::default();
        let mut exact = [0i128; 4];
        for e in &elements {
            let l = Limbs::from_bytes(e);
            wrapping.add(&l);
            for (acc, v) in exact.iter_mut().zip(l.as_signed()) {
                *acc += i128::from(v);
            }
        }
        let texts = exact.map(|v| v.to_string());
        let parsed = Limbs::from_signed_sums([&texts[0], &texts[1], &texts[2], &texts[3]]).unwrap();
        prop_assert_eq!(parsed, wrapping);
    }
}

// ------------------------------------------- details of any shape and depth (issue 26)

/// Any JSON value, a few levels of arrays and objects.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::from(n)),
        "[a-z@.\"\\\\\n\u{e9}]{0,8}".prop_map(Value::String),
        Just(Value::String("carol@example.com".into())),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}|email|name", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `v` inside `levels` arrays or objects (PostgreSQL accepts far more than serde_json's 128).
fn nest(v: Value, levels: usize, in_objects: bool) -> Value {
    (0..levels).fold(v, |v, _| if in_objects { serde_json::json!({ "n": v }) } else { Value::Array(vec![v]) })
}

/// Details as a writer may store them: an object with personal and other members (one
/// of them nested up to 300 levels), or any other value.
fn details() -> impl Strategy<Value = Value> {
    let object = (
        proptest::collection::btree_map("[a-z]{1,6}|email|name|ip|pseudonymized", any_json(), 0..5),
        proptest::option::of("[a-z]{1,8}@example\\.com|system|security\\.officer@corp\\.com|pseudo-[0-9a-f]{64}"),
        proptest::option::of(any_json()),
        0usize..300,
        any::<bool>(),
    )
        .prop_map(|(mut m, email, name, levels, in_objects)| {
            if let Some(e) = email {
                m.insert("email".into(), Value::String(e));
            }
            if let Some(n) = name {
                m.insert("name".into(), n);
            }
            m.insert("deep".into(), nest(Value::String("carol@example.com".into()), levels, in_objects));
            Value::Object(m.into_iter().collect())
        });
    prop_oneof![object, any_json(), (any_json(), 0usize..300, any::<bool>()).prop_map(|(v, l, o)| nest(v, l, o))]
}

/// The members of a jsonb object text plus `extra`, in jsonb's key order (length, then bytes).
fn with_members(text: &str, extra: &[(&str, &str)]) -> String {
    use audit_db_core::integrity::json_string;
    let mut all: Vec<(String, String)> = audit_db_core::jsontext::top_members(text)
        .unwrap()
        .into_iter()
        .filter(|m| !extra.iter().any(|(k, _)| *k == m.key))
        .map(|m| (m.key.into_owned(), text[m.value].to_string()))
        .collect();
    all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
    let items: Vec<String> = all.iter().map(|(k, v)| format!("{}: {v}", json_string(k))).collect();
    format!("{{{}}}", items.join(", "))
}

proptest! {
    /// What audit_pseudonymize_subject does to a row's details (the personal keys'
    /// string values replaced with audit_db_core::jsontext::replace_strings, markers
    /// added to an object, anything else left as it is), then what verification
    /// recomputes: the same encoding, for every shape and depth; no personal value
    /// in clear; every other member byte for byte as it was.
    #[test]
    fn pseudonymized_details_verify_at_any_depth(v in details(), token in any::<bool>()) {
        use audit_db_core::jsontext::{decode_string, replace_strings, top_members};
        use audit_db_core::seal::{encoded_details, jsonb_text, personal_keys_of, reference};
        let key = RootKey::new("k", [9u8; 32]);
        let configured: Vec<String> = ["email", "name", "ip"].map(String::from).to_vec();
        let before = jsonb_text(&v);
        let personal = personal_keys_of(Some(&before), &configured);
        let expected: Vec<String> = match &v {
            Value::Object(m) => configured.iter().filter(|k| matches!(m.get(k.as_str()), Some(Value::String(_)))).cloned().collect(),
            _ => vec![],
        };
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        prop_assert_eq!(&personal, &expected_sorted);
        let hashed = |x: &str| reference(Some(&key), x);
        let at_insert = encoded_details(Some(&before), &personal, &hashed);
        // token: a pseudonym the verifier resolves to its original; hash: the reference itself.
        // (a reference is a pseudonym already: no strategy replaces it)
        let pseudonym = |x: &str| if pseudonym::is_reference(x) { x.to_string() } else if token { format!("T<{x}>") } else { hashed(x) };
        let resolve = |x: &str| match x.strip_prefix("T<").and_then(|r| r.strip_suffix('>')) {
            Some(original) => hashed(original),
            None => hashed(x),
        };
        let after = match top_members(&before) {
            Some(_) => {
                let replaced = replace_strings(&before, Some(&personal), &|x| Some(pseudonym(x)));
                // Markers go only where their keys are free or hold markers already.
                let free = |k: &str| top_members(&before).unwrap().iter().all(|m| m.key != k || audit_db_core::seal::is_marker(k, &before[m.value.clone()]));
                let markers: Vec<(&str, &str)> = [("pseudonymized", "true"), ("pseudonymizedAt", "\"2026-01-01T00:00:00+00:00\"")]
                    .into_iter()
                    .filter(|(k, _)| free(k))
                    .collect();
                with_members(&replaced, &markers)
            }
            None => before.clone(),
        };
        prop_assert_eq!(encoded_details(Some(&after), &personal, &resolve), at_insert);
        let after_members = top_members(&after);
        match (top_members(&before), after_members) {
            (Some(b), Some(a)) => {
                for m in b {
                    let was = &before[m.value.clone()];
                    let now = a.iter().find(|n| n.key == m.key).map(|n| &after[n.value.clone()]);
                    if personal.iter().any(|k| *k == m.key) {
                        let original = decode_string(was).unwrap();
                        prop_assume!(!pseudonym::is_reference(&original));
                        prop_assert_ne!(now.and_then(decode_string).map(|c| c.into_owned()), Some(original.into_owned()));
                    } else if !audit_db_core::seal::is_marker(&m.key, was) {
                        prop_assert_eq!(now, Some(was));
                    }
                }
            }
            (None, _) => prop_assert_eq!(&after, &before),
            (Some(_), None) => prop_assert!(false, "an object stays an object"),
        }
    }
}
