//! GDPR pseudonymization inside the database: `audit_pseudonymize`,
//! `audit_depseudonymize`, the subject operations, classification retention and key
//! rotation. Crypto and formats live in `audit_db_core::{crypto, pseudonym}`; keys come
//! from `keys::key_ring()` and never pass through SQL.
//!
//! Mapping rows (`pseudonym_mapping`) hold the pseudonym, the strategy, the key id, a
//! keyed blind index of the original (one mapping per original and strategy, found
//! without decrypting) and `original_id` sealed with AES-256-GCM.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::keys::key_ring;
use crate::base::spi_util::q;
use audit_db_core::crypto::CryptoError;
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

pub(crate) fn parse_strategy(text: Option<&str>) -> AuditResult<Strategy> {
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
/// are found and written with one statement each for the whole batch. A value that is
/// a pseudonym already is returned as it is, whatever the strategy: a reference (by its
/// whole shape) or a pseudonym the mapping table or the key knows
/// (`mapping::known_pseudonyms`, one statement for the batch), never by its first
/// letters (issue 26).
pub fn pseudonymize_many(originals: &[Option<&str>], strategy: Strategy) -> AuditResult<Vec<Option<String>>> {
    let ring = key_ring()?;
    let candidates: Vec<&str> = originals.iter().flatten().copied().filter(|o| !pseudonym::is_reference(o)).collect();
    let known = crate::privacy::mapping::known_pseudonyms(&ring, &candidates)?;
    if strategy == Strategy::Hash {
        return Ok(originals
            .iter()
            .map(|o| o.map(|o| if known.contains(o) { o.to_string() } else { crate::privacy::hash_pseudonym::hash_with(&ring, o) }))
            .collect());
    }
    crate::privacy::mapping::pseudonymize_many(&ring, strategy, originals, &known)
}

pub(crate) fn log_event(action: &str, target: Option<&str>, status: &str, description: &str) -> AuditResult<()> {
    if !crate::base::archive_role::records_events(action, description)? {
        return Ok(());
    }
    Spi::run_with_args(
        &q("INSERT INTO @extschema@.audit_log (\"timestamp\", principal_id, action, status, target_resource_type,
                                target_resource_id, outcome_description, data_classification, details)
         VALUES (pg_catalog.now(), session_user, $1, $2, 'pseudonym', pg_catalog.left($3, 255), $4, 'CONFIDENTIAL',
                 pg_catalog.jsonb_build_object('by', session_user::text, 'role', current_user::text,
                                               'pseudonym', $3))")?,
        &[action.into(), status.into(), target.into(), description.into()],
    )?;
    Ok(())
}

/// A mapping row adopted from the original application (strategy NULL) for `p`.
fn adopted_mapping(p: &str) -> AuditResult<Option<i32>> {
    at_most_one(Spi::get_one_with_args::<i32>(
        &q("SELECT id FROM @extschema@.pseudonym_mapping WHERE pseudonym_id = $1 AND strategy IS NULL ORDER BY id LIMIT 1")?,
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
        &q("SELECT original_id FROM @extschema@.pseudonym_mapping WHERE pseudonym_id = $1 LIMIT 1")?,
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
    let sql = q("SELECT id, original_id FROM @extschema@.pseudonym_mapping WHERE key_id = $1 ORDER BY id FOR UPDATE")?;
    let rows: Vec<(i32, String)> = Spi::connect_mut(|client| {
        let mut out = Vec::new();
        for r in client.update(
            &sql,
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
            &q("UPDATE @extschema@.pseudonym_mapping SET original_id = $2, key_id = $3, blind_index = $4 WHERE id = $1")?,
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
    let sql = q("SELECT policy_name::text, data_classification::text, retention_days, archive_after_days, delete_after_days
                   FROM @extschema@.audit_retention_policy WHERE is_active = 'true' ORDER BY policy_name")?;
    let policies: Vec<(String, String, i32, Option<i32>, Option<i32>)> = Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            &sql,
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
    let _internal = crate::base::internal::guard();
    for (name, class, retention_days, archive_after, delete_after) in policies {
        // Beyond MAX_RETENTION_DAYS the cutoff would leave timestamptz's range: such a
        // policy keeps everything, which is what the cap does.
        let archive_days = archive_after.unwrap_or(retention_days).min(MAX_RETENTION_DAYS);
        let delete_after = delete_after.map(|d| d.min(MAX_RETENTION_DAYS));
        let archived = Spi::get_one_with_args::<i64>(
            &q("WITH u AS (UPDATE @extschema@.audit_log SET archived_at = pg_catalog.now()
                         WHERE data_classification = $1 AND archived_at IS NULL
                           AND \"timestamp\" < pg_catalog.now() - pg_catalog.make_interval(days => $2)
                        RETURNING 1)
             SELECT pg_catalog.count(*) FROM u")?,
            &[class.as_str().into(), archive_days.into()],
        )?
        .unwrap_or(0);
        let deleted = match delete_after {
            Some(days) => crate::evidence::retirement::delete_rows(
                &crate::evidence::retirement::Leaving::Expired { class: &class, days },
                &format!("retention policy {name}"),
            )?,
            None => 0,
        };
        out.push((name, archived, deleted));
    }
    let total_archived: i64 = out.iter().map(|r| r.1).sum();
    let total_deleted: i64 = out.iter().map(|r| r.2).sum();
    let summary = format!("{} policies: {total_archived} rows archived, {total_deleted} deleted", out.len());
    if crate::base::archive_role::records_events("gdpr.retention.apply", &summary)? {
        Spi::run_with_args(
            &q("INSERT INTO @extschema@.audit_log (\"timestamp\", principal_id, action, status, outcome_description, data_classification)
             VALUES (pg_catalog.now(), session_user, 'gdpr.retention.apply', 'success', $1, 'INTERNAL')")?,
            &[summary.into()],
        )?;
    }
    Ok(out)
}

// ------------------------------------------------------------------ SQL surface

/// `audit_pseudonymize(original, strategy)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_pseudonymize(original: Option<&str>, strategy: default!(Option<&str>, "'hash'")) -> Option<String> {
    let strategy = parse_strategy(strategy).or_report();
    original.map(|o| pseudonymize(o, strategy).or_report())
}

/// `audit_pseudonymize_batch(originals, strategy)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_pseudonymize_batch(
    originals: Option<Vec<Option<String>>>,
    strategy: default!(Option<&str>, "'hash'"),
) -> Option<Vec<Option<String>>> {
    let strategy = parse_strategy(strategy).or_report();
    let originals = originals?;
    let borrowed: Vec<Option<&str>> = originals.iter().map(|o| o.as_deref()).collect();
    Some(pseudonymize_many(&borrowed, strategy).or_report())
}

/// `audit_depseudonymize(pseudonym)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_depseudonymize(pseudonym: Option<&str>) -> Option<String> {
    pseudonym.map(|p| depseudonymize(p).or_report())
}

/// `audit_apply_retention_policies()`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_apply_retention_policies() -> TableIterator<
    'static,
    (name!(policy, String), name!(records_archived, i64), name!(records_deleted, i64)),
> {
    TableIterator::new(apply_retention_policies().or_report())
}

/// `audit_rotate_pseudonym_key(old_key_id)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
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
