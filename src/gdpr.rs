//! GDPR pseudonymization inside the database: `audit_pseudonymize`,
//! `audit_depseudonymize`, the subject operations, classification retention and key
//! rotation. Crypto and formats live in `audit_db_core::{crypto, pseudonym}`; keys come
//! from `keys::key_ring()` and never pass through SQL.
//!
//! Mapping rows (`pseudonym_mapping`) hold the pseudonym, the strategy, the key id, a
//! keyed blind index of the original (one mapping per original and strategy, found
//! without decrypting) and `original_id` sealed with AES-256-GCM.

use crate::error::{AuditError, AuditResult, OrReport};
use crate::keys::{key_ring, personal_details_keys};
use audit_db_core::command::Command;
use audit_db_core::crypto::{CryptoError, KeyRing};
use audit_db_core::pseudonym::{self, Strategy};
use pgrx::prelude::*;

/// The actions whose rows `audit_delete_subject` keeps (pseudonymized) for compliance.
pub const COMPLIANCE_ACTIONS: &[&str] = &[
    "auth.login.success",
    "auth.login.failure",
    "data.access.unauthorized",
    "gdpr.data.export",
    "gdpr.data.pseudonymize",
    "gdpr.data.delete",
];

fn parse_strategy(text: Option<&str>) -> AuditResult<Strategy> {
    let text = text.ok_or_else(|| AuditError::null_argument("strategy"))?;
    Strategy::parse(text).ok_or_else(|| {
        AuditError::invalid_parameter(format!("unknown pseudonymization strategy \"{text}\""))
            .hint("Use 'hash' (one-way), 'token' (random, mapped) or 'encryption' (reversible with the key).")
    })
}

fn crypto_error(e: CryptoError) -> AuditError {
    let hint = match e {
        CryptoError::UnknownKey(_) => "Add the key line with that id back to the file named by audit_db.key_file.",
        _ => "The stored value was altered, or it was made under a different root key.",
    };
    AuditError::data_exception(format!("pseudonym cannot be decrypted: {e}")).hint(hint)
}

/// `Spi::get_one*` reports "no row" as `InvalidPosition`: that is `None` here.
fn at_most_one<T>(r: Result<Option<T>, pgrx::spi::Error>) -> AuditResult<Option<T>> {
    match r {
        Ok(v) => Ok(v),
        Err(pgrx::spi::Error::InvalidPosition) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn pseudonymize(original: &str, strategy: Strategy) -> AuditResult<String> {
    let mut one = pseudonymize_many(&[Some(original)], strategy)?;
    Ok(one.pop().flatten().expect("one pseudonym for one original"))
}

/// `pseudonymize` of every element (NULL stays NULL): token and encryption mappings
/// are found and written with one statement each for the whole batch.
pub fn pseudonymize_many(originals: &[Option<&str>], strategy: Strategy) -> AuditResult<Vec<Option<String>>> {
    if strategy == Strategy::Hash {
        return originals.iter().map(|o| o.map(crate::hash_pseudonym::hash_pseudonym).transpose()).collect();
    }
    crate::mapping::pseudonymize_many(&*key_ring()?, strategy, originals)
}

fn log_event(action: &str, target: Option<&str>, status: &str, description: &str) -> AuditResult<()> {
    if !crate::archive::records_events(action, description)? {
        return Ok(());
    }
    Spi::run_with_args(
        "INSERT INTO audit_log (\"timestamp\", principal_id, action, status, target_resource_type,
                                target_resource_id, outcome_description, data_classification, details)
         VALUES (pg_catalog.now(), session_user, $1, $2, 'pseudonym', pg_catalog.left($3, 255), $4, 'CONFIDENTIAL',
                 pg_catalog.jsonb_build_object('by', session_user::text, 'role', current_user::text,
                                               'pseudonym', $3))",
        &[action.into(), status.into(), target.into(), description.into()],
    )?;
    Ok(())
}

/// A mapping row adopted from the original application (strategy NULL) for `p`.
fn adopted_mapping(p: &str) -> AuditResult<Option<i32>> {
    at_most_one(Spi::get_one_with_args::<i32>(
        "SELECT id FROM pseudonym_mapping WHERE pseudonym_id = $1 AND strategy IS NULL ORDER BY id LIMIT 1",
        &[p.into()],
    ))
}

pub fn depseudonymize(p: &str) -> AuditResult<String> {
    if let Some(id) = adopted_mapping(p)? {
        return Err(AuditError::object_not_in_prerequisite_state(
            "this pseudonym was made by the original application, not by audit_db",
        )
        .detail(format!(
            "Its mapping row (pseudonym_mapping.id = {id}) was adopted as the application stored it: the original is sealed by that application's key service, which audit_db does not hold."
        ))
        .hint("Reverse it with the original application's key service; audit_export_subject, audit_pseudonymize_subject and audit_delete_subject accept the pseudonym itself as the subject."));
    }
    let strategy = pseudonym::classify(p).ok_or_else(|| {
        AuditError::no_data_found("unknown pseudonym")
            .hint("Pseudonyms look like pseudo-<32 hex> (token) or pseudo-enc-... (encryption).")
    })?;
    if strategy == Strategy::Hash {
        return Err(AuditError::invalid_parameter("hash pseudonyms are one-way and cannot be reversed")
            .hint("Use the 'token' or 'encryption' strategy for values that must be recoverable."));
    }
    let ring = key_ring()?;
    let sealed = at_most_one(Spi::get_one_with_args::<String>(
        "SELECT original_id FROM pseudonym_mapping WHERE pseudonym_id = $1 LIMIT 1",
        &[p.into()],
    ))?
    .ok_or_else(|| {
        AuditError::no_data_found("unknown pseudonym")
            .hint("It was never issued here, or its subject was forgotten (audit_forget_subject).")
    })?;
    let original = pseudonym::open_original(&ring, &sealed).map_err(crypto_error)?;
    if strategy == Strategy::Encryption {
        // The pseudonym itself must agree with its mapping when its key is still held.
        if ring.get(&pseudonym::pseudonym_key_id(p).map_err(crypto_error)?).is_some() {
            let direct = pseudonym::decrypt_pseudonym(&ring, p).map_err(crypto_error)?;
            if direct != original {
                return Err(AuditError::data_exception("pseudonym and its mapping disagree")
                    .hint("The mapping row was altered."));
            }
        }
    }
    log_event("gdpr.data.depseudonymize", Some(p), "success", "pseudonym reversed")?;
    Ok(original)
}

/// Every pseudonym a subject may appear under: the hash pseudonym under each key and
/// the mapped token / encryption pseudonyms.
fn subject_pseudonyms(ring: &KeyRing, principal: &str) -> AuditResult<Vec<String>> {
    let mut out: Vec<String> = ring.keys().iter().map(|k| pseudonym::hash_pseudonym(k, principal)).collect();
    let blinds = crate::mapping::blind_indexes(ring, principal);
    Spi::connect(|client| {
        for r in client.select(
            // Mappings made here (blind index), and adopted ones from the original
            // application's first versions, which stored the original in clear.
            "SELECT pseudonym_id FROM pseudonym_mapping WHERE blind_index = ANY($1)
             UNION SELECT pseudonym_id FROM pseudonym_mapping WHERE strategy IS NULL AND original_id = $2",
            None,
            &[blinds.into(), principal.into()],
        )? {
            if let Some(p) = r.get::<String>(1)? {
                out.push(p);
            }
        }
        Ok::<_, pgrx::spi::Error>(())
    })?;
    Ok(out)
}

/// The pseudonyms of the personal `details` values of a principal's rows, as a jsonb
/// object original -> pseudonym: all of them made with one batch (one statement for
/// the mappings of token and encryption pseudonyms), not one call per value and row.
fn details_pseudonyms(principal: &str, keys: &[String], strategy: Strategy) -> AuditResult<pgrx::JsonB> {
    let values: Vec<String> = Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            "SELECT DISTINCT e.value #>> '{}' FROM audit_log a, pg_catalog.jsonb_each(a.details) e
              WHERE a.principal_id = $1 AND a.details ?| $2
                AND e.key = ANY($2) AND pg_catalog.jsonb_typeof(e.value) = 'string'",
            None,
            &[principal.into(), keys.to_vec().into()],
        )? {
            out.extend(r.get::<String>(1)?);
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;
    let borrowed: Vec<Option<&str>> = values.iter().map(|v| Some(v.as_str())).collect();
    let pseudonyms = pseudonymize_many(&borrowed, strategy)?;
    let map: serde_json::Map<String, serde_json::Value> = values
        .into_iter()
        .zip(pseudonyms)
        .filter_map(|(v, p)| p.map(|p| (v, serde_json::Value::String(p))))
        .collect();
    Ok(pgrx::JsonB(serde_json::Value::Object(map)))
}

/// Replaces `principal` by its pseudonym in every audit_log row, together with the
/// configured personal `details` keys, and marks each row pseudonymized. One statement
/// on the parent: it locks every partition for its duration, so maintenance cannot
/// drop or fill a partition under it (a list of partitions read first would go stale).
/// The details values' pseudonyms are made beforehand in one batch; a value the batch
/// did not see (a row of the subject committed in between) is pseudonymized in the
/// statement itself, so none is left in clear.
pub fn pseudonymize_subject(principal: &str, strategy: Strategy) -> AuditResult<i64> {
    let p = pseudonymize(principal, strategy)?;
    let keys = personal_details_keys();
    // Lock order: the UPDATE's lock first, parent then every partition (what LOCK
    // TABLE on a partitioned table does, and the order maintenance locks in). Reading
    // the details first under ACCESS SHARE and upgrading to ROW EXCLUSIVE for the
    // UPDATE would deadlock with a maintenance run that holds the parent and waits
    // for one of the partitions (pg_test/load.sh found it).
    Spi::run("LOCK TABLE audit_log IN ROW EXCLUSIVE MODE")?;
    let map = details_pseudonyms(principal, &keys, strategy)?;
    let _internal = crate::internal::guard();
    let changed = Spi::get_one_with_args::<i64>(
        "WITH u AS (
           UPDATE audit_log a
              SET principal_id = $2,
                  details = CASE WHEN a.details ?| $3 THEN coalesce((
                      SELECT pg_catalog.jsonb_object_agg(e.key,
                               CASE WHEN e.key = ANY($3) AND pg_catalog.jsonb_typeof(e.value) = 'string'
                                    THEN coalesce($5 -> (e.value #>> '{}'),
                                                  pg_catalog.to_jsonb(audit_pseudonymize(e.value #>> '{}', $4)))
                                    ELSE e.value END)
                        FROM pg_catalog.jsonb_each(a.details) e), '{}'::jsonb)
                  ELSE coalesce(a.details, '{}'::jsonb) END
                        || pg_catalog.jsonb_build_object('pseudonymized', true, 'pseudonymizedAt', pg_catalog.now())
            WHERE a.principal_id = $1
           RETURNING 1)
         SELECT pg_catalog.count(*) FROM u",
        &[principal.into(), p.as_str().into(), keys.to_vec().into(), strategy.name().into(), map.into()],
    )?
    .unwrap_or(0);
    log_event("gdpr.data.pseudonymize", Some(&p), "success", &format!("{changed} audit_log rows pseudonymized"))?;
    crate::archive::emit(&Command::Pseudonymize { subject: principal.to_string(), strategy: strategy.name().to_string() })?;
    Ok(changed)
}

pub fn export_subject(principal: &str) -> AuditResult<pgrx::JsonB> {
    let ring = key_ring()?;
    let mut names = subject_pseudonyms(&ring, principal)?;
    names.push(principal.to_string());
    let rows = Spi::get_one_with_args::<pgrx::JsonB>(
        "SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(a) ORDER BY a.\"timestamp\", a.id), '[]'::jsonb)
           FROM audit_log a WHERE a.principal_id = ANY($1)",
        &[names.into()],
    )?
    .unwrap_or(pgrx::JsonB(serde_json::json!([])));
    let count = rows.0.as_array().map(|a| a.len()).unwrap_or(0);
    log_event(
        "gdpr.data.export",
        Some(&pseudonym::hash_pseudonym(ring.current(), principal)),
        "success",
        &format!("{count} audit_log rows exported"),
    )?;
    Ok(rows)
}

pub fn forget_subject(principal: &str) -> AuditResult<i64> {
    let ring = key_ring()?;
    let deleted = Spi::get_one_with_args::<i64>(
        "WITH d AS (DELETE FROM pseudonym_mapping WHERE blind_index = ANY($1) RETURNING 1)
         SELECT pg_catalog.count(*) FROM d",
        &[crate::mapping::blind_indexes(&ring, principal).into()],
    )?
    .unwrap_or(0);
    log_event(
        "gdpr.data.delete",
        Some(&pseudonym::hash_pseudonym(ring.current(), principal)),
        "success",
        &format!("{deleted} pseudonym mappings deleted (crypto-shredding)"),
    )?;
    crate::archive::emit(&Command::Forget { subject: principal.to_string() })?;
    Ok(deleted)
}

pub fn delete_subject(principal: &str, preserve: bool) -> AuditResult<(i64, i64)> {
    let ring = key_ring()?;
    let hashed = pseudonym::hash_pseudonym(ring.current(), principal);
    let actions: Vec<String> = COMPLIANCE_ACTIONS.iter().map(|s| s.to_string()).collect();
    let _internal = crate::internal::guard();
    // No insert may come between retiring the links and deleting the rows (an event of
    // this subject committed in between would be deleted with its link unretired):
    // writers wait for the erasure, readers do not.
    Spi::run("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")?;
    // The erased rows' chain links are retired first, so the chain still verifies.
    let quoted_actions: Vec<String> = actions.iter().map(|a| pgrx::spi::quote_literal(a)).collect();
    crate::integrity::retire(
        &format!(
            "SELECT coalesce(organization_id, '') AS chain_key, chain_seq, chain_hash FROM audit_log
              WHERE principal_id = {} AND (NOT {preserve} OR action <> ALL(ARRAY[{}]::text[]))",
            pgrx::spi::quote_literal(principal),
            quoted_actions.join(", ")
        ),
        "erasure (audit_delete_subject)",
    )?;
    let deleted = crate::seal::retiring("erasure (audit_delete_subject)", || {
        Ok(Spi::get_one_with_args::<i64>(
            "WITH d AS (DELETE FROM audit_log WHERE principal_id = $1 AND (NOT $2 OR action <> ALL($3)) RETURNING 1)
             SELECT pg_catalog.count(*) FROM d",
            &[principal.into(), preserve.into(), actions.clone().into()],
        )?
        .unwrap_or(0))
    })?;
    let preserved = if preserve {
        Spi::get_one_with_args::<i64>(
            "WITH u AS (UPDATE audit_log SET principal_id = $2,
                              details = coalesce(details, '{}'::jsonb)
                                        || pg_catalog.jsonb_build_object('pseudonymized', true,
                                                                         'pseudonymizedAt', pg_catalog.now())
                         WHERE principal_id = $1 RETURNING 1)
             SELECT pg_catalog.count(*) FROM u",
            &[principal.into(), hashed.as_str().into()],
        )?
        .unwrap_or(0)
    } else {
        0
    };
    log_event(
        "gdpr.data.delete",
        Some(&hashed),
        "success",
        &format!("{deleted} audit_log rows deleted, {preserved} compliance rows kept pseudonymized"),
    )?;
    crate::archive::emit(&Command::Delete { subject: principal.to_string(), preserve })?;
    Ok((deleted, preserved))
}

pub fn rotate_key(old_key_id: &str) -> AuditResult<i64> {
    let ring = key_ring()?;
    let current = ring.current();
    if ring.get(old_key_id).is_none() {
        return Err(AuditError::invalid_parameter(format!("the key file has no key \"{old_key_id}\""))
            .hint("Rotation needs the old key line (to decrypt) and a newer last line (the current key)."));
    }
    if old_key_id == current.id {
        return Err(AuditError::invalid_parameter(format!("\"{old_key_id}\" is the current key"))
            .hint("Append the new key as the last line of the key file first."));
    }
    let rows: Vec<(i32, String)> = Spi::connect_mut(|client| {
        let mut out = Vec::new();
        for r in client.update(
            "SELECT id, original_id FROM pseudonym_mapping WHERE key_id = $1 ORDER BY id FOR UPDATE",
            None,
            &[old_key_id.into()],
        )? {
            out.push((r.get::<i32>(1)?.unwrap_or(0), r.get::<String>(2)?.unwrap_or_default()));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;
    let mut done = 0i64;
    for (id, sealed) in rows {
        let original = zeroize::Zeroizing::new(pseudonym::open_original(&ring, &sealed).map_err(crypto_error)?);
        Spi::run_with_args(
            "UPDATE pseudonym_mapping SET original_id = $2, key_id = $3, blind_index = $4 WHERE id = $1",
            &[
                id.into(),
                pseudonym::seal_original(current, &original).into(),
                current.id.as_str().into(),
                pseudonym::blind_index(current, &original).into(),
            ],
        )?;
        done += 1;
    }
    Ok(done)
}

/// About 5,475 years: the largest number of days a retention cutoff may go back.
const MAX_RETENTION_DAYS: i32 = 2_000_000;

pub fn apply_retention_policies() -> AuditResult<Vec<(String, i64, i64)>> {
    let policies: Vec<(String, String, i32, Option<i32>, Option<i32>)> = Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            "SELECT policy_name::text, data_classification::text, retention_days, archive_after_days, delete_after_days
               FROM audit_retention_policy WHERE is_active = 'true' ORDER BY policy_name",
            None,
            &[],
        )? {
            out.push((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<i32>(3)?.unwrap_or(0),
                r.get::<i32>(4)?,
                r.get::<i32>(5)?,
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;
    // Every active policy is checked before any row is touched: a zero or negative
    // number of days would put the cutoff at or after now() and archive (and delete)
    // every row of its classification.
    for (name, _, retention_days, archive_after, delete_after) in &policies {
        for (column, days) in [
            ("retention_days", Some(*retention_days)),
            ("archive_after_days", *archive_after),
            ("delete_after_days", *delete_after),
        ] {
            if let Some(d) = days.filter(|d| *d <= 0) {
                return Err(AuditError::invalid_parameter(format!(
                    "retention policy \"{name}\": {column} must be positive, got {d}"
                ))
                .detail("No policy was applied: every active policy is checked first.")
                .hint("Fix or deactivate the policy (is_active = 'false') in audit_retention_policy."));
            }
        }
    }
    let mut out = Vec::new();
    let _internal = crate::internal::guard();
    for (name, class, retention_days, archive_after, delete_after) in policies {
        // Beyond MAX_RETENTION_DAYS the cutoff would leave timestamptz's range: such a
        // policy keeps everything, which is what the cap does.
        let archive_days = archive_after.unwrap_or(retention_days).min(MAX_RETENTION_DAYS);
        let delete_after = delete_after.map(|d| d.min(MAX_RETENTION_DAYS));
        let archived = Spi::get_one_with_args::<i64>(
            "WITH u AS (UPDATE audit_log SET archived_at = pg_catalog.now()
                         WHERE data_classification = $1 AND archived_at IS NULL
                           AND \"timestamp\" < pg_catalog.now() - pg_catalog.make_interval(days => $2)
                        RETURNING 1)
             SELECT pg_catalog.count(*) FROM u",
            &[class.as_str().into(), archive_days.into()],
        )?
        .unwrap_or(0);
        if let Some(days) = delete_after {
            crate::integrity::retire(
                &format!(
                    "SELECT coalesce(organization_id, '') AS chain_key, chain_seq, chain_hash FROM audit_log
                      WHERE data_classification = {} AND archived_at IS NOT NULL
                        AND \"timestamp\" < pg_catalog.now() - pg_catalog.make_interval(days => {days})",
                    pgrx::spi::quote_literal(&class)
                ),
                &format!("retention policy {name}"),
            )?;
        }
        let deleted = match delete_after {
            Some(days) => crate::seal::retiring(&format!("retention policy {name}"), || {
                Ok(Spi::get_one_with_args::<i64>(
                    "WITH d AS (DELETE FROM audit_log
                                 WHERE data_classification = $1 AND archived_at IS NOT NULL
                                   AND \"timestamp\" < pg_catalog.now() - pg_catalog.make_interval(days => $2)
                                RETURNING 1)
                     SELECT pg_catalog.count(*) FROM d",
                    &[class.as_str().into(), days.into()],
                )?
                .unwrap_or(0))
            })?,
            None => 0,
        };
        out.push((name, archived, deleted));
    }
    let total_archived: i64 = out.iter().map(|r| r.1).sum();
    let total_deleted: i64 = out.iter().map(|r| r.2).sum();
    let summary = format!("{} policies: {total_archived} rows archived, {total_deleted} deleted", out.len());
    if crate::archive::records_events("gdpr.retention.apply", &summary)? {
        Spi::run_with_args(
            "INSERT INTO audit_log (\"timestamp\", principal_id, action, status, outcome_description, data_classification)
             VALUES (pg_catalog.now(), session_user, 'gdpr.retention.apply', 'success', $1, 'INTERNAL')",
            &[summary.into()],
        )?;
    }
    Ok(out)
}

// ------------------------------------------------------------------ SQL surface

/// `audit_pseudonymize(original, strategy)`: see README.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_pseudonymize(original: Option<&str>, strategy: default!(Option<&str>, "'hash'")) -> Option<String> {
    let strategy = parse_strategy(strategy).or_report();
    original.map(|o| pseudonymize(o, strategy).or_report())
}

/// `audit_pseudonymize_batch(originals, strategy)`: see README.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_pseudonymize_batch(
    originals: Option<Vec<Option<String>>>,
    strategy: default!(Option<&str>, "'hash'"),
) -> Option<Vec<Option<String>>> {
    let strategy = parse_strategy(strategy).or_report();
    let originals = originals?;
    let borrowed: Vec<Option<&str>> = originals.iter().map(|o| o.as_deref()).collect();
    Some(pseudonymize_many(&borrowed, strategy).or_report())
}

/// `audit_depseudonymize(pseudonym)`: see README.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_depseudonymize(pseudonym: Option<&str>) -> Option<String> {
    pseudonym.map(|p| depseudonymize(p).or_report())
}

fn principal_arg(principal_id: Option<&str>) -> &str {
    let principal = principal_id.ok_or_else(|| AuditError::null_argument("principal_id")).or_report();
    // '' names no data subject: events without one would all be taken for one.
    if principal.trim().is_empty() {
        AuditError::invalid_parameter("principal_id must not be empty")
            .detail("An empty or blank principal_id names no data subject.")
            .hint("Pass the principal_id of the data subject, as stored in audit_log.principal_id.")
            .report();
    }
    principal
}

/// `audit_pseudonymize_subject(principal_id, strategy)`: see README.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_pseudonymize_subject(principal_id: Option<&str>, strategy: default!(Option<&str>, "'hash'")) -> i64 {
    let strategy = parse_strategy(strategy).or_report();
    pseudonymize_subject(principal_arg(principal_id), strategy).or_report()
}

/// `audit_export_subject(principal_id)`: see README.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_export_subject(principal_id: Option<&str>) -> pgrx::JsonB {
    export_subject(principal_arg(principal_id)).or_report()
}

/// `audit_forget_subject(principal_id)`: see README.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_forget_subject(principal_id: Option<&str>) -> i64 {
    forget_subject(principal_arg(principal_id)).or_report()
}

/// `audit_delete_subject(principal_id, preserve_compliance)`: see README.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_delete_subject(
    principal_id: Option<&str>,
    preserve_compliance: default!(Option<bool>, "true"),
) -> TableIterator<'static, (name!(records_deleted, i64), name!(compliance_records_preserved, i64))> {
    let preserve = preserve_compliance
        .ok_or_else(|| AuditError::null_argument("preserve_compliance"))
        .or_report();
    TableIterator::once(delete_subject(principal_arg(principal_id), preserve).or_report())
}

/// `audit_apply_retention_policies()`: see README.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_apply_retention_policies() -> TableIterator<
    'static,
    (name!(policy, String), name!(records_archived, i64), name!(records_deleted, i64)),
> {
    TableIterator::new(apply_retention_policies().or_report())
}

/// `audit_rotate_pseudonym_key(old_key_id)`: see README.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_rotate_pseudonym_key(old_key_id: Option<&str>) -> i64 {
    let old = old_key_id.ok_or_else(|| AuditError::null_argument("old_key_id")).or_report();
    rotate_key(old).or_report()
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn text(query: &str) -> Option<String> {
        Spi::get_one::<String>(query).expect("query runs")
    }

    #[pg_test]
    fn hash_pseudonym_is_the_known_answer_for_the_test_key() {
        // test-1 = 00 01 .. 1f (see pg_test::postgresql_conf_options); pinned so that a
        // change of derivation or format, which would orphan existing pseudonyms, fails.
        assert_eq!(
            text("SELECT audit_pseudonymize('alice')").as_deref(),
            Some("pseudo-35aa47d4c7a84b7a84f2ad0f3f22b8f9946671f6db9437ddb688c4a247133f4a")
        );
    }

    #[pg_test]
    fn token_and_encryption_round_trip() {
        for strategy in ["token", "encryption"] {
            assert_eq!(
                text(&format!("SELECT audit_depseudonymize(audit_pseudonymize('zoë@example.com', '{strategy}'))"))
                    .as_deref(),
                Some("zoë@example.com")
            );
        }
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM pseudonym_mapping WHERE original_id LIKE '%zoë@example.com%'")
                .expect("runs"),
            Some(0)
        );
    }

    #[pg_test(error = "hash pseudonyms are one-way and cannot be reversed")]
    fn hash_pseudonyms_cannot_be_reversed() {
        Spi::run("SELECT audit_depseudonymize(audit_pseudonymize('alice'))").expect("refused");
    }

    #[pg_test(error = "unknown pseudonymization strategy \"rot13\"")]
    fn unknown_strategy_is_refused() {
        Spi::run("SELECT audit_pseudonymize('alice', 'rot13')").expect("refused");
    }
}
