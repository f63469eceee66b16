//! Identifiers inside jsonb values at any depth (issue 26), for the subject functions:
//! `audit_json_mentions(doc, names)` and `audit_json_replace(doc, top_keys, originals,
//! pseudonyms)`. They read jsonb's text (`doc::text`) with `audit_db_core::jsontext`,
//! which walks it without recursion and without serde_json's depth limit of 128, so
//! every value PostgreSQL accepts is searched and rewritten. Pure functions of their
//! arguments: IMMUTABLE PARALLEL SAFE, no table, no key, and no `SET search_path`
//! (whose save and restore PostgreSQL would pay for every row).

use audit_db_core::jsontext;
use pgrx::prelude::*;
use std::collections::HashMap;

/// `audit_json_mentions(doc text, names text[]) RETURNS boolean`: whether any string
/// value of the JSON text `doc`, at any depth, in arrays and objects, equals one of
/// `names` (object keys are not values).
#[pg_extern(immutable, parallel_safe, strict)]
fn audit_json_mentions(doc: &str, names: Vec<Option<String>>) -> bool {
    let names: Vec<String> = names.into_iter().flatten().collect();
    jsontext::mentions(doc, &names)
}

/// `audit_json_replace(doc text, top_keys text[], originals text[], pseudonyms text[])
/// RETURNS text`: `doc` with every string value equal to `originals[i]` replaced by
/// `pseudonyms[i]`: at any depth when `top_keys` is NULL, else only the top-level
/// members of an object whose key is in `top_keys`. Everything else stays byte for
/// byte (cast the answer back to jsonb).
#[pg_extern(immutable, parallel_safe)]
fn audit_json_replace(
    doc: Option<&str>,
    top_keys: Option<Vec<Option<String>>>,
    originals: Option<Vec<Option<String>>>,
    pseudonyms: Option<Vec<Option<String>>>,
) -> Option<String> {
    let doc = doc?;
    let map: HashMap<String, String> = originals
        .unwrap_or_default()
        .into_iter()
        .zip(pseudonyms.unwrap_or_default())
        .filter_map(|(o, p)| Some((o?, p?)))
        .collect();
    if map.is_empty() {
        return Some(doc.to_string());
    }
    let keys: Option<Vec<String>> = top_keys.map(|k| k.into_iter().flatten().collect());
    Some(jsontext::replace_strings(doc, keys.as_deref(), &|v| map.get(v).cloned()))
}
