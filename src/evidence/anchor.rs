//! The anchor: block epoch 0 of `audit_seal_block`, what the 0.6.0 evidence begins
//! from. Written once, by the 0.5.0 -> 0.6.0 step or by an install that adopts the
//! original's tables (both inside `CREATE`/`ALTER EXTENSION audit_db`, the only place
//! `audit_seal_anchor()` works), over the heads of the per-organization chains written
//! before 0.6.0 and the horizon: the highest id and the number of the rows that exist
//! then without 0.6.0 evidence (`audit_db_core::seal::anchor_hash`). Signed like a block
//! when a key is configured, so that a superuser without the key can neither move the
//! horizon nor plant an anchor (issue 25); the first block's `prev_hash` is its hash.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::spi_util::q;
use audit_db_core::integrity::GENESIS;
use audit_db_core::seal::{anchor_hash, sign_block, Horizon, Limbs};
use pgrx::prelude::*;

/// `audit_seal_anchor()`: writes the anchor; 42501 outside the extension's own script.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn audit_seal_anchor() -> bool {
    write_anchor().or_report();
    true
}

fn write_anchor() -> AuditResult<()> {
    if !crate::journal::adopt::inside_our_create_extension() {
        return Err(AuditError::insufficient_privilege("audit_seal_anchor() runs only inside CREATE or ALTER EXTENSION audit_db")
            .detail("The anchor records what existed without audit_db evidence when the evidence began; it is written once, by the install or the upgrade.")
            .hint("There is nothing to call: the 0.5.0 -> 0.6.0 step and an adopting install write it."));
    }
    let heads = Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(&q("SELECT chain_key, seq, hash FROM @extschema@.audit_chain_head")?, None, &[])? {
            out.push((r.get::<String>(1)?.unwrap_or_default(), r.get::<i64>(2)?.unwrap_or(0), r.get::<String>(3)?.unwrap_or_default()));
        }
        Ok::<_, AuditError>(out)
    })?;
    let (max_id, rows) = Spi::connect(|client| {
        let t = client.select(
            &q("SELECT coalesce(pg_catalog.max(a.id), 0)::int8, pg_catalog.count(*)::int8
                  FROM @extschema@.audit_log a WHERE a.seal_epoch IS NULL")?,
            Some(1),
            &[],
        )?;
        let r = t.first();
        Ok::<_, AuditError>((r.get::<i64>(1)?.unwrap_or(0), r.get::<i64>(2)?.unwrap_or(0)))
    })?;
    let hash = anchor_hash(&heads, Horizon { max_id, rows });
    // A key configured but unreadable stops the upgrade (55000), as it stops inserts.
    let signature = crate::base::keys::signing_ring()?.map(|ring| sign_block(ring.current(), &hash));
    let heads_json = (!heads.is_empty())
        .then(|| pgrx::JsonB(serde_json::Value::Array(heads.iter().map(|(c, s, h)| serde_json::json!([c, s, h])).collect())));
    Spi::run_with_args(
        &q("INSERT INTO @extschema@.audit_seal_block
                   (epoch, rows, sum, prev_hash, block_hash, signature, legacy_heads, horizon_id, horizon_rows)
            VALUES (0, 0, $1, $2, $3, $4, $5, $6, $7)")?,
        &[
            Limbs::default().hex().into(),
            GENESIS.into(),
            hash.into(),
            signature.into(),
            heads_json.into(),
            max_id.into(),
            rows.into(),
        ],
    )?;
    Ok(())
}
