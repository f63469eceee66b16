//! A data subject's whole footprint (issue 18): every row and column where a person
//! appears, for export, pseudonymization, erasure and forgetting alike.
//!
//! * A subject is one or more identifiers (a user id, an e-mail, a patient id).
//! * `audit_log`: the subject is the *actor* (`principal_id`), the *target*
//!   (`target_resource_id`) or *mentioned* (a string value of a personal `details` key).
//!   All three are references in the row hash (`audit_db_core::seal::encode_v2`), so
//!   they can be replaced by pseudonyms and the row still verifies. Rows written before
//!   0.6.0 hash their target in clear: their target is left as it is, and counted.
//! * Every other table: the places declared in `audit_subject_map` (shipped for the
//!   original's tables, extendable by an admin for their own).
//!
//! docs/subjects.md writes down what each operation does to each place, and why.

use crate::base::spi_util::q;
use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::privacy::gdpr::{log_event, parse_strategy, pseudonymize_many, COMPLIANCE_ACTIONS};
use crate::base::keys::{key_ring, personal_details_keys};
use crate::base::regclass::JsonbDatum;
use crate::evidence::retirement::Leaving;
use audit_db_core::command::Command;
use audit_db_core::pseudonym::{self, Strategy};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// The identifiers of one data subject: at least one, none NULL or blank, no repeats.
pub struct Subject(Vec<String>);

impl Subject {
    pub fn new(ids: Vec<Option<String>>) -> AuditResult<Subject> {
        let mut out: Vec<String> = Vec::with_capacity(ids.len());
        for id in ids {
            let id = id.ok_or_else(|| {
                AuditError::null_argument("identifiers").detail("One element of the identifiers array is NULL.")
            })?;
            // '' names no data subject: events without one would all be taken for one.
            if id.trim().is_empty() {
                return Err(AuditError::invalid_parameter("a subject identifier must not be empty")
                    .detail("An empty or blank identifier names no data subject.")
                    .hint("Pass the identifiers of the data subject as stored: a user id, an e-mail address, a resource id."));
            }
            if !out.contains(&id) {
                out.push(id);
            }
        }
        if out.is_empty() {
            return Err(AuditError::invalid_parameter("a subject needs at least one identifier")
                .hint("Pass ARRAY['user-42', 'carol@example.com'] or a single text."));
        }
        Ok(Subject(out))
    }

    /// A subject from identifiers that cannot be NULL (a replayed command's).
    pub fn from_ids(ids: Vec<String>) -> AuditResult<Subject> {
        Subject::new(ids.into_iter().map(Some).collect())
    }

    pub fn one(id: Option<&str>) -> AuditResult<Subject> {
        Subject::new(vec![Some(id.ok_or_else(|| AuditError::null_argument("principal_id"))?.to_string())])
    }

    pub fn ids(&self) -> &[String] {
        &self.0
    }

    /// identifier -> pseudonym under `strategy`, as a jsonb object. Refused (22001)
    /// before any row changes when a pseudonym would not fit the places it goes to.
    fn pseudonyms(&self, strategy: Strategy) -> AuditResult<pgrx::JsonB> {
        let map = pseudonym_map(&self.0, strategy)?;
        if let serde_json::Value::Object(m) = &map.0 {
            if let Some((id, p)) = m.iter().find(|(_, p)| p.as_str().is_some_and(|p| p.chars().count() > PLACE_WIDTH)) {
                return Err(AuditError::string_data_right_truncation(format!(
                    "the {} pseudonym of an identifier of {} characters has {} characters",
                    strategy.name(),
                    id.chars().count(),
                    p.as_str().map(|p| p.chars().count()).unwrap_or(0)
                ))
                .detail(format!("The subject's places (audit_log.principal_id, target_resource_id, the original's actor columns) hold {PLACE_WIDTH} characters; nothing was changed."))
                .hint("Use the 'token' or 'hash' strategy for this subject: their pseudonyms have 39 and 71 characters."));
            }
        }
        Ok(map)
    }

    /// How the subject is named in the events audit_db writes about it: the hash
    /// pseudonym of its first identifier.
    fn label(&self) -> AuditResult<String> {
        Ok(pseudonym::hash_pseudonym(key_ring()?.current(), &self.0[0]))
    }
}

/// The width of the subject's places: audit_log's principal_id and target_resource_id
/// and the original's actor columns are varchar(255).
const PLACE_WIDTH: usize = 255;

/// One place of `audit_subject_map` outside audit_log.
struct Place {
    /// Schema-qualified, quoted.
    relation: String,
    table: String,
    column: String,
    json_array: bool,
    delete_row: bool,
    /// One of audit_db's own tables (a builtin place): changed as the extension's
    /// owner; any other as the calling role (see `as_caller`).
    builtin: bool,
}

/// Every place, each declared one checked again by `audit_subject_place_check` (the
/// table may have become something else since it was declared).
fn places() -> AuditResult<Vec<Place>> {
    let sql = q("SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), c.relname::text, m.column_name::text,
                    m.kind = 'json_array', m.on_erasure = 'delete_row', m.builtin,
                    CASE WHEN NOT m.builtin THEN @extschema@.audit_subject_place_check(m.relation, m.column_name, m.kind) END IS NULL
               FROM @extschema@.audit_subject_map m
               JOIN pg_catalog.pg_class c ON c.oid = m.relation
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE m.relation <> '@extschema@.audit_log'::pg_catalog.regclass
              ORDER BY c.relname, m.column_name")?;
    Ok(Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            &sql,
            None,
            &[],
        )? {
            out.push(Place {
                relation: r.get::<String>(1)?.unwrap_or_default(),
                table: r.get::<String>(2)?.unwrap_or_default(),
                column: r.get::<String>(3)?.unwrap_or_default(),
                json_array: r.get::<bool>(4)?.unwrap_or(false),
                delete_row: r.get::<bool>(5)?.unwrap_or(false),
                builtin: r.get::<bool>(6)?.unwrap_or(false),
            });
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?)
}

/// What an operation did at one place: (table, column, action, rows).
pub type Outcome = (String, String, String, i64);

impl Place {
    /// Replaces the subject's identifiers at this place by their pseudonyms (`map`).
    fn pseudonymize(&self, subject: &Subject, map: &pgrx::JsonB) -> AuditResult<i64> {
        let col = quote_identifier(&self.column);
        let sql = if self.json_array {
            // Every string value equal to an identifier, at any depth (audit_json_replace).
            q(&format!(
                "WITH u AS (UPDATE {rel} t SET {col} = @extschema@.audit_json_replace(t.{col}::pg_catalog.text, NULL,
                        ARRAY(SELECT pg_catalog.jsonb_object_keys($2)),
                        ARRAY(SELECT $2 ->> k FROM pg_catalog.jsonb_object_keys($2) k))::pg_catalog.jsonb
                  WHERE {test} RETURNING 1)
                 SELECT pg_catalog.count(*) FROM u",
                rel = self.relation,
                test = json_test(&format!("t.{col}"))
            ))?
        } else {
            format!(
                "WITH u AS (UPDATE {rel} t SET {col} = $2 ->> t.{col} WHERE t.{col} = ANY($1) RETURNING 1)
                 SELECT pg_catalog.count(*) FROM u",
                rel = self.relation
            )
        };
        let _caller = self.as_caller();
        Ok(Spi::get_one_with_args::<i64>(&sql, &[subject.ids().to_vec().into(), pgrx::JsonB(map.0.clone()).into()])?.unwrap_or(0))
    }

    /// A declared table is read and changed as the role that called the subject
    /// function, in a restricted context with a pinned search_path: as if it ran the
    /// statement itself, so its privileges and the table's row-level security apply,
    /// and no code of the table (triggers, rules, defaults, index expressions) runs
    /// with the extension owner's rights (issue 25: a trigger made its owner
    /// superuser; acting as the table's owner instead let a DPO keep revoked rights
    /// and pass row-level security). audit_db's own tables are audit_db's code.
    fn as_caller(&self) -> Option<crate::base::owner::UserSwitch> {
        (!self.builtin).then(crate::base::owner::UserSwitch::to_caller)
    }

    fn delete(&self, subject: &Subject) -> AuditResult<i64> {
        let col = quote_identifier(&self.column);
        let test = if self.json_array { json_test(&format!("t.{col}")) } else { format!("t.{col} = ANY($1)") };
        let sql = q(&format!(
            "WITH d AS (DELETE FROM {rel} t WHERE {test} RETURNING 1) SELECT pg_catalog.count(*) FROM d",
            rel = self.relation
        ))?;
        let _caller = self.as_caller();
        Ok(Spi::get_one_with_args::<i64>(&sql, &[subject.ids().to_vec().into()])?.unwrap_or(0))
    }

    fn outcome(&self, action: &str, rows: i64) -> Outcome {
        (self.table.clone(), self.column.clone(), action.to_string(), rows)
    }
}

/// The test of a `json_array` place (any jsonb value): a string equal to one of the
/// names `$1`, at any depth, in arrays and objects. (`@extschema@` still to replace.)
fn json_test(column: &str) -> String {
    format!("@extschema@.audit_json_mentions({column}::pg_catalog.text, $1)")
}

/// audit_log rows written before 0.6.0 whose target is one of the subject's
/// identifiers: their hash covers the target in clear, so it stays. Such rows have no
/// seal epoch either (the trigger sets both): `seal_epoch IS NULL` reaches them through
/// audit_log_seal_epoch_idx instead of a second scan of the whole table.
fn legacy_targets(subject: &Subject) -> AuditResult<i64> {
    Ok(Spi::get_one_with_args::<i64>(
        &q("SELECT pg_catalog.count(*) FROM @extschema@.audit_log
          WHERE seal_epoch IS NULL AND row_hash IS NULL AND target_resource_id = ANY($1)")?,
        &[subject.ids().to_vec().into()],
    )?
    .unwrap_or(0))
}

/// The pseudonyms of the personal `details` values of the rows where the subject is
/// the actor, as a jsonb object original -> pseudonym: one batch (one statement for the
/// mappings of token and encryption pseudonyms), not one call per value and row.
fn details_pseudonyms(subject: &Subject, keys: &[String], strategy: Strategy) -> AuditResult<pgrx::JsonB> {
    // (details may be any jsonb a writer stored: only an object has values by key)
    let sql = q("SELECT DISTINCT e.value #>> '{}'
               FROM @extschema@.audit_log a,
                    pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(a.details) = 'object' THEN a.details ELSE '{}' END) e
              WHERE a.principal_id = ANY($1) AND a.details ?| $2
                AND e.key = ANY($2) AND pg_catalog.jsonb_typeof(e.value) = 'string'")?;
    let values: Vec<String> = Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            &sql,
            None,
            &[subject.ids().to_vec().into(), keys.to_vec().into()],
        )? {
            out.extend(r.get::<String>(1)?);
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;
    pseudonym_map(&values, strategy)
}

/// original -> pseudonym under `strategy` for every value, as a jsonb object: one
/// batch (one statement for the mappings of token and encryption pseudonyms).
fn pseudonym_map(originals: &[String], strategy: Strategy) -> AuditResult<pgrx::JsonB> {
    let borrowed: Vec<Option<&str>> = originals.iter().map(|v| Some(v.as_str())).collect();
    let map = originals
        .iter()
        .zip(pseudonymize_many(&borrowed, strategy)?)
        .filter_map(|(v, p)| p.map(|p| (v.clone(), serde_json::Value::String(p))))
        .collect();
    Ok(pgrx::JsonB(serde_json::Value::Object(map)))
}

/// `{"<key>": "<identifier>"}` for every configured personal key and identifier: a row
/// whose details contain one of them mentions the subject. Containment (`@>`) is one
/// cheap test per row of the scan, where expanding every row's details would not be.
/// A key removed from audit_db.personal_details_keys is no longer searched.
fn mentions(subject: &Subject, keys: &[String]) -> Vec<pgrx::JsonB> {
    keys.iter()
        .flat_map(|k| subject.ids().iter().map(move |id| pgrx::JsonB(serde_json::json!({ k.as_str(): id }))))
        .collect()
}

/// Replaces the subject in audit_log: as actor (principal_id, and every personal
/// `details` value of those rows), as target (target_resource_id) and where a personal
/// `details` value names it (only that value: the rest of someone else's event stays).
/// Rows it changes are marked pseudonymized when their details are an object (any other
/// value, SQL NULL included, is left exactly as it was: issue 26). The personal keys are the row's own
/// (recorded at insert), so the row still verifies; rows written before 0.6.0 use the
/// configured keys, as their verification does. One statement on the parent: it locks
/// every partition for its duration, so maintenance cannot drop or fill a partition
/// under it.
fn pseudonymize_audit_log(subject: &Subject, map: &pgrx::JsonB, strategy: Strategy) -> AuditResult<i64> {
    let keys = personal_details_keys();
    // Lock order: the UPDATE's lock first, parent then every partition (what LOCK
    // TABLE on a partitioned table does, and the order maintenance locks in). Reading
    // the details first under ACCESS SHARE and upgrading to ROW EXCLUSIVE for the
    // UPDATE would deadlock with a maintenance run that holds the parent and waits
    // for one of the partitions (pg_test/load.sh found it).
    Spi::run(&q("LOCK TABLE @extschema@.audit_log IN ROW EXCLUSIVE MODE")?)?;
    let details = details_pseudonyms(subject, &keys, strategy)?;
    let _internal = crate::base::internal::guard();
    // k(a) = the row's personal keys: CASE WHEN a.row_hash IS NOT NULL THEN
    // coalesce(a.personal_keys, '{}') ELSE $3 END (written out where used).
    Ok(Spi::get_one_with_args::<i64>(
        &q("WITH u AS (
           UPDATE @extschema@.audit_log a
              SET principal_id = coalesce($2 ->> a.principal_id, a.principal_id),
                  target_resource_id = CASE WHEN a.row_hash IS NOT NULL
                                            THEN coalesce($2 ->> a.target_resource_id, a.target_resource_id)
                                            ELSE a.target_resource_id END,
                  details = CASE WHEN pg_catalog.jsonb_typeof(a.details) IS DISTINCT FROM 'object' THEN a.details
                  ELSE CASE WHEN a.details ?| (CASE WHEN a.row_hash IS NOT NULL THEN coalesce(a.personal_keys, '{}') ELSE $3 END)
                  THEN coalesce((
                      SELECT pg_catalog.jsonb_object_agg(e.key,
                               CASE WHEN e.key = ANY(CASE WHEN a.row_hash IS NOT NULL THEN coalesce(a.personal_keys, '{}') ELSE $3 END)
                                         AND pg_catalog.jsonb_typeof(e.value) = 'string'
                                         AND (a.principal_id = ANY($1) OR (e.value #>> '{}') = ANY($1))
                                    THEN coalesce($5 -> (e.value #>> '{}'), $2 -> (e.value #>> '{}'),
                                                  pg_catalog.to_jsonb(@extschema@.audit_pseudonymize(e.value #>> '{}', $4)))
                                    ELSE e.value END)
                        FROM pg_catalog.jsonb_each(a.details) e), '{}'::jsonb)
                  ELSE a.details END
                        -- The markers, where their keys are free or hold markers already: a
                        -- writer's own value under such a key is hashed and stays (issue 25).
                        || CASE WHEN coalesce(a.details -> 'pseudonymized', 'true'::jsonb) = 'true'::jsonb
                                THEN pg_catalog.jsonb_build_object('pseudonymized', true) ELSE '{}'::jsonb END
                        || CASE WHEN a.details -> 'pseudonymizedAt' IS NULL
                                  OR (pg_catalog.jsonb_typeof(a.details -> 'pseudonymizedAt') = 'string'
                                      AND (a.details ->> 'pseudonymizedAt')
                                          ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?[+-][0-9]{2}(:[0-9]{2}){0,2}$')
                                THEN pg_catalog.jsonb_build_object('pseudonymizedAt', pg_catalog.now()) ELSE '{}'::jsonb END END
            WHERE a.principal_id = ANY($1)
               OR (a.row_hash IS NOT NULL AND a.target_resource_id = ANY($1))
               OR a.details @> ANY($6)
           RETURNING 1)
         SELECT pg_catalog.count(*) FROM u")?,
        &[
            subject.ids().to_vec().into(),
            pgrx::JsonB(map.0.clone()).into(),
            keys.to_vec().into(),
            strategy.name().into(),
            details.into(),
            mentions(subject, &keys).into(),
        ],
    )?
    .unwrap_or(0))
}

/// Pseudonymizes the subject at every place: audit_log (actor, target, mentioned) and
/// every column of `audit_subject_map`. One transaction (the caller's).
pub fn pseudonymize_subject(subject: &Subject, strategy: Strategy) -> AuditResult<Vec<Outcome>> {
    let map = subject.pseudonyms(strategy)?;
    let mut out = vec![("audit_log".to_string(), "*".to_string(), "pseudonymized".to_string(),
                        pseudonymize_audit_log(subject, &map, strategy)?)];
    for place in places()? {
        let n = place.pseudonymize(subject, &map)?;
        out.push(place.outcome("pseudonymized", n));
    }
    note_legacy_targets(subject, &mut out)?;
    log_event("gdpr.data.pseudonymize", Some(&subject.label()?), "success", &summary(&out))?;
    crate::base::archive_role::emit(&Command::Pseudonymize { subjects: subject.ids().to_vec(), strategy: strategy.name().to_string() })?;
    Ok(out)
}

fn note_legacy_targets(subject: &Subject, out: &mut Vec<Outcome>) -> AuditResult<()> {
    let legacy = legacy_targets(subject)?;
    if legacy > 0 {
        pgrx::notice!(
            "audit_db: {legacy} audit_log rows written before 0.6.0 keep the subject as target_resource_id: their hash covers it in clear"
        );
        out.push(("audit_log".into(), "target_resource_id".into(), "kept (written before 0.6.0)".into(), legacy));
    }
    Ok(())
}

fn summary(out: &[Outcome]) -> String {
    let parts: Vec<String> =
        out.iter().filter(|o| o.3 > 0).map(|(t, c, a, n)| format!("{t}.{c}: {n} {a}")).collect();
    if parts.is_empty() { "nothing found".into() } else { parts.join("; ") }
}

/// Erasure: the subject's own audit_log events, under any of its names (`names`), are
/// deleted (with `preserve`, the compliance events stay, pseudonymized); whatever
/// else names the subject is pseudonymized by hash (someone else's event about them;
/// compliance rows); rows of the declared places are deleted or pseudonymized as
/// `audit_subject_map` says; the subject's mappings are deleted (`shred`).
pub fn delete_subject(subject: &Subject, preserve: bool) -> AuditResult<Vec<Outcome>> {
    key_ring()?;
    let actions: Vec<String> = COMPLIANCE_ACTIONS.iter().map(|s| s.to_string()).collect();
    // The subject's own events under any of its names: also those pseudonymized or
    // forgotten before (issue 26: the order of the operations does not matter).
    let principals = names(subject)?;
    let _internal = crate::base::internal::guard();
    // No insert may come between retiring the links and deleting the rows (an event of
    // this subject committed in between would be deleted with its link unretired):
    // writers wait for the erasure, readers do not.
    Spi::run(&q("LOCK TABLE @extschema@.audit_log IN SHARE ROW EXCLUSIVE MODE")?)?;
    // The erased rows' legacy chain links are retired first, so the chain still verifies.
    let leaving = Leaving::Subject { principals: &principals, preserve, kept_actions: &actions };
    let deleted = crate::evidence::retirement::delete_rows(&leaving, "erasure (audit_delete_subject)")?;
    let map = subject.pseudonyms(Strategy::Hash)?;
    let mut out = vec![
        ("audit_log".to_string(), "principal_id".to_string(), "deleted".to_string(), deleted),
        ("audit_log".to_string(), "*".to_string(), "pseudonymized".to_string(),
         pseudonymize_audit_log(subject, &map, Strategy::Hash)?),
    ];
    for place in places()? {
        if place.delete_row {
            let n = place.delete(subject)?;
            out.push(place.outcome("deleted", n));
        } else {
            let n = place.pseudonymize(subject, &map)?;
            out.push(place.outcome("pseudonymized", n));
        }
    }
    // Whatever stays (compliance events, someone else's) may still carry a token or
    // encryption pseudonym of the subject: its mapping goes too, as by forgetting.
    out.push(("pseudonym_mapping".into(), "original_id".into(), "deleted".into(), shred(subject)?));
    note_legacy_targets(subject, &mut out)?;
    log_event("gdpr.data.delete", Some(&subject.label()?), "success", &summary(&out))?;
    crate::base::archive_role::emit(&Command::Delete { subjects: subject.ids().to_vec(), preserve })?;
    Ok(out)
}

/// Crypto-shredding: the mappings of every identifier go, so no token or encryption
/// pseudonym of the subject can be reversed any more.
pub fn forget_subject(subject: &Subject) -> AuditResult<Vec<Outcome>> {
    let deleted = shred(subject)?;
    let out = vec![("pseudonym_mapping".to_string(), "original_id".to_string(), "deleted".to_string(), deleted)];
    log_event("gdpr.data.delete", Some(&subject.label()?), "success",
              &format!("{deleted} pseudonym mappings deleted (crypto-shredding)"))?;
    crate::base::archive_role::emit(&Command::Forget { subjects: subject.ids().to_vec() })?;
    Ok(out)
}

/// Deletes the subject's mappings: audit_db's token and encryption mappings of every
/// identifier (found by blind index), their references kept first (`keep_references`),
/// and adopted mappings that hold an identifier in clear. Returns how many went.
fn shred(subject: &Subject) -> AuditResult<i64> {
    let ring = key_ring()?;
    let blinds: Vec<String> =
        subject.ids().iter().flat_map(|id| crate::privacy::mapping::blind_indexes(&ring, id)).collect();
    // On an archive the primary's references arrive by replication (the mappings
    // publication), before this replayed command: writing them here would collide.
    if !crate::base::archive_role::replaying() {
        keep_references(&ring, &blinds)?;
    }
    Ok(Spi::get_one_with_args::<i64>(
        // Mappings with a blind index are token or encryption mappings (audit_db's
        // own): naming both strategies lets the unique (strategy, blind_index) index
        // find them, where blind_index alone scanned every mapping. An adopted mapping
        // (strategy NULL) that stored the original in clear is found by it.
        &q("WITH d AS (DELETE FROM @extschema@.pseudonym_mapping
                     WHERE (strategy = ANY('{token,encryption}') AND blind_index = ANY($1))
                        OR (strategy IS NULL AND original_id = ANY($2)) RETURNING 1)
         SELECT pg_catalog.count(*) FROM d")?,
        &[blinds.into(), subject.ids().to_vec().into()],
    )?
    .unwrap_or(0))
}

/// Before the mappings go: for each token or encryption pseudonym of the subject and
/// each key of the ring, the reference its original had in the row hashes under that
/// key (its hash pseudonym), signed with the key, so that rows still carrying it stay
/// verifiable and a pseudonym nobody issued stays a mismatch (issue 25). The original
/// itself is not kept.
fn keep_references(ring: &audit_db_core::crypto::KeyRing, blinds: &[String]) -> AuditResult<()> {
    let (mut pseudonyms, mut key_ids, mut references, mut signatures) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    Spi::connect(|client| {
        for r in client.select(
            &q("SELECT pseudonym_id, original_id FROM @extschema@.pseudonym_mapping
                 WHERE strategy = ANY('{token,encryption}') AND blind_index = ANY($1)")?,
            None,
            &[blinds.to_vec().into()],
        )? {
            let (Some(pseudonym_id), Some(sealed)) = (r.get::<String>(1)?, r.get::<String>(2)?) else { continue };
            // A mapping whose original no key of the ring opens has no reference to keep.
            let Ok(original) = pseudonym::open_original(ring, &sealed) else { continue };
            for key in ring.keys() {
                let reference = pseudonym::hash_pseudonym(key, &original);
                signatures.push(audit_db_core::integrity::sign(key, &audit_db_core::seal::forgotten_message(&pseudonym_id, &reference)));
                pseudonyms.push(pseudonym_id.clone());
                key_ids.push(key.id.clone());
                references.push(reference);
            }
        }
        Ok::<_, AuditError>(())
    })?;
    if pseudonyms.is_empty() {
        return Ok(());
    }
    Spi::run_with_args(
        &q("INSERT INTO @extschema@.pseudonym_forgotten (pseudonym_id, key_id, reference, signature)
            SELECT t.p, t.k, t.r, t.s
              FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]),
                              pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[])) AS t(p, k, r, s)
             WHERE NOT EXISTS (SELECT 1 FROM @extschema@.pseudonym_forgotten f
                                WHERE f.pseudonym_id OPERATOR(pg_catalog.=) t.p AND f.key_id OPERATOR(pg_catalog.=) t.k)")?,
        &[pseudonyms.into(), key_ids.into(), references.into(), signatures.into()],
    )?;
    Ok(())
}

/// Every name the subject may appear under: its identifiers, their hash pseudonyms
/// under every key, and their token and encryption pseudonyms (mappings made here,
/// adopted ones that stored the original in clear, and forgotten ones).
pub fn names(subject: &Subject) -> AuditResult<Vec<String>> {
    let ring = key_ring()?;
    let mut out: Vec<String> = subject.ids().to_vec();
    let mut blinds = Vec::new();
    for id in subject.ids() {
        out.extend(ring.keys().iter().map(|k| pseudonym::hash_pseudonym(k, id)));
        blinds.extend(crate::privacy::mapping::blind_indexes(&ring, id));
    }
    let sql = q("SELECT pseudonym_id FROM @extschema@.pseudonym_mapping
              WHERE strategy = ANY('{token,encryption}') AND blind_index = ANY($1)
             UNION SELECT pseudonym_id FROM @extschema@.pseudonym_mapping WHERE strategy IS NULL AND original_id = ANY($2)")?;
    Spi::connect(|client| {
        for r in client.select(
            &sql,
            None,
            &[blinds.into(), subject.ids().to_vec().into()],
        )? {
            out.extend(r.get::<String>(1)?);
        }
        Ok::<_, pgrx::spi::Error>(())
    })?;
    out.extend(forgotten_names(&ring, &out)?);
    out.sort();
    out.dedup();
    Ok(out)
}

/// The forgotten token and encryption pseudonyms whose kept reference is one of
/// `names` (a hash pseudonym of an identifier under some key), each signed with that
/// key (a planted row of `pseudonym_forgotten` names nobody).
fn forgotten_names(ring: &audit_db_core::crypto::KeyRing, names: &[String]) -> AuditResult<Vec<String>> {
    let sql = q("SELECT pseudonym_id, key_id, reference, signature FROM @extschema@.pseudonym_forgotten
                  WHERE reference = ANY($1)")?;
    Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(&sql, None, &[names.to_vec().into()])? {
            let (Some(p), Some(k), Some(reference), Some(sig)) =
                (r.get::<String>(1)?, r.get::<String>(2)?, r.get::<String>(3)?, r.get::<String>(4)?)
            else {
                continue;
            };
            if ring.get(&k).is_some_and(|key| crate::evidence::row_check::forgotten_signed(key, &p, &reference, &sig)) {
                out.push(p);
            }
        }
        Ok::<_, AuditError>(out)
    })
}

/// The export as one jsonb array of {table, column, role, row}, from audit_subject_rows.
pub fn export_subject(subject: &Subject) -> AuditResult<JsonbDatum> {
    let sql = q("SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'table', r.table_name, 'column', r.column_name, 'role', r.role, 'row', r.row_data)), '[]'::jsonb),
                    pg_catalog.count(*)
               FROM @extschema@.audit_subject_rows($1) r")?;
    let (rows, count) = Spi::connect(|client| {
        let result = client.select(
            &sql,
            None,
            &[subject.ids().to_vec().into()],
        )?;
        let row = result.first();
        let datum = row.get_datum_by_ordinal(1)?.expect("coalesce(..., '[]') is never NULL");
        // SAFETY: a non-NULL jsonb datum of this SPI connection's result.
        let rows = unsafe { JsonbDatum::transfer_from_spi(datum) };
        Ok::<_, pgrx::spi::Error>((rows, row.get::<i64>(2)?.unwrap_or(0)))
    })?;
    log_event("gdpr.data.export", Some(&subject.label()?), "success", &format!("{count} rows exported"))?;
    Ok(rows)
}

/// The rows of one declared place that name the subject, each as jsonb, read as the
/// role that called the subject function (`Place::as_caller`), in a restricted
/// context: planning a query on a table runs code its owner chose (an IMMUTABLE
/// function in an index or statistics expression is folded at plan time), which must
/// never run as the extension's owner (issue 25). audit_db's own tables are read as
/// the extension's owner. Called by `audit_subject_rows` for every place.
fn place_rows(relation: pg_sys::Oid, column: &str, json_array: bool, names: Vec<String>) -> AuditResult<Vec<JsonbDatum>> {
    let (name, member) = Spi::connect(|client| {
        let row = client.select(
            "SELECT c.oid::pg_catalog.regclass::text,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                               AND d.deptype = 'e' AND e.extname = 'audit_db')
               FROM pg_catalog.pg_class c WHERE c.oid = $1",
            Some(1),
            &[relation.into()],
        )?;
        let row = row.first();
        Ok::<_, pgrx::spi::Error>((row.get::<String>(1)?, row.get::<bool>(2)?))
    })?;
    let (Some(name), Some(member)) = (name, member) else {
        return Err(AuditError::invalid_parameter(format!("relation with OID {} does not exist", relation.to_u32()))
            .hint("Delete its row of audit_subject_map."));
    };
    let col = quote_identifier(column);
    let test = if json_array { json_test(&format!("t.{col}")) } else { format!("t.{col} = ANY($1)") };
    let sql = q(&format!("SELECT pg_catalog.to_jsonb(t) FROM {name} t WHERE {test}"))?;
    let _caller = (!member).then(crate::base::owner::UserSwitch::to_caller);
    Ok(Spi::connect(|client| {
        let mut out = Vec::new();
        let mut table = client.select(&sql, None, &[names.into()])?;
        // (Iterating moves the table's position; its datum is read there.)
        while table.next().is_some() {
            if let Some(datum) = table.get_datum_by_ordinal(1)? {
                // SAFETY: a non-NULL jsonb datum of this SPI connection's result.
                out.push(unsafe { JsonbDatum::transfer_from_spi(datum) });
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?)
}

/// `audit_subject_place_rows(relation, column_name, kind, names)`: see `place_rows`.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn audit_subject_place_rows(
    relation: Option<crate::base::regclass::Regclass>,
    column_name: Option<&str>,
    kind: Option<&str>,
    names: Option<Vec<Option<String>>>,
) -> SetOfIterator<'static, JsonbDatum> {
    let relation = relation.ok_or_else(|| AuditError::null_argument("relation")).or_report();
    let column = column_name.ok_or_else(|| AuditError::null_argument("column_name")).or_report();
    let names: Vec<String> = names.unwrap_or_default().into_iter().flatten().collect();
    SetOfIterator::new(place_rows(relation.0, column, kind == Some("json_array"), names).or_report())
}

/// Runs a subject command replayed on an archive.
pub fn run_command(command: Command) -> AuditResult<()> {
    match command {
        Command::Pseudonymize { subjects, strategy } => {
            let strategy = Strategy::parse(&strategy).ok_or_else(|| {
                AuditError::data_exception(format!("unknown strategy \"{strategy}\" in a replicated command"))
            })?;
            pseudonymize_subject(&Subject::from_ids(subjects)?, strategy).map(|_| ())
        }
        Command::Delete { subjects, preserve } => delete_subject(&Subject::from_ids(subjects)?, preserve).map(|_| ()),
        Command::Forget { subjects } => forget_subject(&Subject::from_ids(subjects)?).map(|_| ()),
    }
}

// ------------------------------------------------------------------ SQL surface


fn subject_arg(identifiers: Option<Vec<Option<String>>>) -> Subject {
    let ids = identifiers.ok_or_else(|| AuditError::null_argument("identifiers")).or_report();
    Subject::new(ids).or_report()
}

/// `audit_pseudonymize_subject(principal_id, strategy)`: the rows of audit_log changed.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_pseudonymize_subject(principal_id: Option<&str>, strategy: default!(Option<&str>, "'hash'")) -> i64 {
    let strategy = parse_strategy(strategy).or_report();
    let out = pseudonymize_subject(&Subject::one(principal_id).or_report(), strategy).or_report();
    out.iter().filter(|o| o.0 == "audit_log" && o.2 == "pseudonymized").map(|o| o.3).sum()
}

/// `audit_pseudonymize_subject(identifiers, strategy)`: every place, one row each.
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "audit_pseudonymize_subject")]
#[search_path(pg_catalog, pg_temp)]
fn audit_pseudonymize_subject_ids(
    identifiers: Option<Vec<Option<String>>>,
    strategy: default!(Option<&str>, "'hash'"),
) -> TableIterator<
    'static,
    (name!(table_name, String), name!(column_name, String), name!(action, String), name!(rows, i64)),
> {
    let strategy = parse_strategy(strategy).or_report();
    TableIterator::new(pseudonymize_subject(&subject_arg(identifiers), strategy).or_report())
}

/// `audit_delete_subject(principal_id, preserve_compliance)`: audit_log rows deleted
/// and compliance rows kept.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_delete_subject(
    principal_id: Option<&str>,
    preserve_compliance: default!(Option<bool>, "true"),
) -> TableIterator<'static, (name!(records_deleted, i64), name!(compliance_records_preserved, i64))> {
    let preserve = preserve_compliance.ok_or_else(|| AuditError::null_argument("preserve_compliance")).or_report();
    let subject = Subject::one(principal_id).or_report();
    let before = kept_compliance_rows(&subject, preserve).or_report();
    let out = delete_subject(&subject, preserve).or_report();
    let deleted = out.iter().find(|o| o.0 == "audit_log" && o.2 == "deleted").map(|o| o.3).unwrap_or(0);
    TableIterator::once((deleted, before))
}

/// The subject's own compliance events that erasure with `preserve` keeps.
fn kept_compliance_rows(subject: &Subject, preserve: bool) -> AuditResult<i64> {
    if !preserve {
        return Ok(0);
    }
    let actions: Vec<String> = COMPLIANCE_ACTIONS.iter().map(|s| s.to_string()).collect();
    Ok(Spi::get_one_with_args::<i64>(
        &q("SELECT pg_catalog.count(*) FROM @extschema@.audit_log WHERE principal_id = ANY($1) AND action = ANY($2)")?,
        &[names(subject)?.into(), actions.into()],
    )?
    .unwrap_or(0))
}

/// `audit_delete_subject(identifiers, preserve_compliance)`: every place, one row each.
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "audit_delete_subject")]
#[search_path(pg_catalog, pg_temp)]
fn audit_delete_subject_ids(
    identifiers: Option<Vec<Option<String>>>,
    preserve_compliance: default!(Option<bool>, "true"),
) -> TableIterator<
    'static,
    (name!(table_name, String), name!(column_name, String), name!(action, String), name!(rows, i64)),
> {
    let preserve = preserve_compliance.ok_or_else(|| AuditError::null_argument("preserve_compliance")).or_report();
    TableIterator::new(delete_subject(&subject_arg(identifiers), preserve).or_report())
}

/// `audit_forget_subject(principal_id)`: mappings deleted.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_forget_subject(principal_id: Option<&str>) -> i64 {
    forget_subject(&Subject::one(principal_id).or_report()).or_report().iter().map(|o| o.3).sum()
}

/// `audit_forget_subject(identifiers)`: one row.
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "audit_forget_subject")]
#[search_path(pg_catalog, pg_temp)]
fn audit_forget_subject_ids(identifiers: Option<Vec<Option<String>>>) -> TableIterator<
    'static,
    (name!(table_name, String), name!(column_name, String), name!(action, String), name!(rows, i64)),
> {
    TableIterator::new(forget_subject(&subject_arg(identifiers)).or_report())
}

/// `audit_export_subject(principal_id)`: see docs/subjects.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_export_subject(principal_id: Option<&str>) -> JsonbDatum {
    export_subject(&Subject::one(principal_id).or_report()).or_report()
}

/// `audit_export_subject(identifiers)`: see docs/subjects.md.
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "audit_export_subject")]
#[search_path(pg_catalog, pg_temp)]
fn audit_export_subject_ids(identifiers: Option<Vec<Option<String>>>) -> JsonbDatum {
    export_subject(&subject_arg(identifiers)).or_report()
}

/// `audit_subject_names(identifiers)`: the names audit_subject_rows searches for.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_subject_names(identifiers: Option<Vec<Option<String>>>) -> Vec<String> {
    names(&subject_arg(identifiers)).or_report()
}
