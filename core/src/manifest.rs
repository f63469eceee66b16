//! Schema manifests: what a released version of audit_db expects to find in the
//! catalog, one `object_type \t object_name \t definition` line per object, and the
//! comparison of a manifest with the live catalog (`audit_verify_schema()`).
//!
//! Column definitions are written `type; not null|null; default <expr>|no default`
//! so that a drift can be named precisely ("type differs", "nullability differs").

use std::collections::BTreeMap;

/// One catalog object: (object_type, object_name, definition).
pub type Entry = (String, String, String);

/// A drift found by [`diff`]: (object_type, object_name, problem).
pub type Drift = (String, String, String);

/// Parses a manifest; blank lines and lines starting with `#` are ignored.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, '\t');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(t), Some(name), Some(def)) => {
                out.push((t.to_string(), name.to_string(), def.to_string()))
            }
            _ => return Err(format!("manifest line {} has fewer than 3 tab-separated fields", n + 1)),
        }
    }
    Ok(out)
}

/// Writes entries in manifest form, sorted.
pub fn render(entries: &[Entry]) -> String {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort();
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    sorted
        .iter()
        .map(|(t, n, d)| format!("{}\t{}\t{}\n", clean(t), clean(n), clean(d)))
        .collect()
}

fn column_parts(def: &str) -> (&str, &str, &str) {
    let mut parts = def.splitn(3, "; ");
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

fn problem(object_type: &str, expected: &str, found: &str) -> String {
    if object_type == "column" {
        let (et, en, ed) = column_parts(expected);
        let (ft, fnn, fd) = column_parts(found);
        if et != ft {
            return format!("type differs: expected {et}, found {ft}");
        }
        if en != fnn {
            return format!("nullability differs: expected {en}, found {fnn}");
        }
        if ed != fd {
            return format!("default differs: expected {ed}, found {fd}");
        }
    }
    format!("definition differs: expected {expected}, found {found}")
}

/// Compares `expected` (a manifest) with `live` (the catalog): one drift per object
/// that is missing, unexpected or different, sorted by type and name.
/// Whether `entry` describes the table `table` or a part of it (its columns,
/// constraints, privileges, indexes): the entries a removed member table takes along.
pub fn belongs_to_table(entry: &Entry, table: &str) -> bool {
    let (kind, name, value) = entry;
    match kind.as_str() {
        "index" => value.contains(&format!(" ON {table} ")) || value.contains(&format!(" ON ONLY {table} ")),
        _ => name == table || name.strip_prefix(table).map(|rest| rest.starts_with('.')).unwrap_or(false),
    }
}

pub fn diff(expected: &[Entry], live: &[Entry]) -> Vec<Drift> {
    let key = |e: &Entry| (e.0.clone(), e.1.clone());
    // Only the kinds of object the manifest describes: a manifest written before the
    // snapshot learnt a kind (triggers came in 0.5.0) does not make them unexpected.
    let kinds: std::collections::BTreeSet<&String> = expected.iter().map(|e| &e.0).collect();
    let exp: BTreeMap<(String, String), &String> = expected.iter().map(|e| (key(e), &e.2)).collect();
    let got: BTreeMap<(String, String), &String> =
        live.iter().filter(|e| kinds.contains(&e.0)).map(|e| (key(e), &e.2)).collect();
    let mut out = Vec::new();
    for ((t, n), d) in &exp {
        match got.get(&(t.clone(), n.clone())) {
            None => out.push((t.clone(), n.clone(), "missing".to_string())),
            Some(found) if found != d => out.push((t.clone(), n.clone(), problem(t, d, found))),
            Some(_) => {}
        }
    }
    for (t, n) in got.keys() {
        if !exp.contains_key(&(t.clone(), n.clone())) {
            out.push((t.clone(), n.clone(), "unexpected".to_string()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: &str, n: &str, d: &str) -> Entry {
        (t.to_string(), n.to_string(), d.to_string())
    }

    #[test]
    fn kinds_the_manifest_does_not_describe_are_not_compared() {
        let manifest = vec![e("table", "t", "table")];
        let live = vec![e("table", "t", "table"), e("trigger", "t.x", "CREATE TRIGGER x")];
        assert!(diff(&manifest, &live).is_empty());
        let manifest = vec![e("table", "t", "table"), e("trigger", "t.x", "CREATE TRIGGER x; enabled")];
        let live = vec![e("table", "t", "table"), e("trigger", "t.x", "CREATE TRIGGER x; disabled")];
        assert_eq!(diff(&manifest, &live).len(), 1);
        assert_eq!(diff(&manifest, &[e("table", "t", "table")]), vec![(
            "trigger".to_string(),
            "t.x".to_string(),
            "missing".to_string()
        )]);
    }

    #[test]
    fn identical_catalogs_have_no_drift() {
        let m = vec![e("table", "alerts", "table"), e("column", "alerts.id", "text; not null; no default")];
        assert!(diff(&m, &m).is_empty());
    }

    #[test]
    fn missing_unexpected_and_type_changes_are_named() {
        let expected = vec![
            e("index", "alerts_status_idx", "CREATE INDEX alerts_status_idx ON alerts USING btree (status)"),
            e("column", "alerts.severity", "character varying(20); not null; no default"),
            e("column", "alerts.note", "text; null; no default"),
            e("column", "alerts.flag", "boolean; not null; default false"),
        ];
        let live = vec![
            e("column", "alerts.severity", "text; not null; no default"),
            e("column", "alerts.note", "text; not null; no default"),
            e("column", "alerts.flag", "boolean; not null; default true"),
            e("column", "alerts.stray", "integer; null; no default"),
        ];
        assert_eq!(
            diff(&expected, &live),
            vec![
                e("column", "alerts.flag", "default differs: expected default false, found default true"),
                e("column", "alerts.note", "nullability differs: expected null, found not null"),
                e("column", "alerts.severity", "type differs: expected character varying(20), found text"),
                e("column", "alerts.stray", "unexpected"),
                e("index", "alerts_status_idx", "missing"),
            ]
        );
    }

    #[test]
    fn other_objects_report_definition_differences() {
        let d = diff(&[e("index", "i", "CREATE INDEX i ON t (a)")], &[e("index", "i", "CREATE INDEX i ON t (b)")]);
        assert_eq!(d, vec![e("index", "i", "definition differs: expected CREATE INDEX i ON t (a), found CREATE INDEX i ON t (b)")]);
    }

    #[test]
    fn render_then_parse_round_trips_sorted() {
        let entries = vec![e("table", "b", "table"), e("column", "a.x", "text; null; no default")];
        let text = render(&entries);
        assert_eq!(text, "column\ta.x\ttext; null; no default\ntable\tb\ttable\n");
        let mut sorted = entries.clone();
        sorted.sort();
        assert_eq!(parse(&text).unwrap(), sorted);
        assert!(parse("# comment\n\n").unwrap().is_empty());
        assert!(parse("table\tonly-two").is_err());
    }

    #[test]
    fn a_tables_entries_are_its_own_only() {
        let e = |k: &str, n: &str, v: &str| (k.to_string(), n.to_string(), v.to_string());
        let t = "audit_log_default";
        assert!(belongs_to_table(&e("table", t, "partition of audit_log DEFAULT"), t));
        assert!(belongs_to_table(&e("column", "audit_log_default.id", "bigint"), t));
        assert!(belongs_to_table(&e("table privilege", t, "none"), t));
        assert!(belongs_to_table(
            &e("index", "audit_log_default_action_idx", "CREATE INDEX audit_log_default_action_idx ON audit_log_default USING btree (action)"),
            t
        ));
        assert!(!belongs_to_table(&e("table", "audit_log", "partitioned table RANGE (\"timestamp\")"), t));
        assert!(!belongs_to_table(&e("column", "audit_log_defaults.id", "bigint"), t));
        assert!(!belongs_to_table(&e("index", "audit_log_action_idx", "CREATE INDEX audit_log_action_idx ON ONLY audit_log USING btree (action)"), t));
    }
}
