//! `audit_seal_row_check(audit_log) RETURNS int8[]`: the verification of one row as a
//! PARALLEL SAFE function, so that `audit_verify_integrity()` checks rows with one
//! aggregate query per chunk of epochs that PostgreSQL can run in parallel workers
//! (issue 13, goal 7), instead of fetching every row into the verifying backend.
//!
//! The answer is `{flags, l0, l1, l2, l3}`: the verdict bits of `seal::verdict_of`
//! and the row's element of its epoch's sum as four signed 64-bit limbs (SQL sums them
//! exactly; `Limbs::from_signed_sums` reduces the sums mod 2^64). The row is read
//! straight from the composite datum with the insert trigger's own reader and checked
//! with the trigger's own `check_row`.
//!
//! Rows pseudonymized after they were written carry token or encryption pseudonyms
//! where the hash saw originals; `resolve` maps them back (encryption: with the key;
//! token: through `pseudonym_mapping`; a forgotten subject's: to the reference kept in
//! `pseudonym_forgotten` for the row's key), read-only lookups that are safe in a
//! parallel worker, cached for the statement.

use crate::base::spi_util::q;
use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::keys::statement_stamp;
use crate::base::keys::signing_ring;
use crate::evidence::seal::verdict_of;
use audit_db_core::crypto::KeyRing;
use audit_db_core::pseudonym::{self, Strategy};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    /// (key id, pseudonym) -> what the hash saw, for the statement that filled it (key: statement stamp).
    static RESOLVED: RefCell<(i64, HashMap<(String, String), Option<String>>)> = RefCell::new((i64::MIN, HashMap::new()));
}

thread_local! {
    /// The signing ring of the statement that read it: a configured but unusable key
    /// is reported once per statement, not once per row.
    static RING: RefCell<(i64, Option<Rc<KeyRing>>)> = const { RefCell::new((i64::MIN, None)) };
}

fn statement_ring() -> Option<Rc<KeyRing>> {
    let stamp = statement_stamp();
    if let Some(ring) = RING.with(|r| {
        let r = r.borrow();
        (r.0 == stamp).then(|| r.1.clone())
    }) {
        return ring;
    }
    let ring = signing_ring().or_report();
    RING.with(|r| *r.borrow_mut() = (stamp, ring.clone()));
    ring
}

fn lookup_original(ring: &KeyRing, value: &str) -> AuditResult<Option<String>> {
    Ok(match pseudonym::classify(value) {
        Some(Strategy::Encryption) => pseudonym::decrypt_pseudonym(ring, value).ok(),
        Some(Strategy::Token) => token_original(ring, value)?,
        _ => None,
    })
}

/// The original behind a token, from its mapping, if the mapping is whole: the sealed
/// original opens under the ring and its blind index is the mapping's (the ciphertext
/// names no pseudonym, so one moved to another mapping row, or copied to a planted
/// one, would otherwise resolve a token to someone else's original; issue 25).
fn token_original(ring: &KeyRing, token: &str) -> AuditResult<Option<String>> {
    Spi::connect(|client| {
        let mut found = None;
        for r in client.select(
            &q("SELECT m.original_id, m.blind_index FROM @extschema@.pseudonym_mapping m
                 WHERE m.pseudonym_id OPERATOR(pg_catalog.=) $1 AND m.strategy OPERATOR(pg_catalog.=) 'token'")?,
            None,
            &[token.into()],
        )? {
            let (Some(sealed), Some(blind)) = (r.get::<String>(1)?, r.get::<String>(2)?) else { continue };
            let Ok(original) = pseudonym::open_original(ring, &sealed) else { continue };
            if ring.keys().iter().any(|k| pseudonym::blind_index(k, &original) == blind) {
                found = Some(original);
                break;
            }
        }
        Ok::<_, AuditError>(found)
    })
}

/// The reference kept for a forgotten token or encryption pseudonym under `key_id`
/// (audit_forget_subject writes it before the mapping goes), if that key signed it.
fn lookup_forgotten(ring: &KeyRing, value: &str, key_id: &str) -> AuditResult<Option<String>> {
    if !matches!(pseudonym::classify(value), Some(Strategy::Token) | Some(Strategy::Encryption)) {
        return Ok(None);
    }
    let Some(key) = ring.get(key_id) else { return Ok(None) };
    Spi::connect(|client| {
        let mut found = None;
        for r in client.select(
            &q("SELECT f.reference, f.signature FROM @extschema@.pseudonym_forgotten f
                 WHERE f.pseudonym_id OPERATOR(pg_catalog.=) $1 AND f.key_id OPERATOR(pg_catalog.=) $2")?,
            None,
            &[value.into(), key_id.into()],
        )? {
            let (Some(reference), Some(signature)) = (r.get::<String>(1)?, r.get::<String>(2)?) else { continue };
            if forgotten_signed(key, value, &reference, &signature) {
                found = Some(reference);
                break;
            }
        }
        Ok::<_, AuditError>(found)
    })
}

/// Whether a row of `pseudonym_forgotten` (pseudonym, reference, signature) was signed
/// with `key` (a planted or altered row was not).
pub fn forgotten_signed(key: &audit_db_core::crypto::RootKey, pseudonym: &str, reference: &str, signature: &str) -> bool {
    let message = audit_db_core::seal::forgotten_message(pseudonym, reference);
    signature
        .split_once(':')
        .is_some_and(|(id, mac)| id == key.id && audit_db_core::integrity::mac_matches(key, &message, mac))
}

/// What the hash saw where a row signed with `key_id` now holds the pseudonym `value`:
/// its original, or the reference kept after its subject was forgotten; None when it
/// cannot be found.
fn resolve(ring: Option<&KeyRing>, value: &str, key_id: Option<&str>) -> Option<String> {
    let ring = ring?;
    let stamp = statement_stamp();
    let cache_key = (key_id.unwrap_or("").to_string(), value.to_string());
    if let Some(hit) = RESOLVED.with(|c| {
        let c = c.borrow();
        (c.0 == stamp).then(|| c.1.get(&cache_key).cloned()).flatten()
    }) {
        return hit;
    }
    let found = match lookup_original(ring, value).or_report() {
        Some(original) => Some(original),
        None => key_id.and_then(|id| lookup_forgotten(ring, value, id).or_report()),
    };
    RESOLVED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != stamp {
            *c = (stamp, HashMap::new());
        }
        c.1.insert(cache_key, found.clone());
    });
    found
}

#[doc(hidden)]
#[no_mangle]
pub extern "C" fn pg_finfo_audit_seal_row_check_v1() -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
}

/// `audit_seal_row_check(row audit_log) RETURNS int8[]`, STRICT VOLATILE PARALLEL SAFE
/// (VOLATILE on purpose: see the comment in sql/finalize.sql).
/// Created by sql/finalize.sql and the 0.5.0 -> 0.6.0 step.
#[doc(hidden)]
#[no_mangle]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn audit_seal_row_check_v1(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: PostgreSQL passes one non-NULL composite datum (the function is STRICT);
    // detoasting gives a HeapTupleHeader valid for this call, whose row type is
    // registered (lookup_rowtype_tupdesc pins its descriptor until released below).
    let (flags, element) = unsafe {
        let raw = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<pg_sys::varlena>();
        let header = pg_sys::pg_detoast_datum(raw).cast::<pg_sys::HeapTupleHeaderData>();
        let typid = pgrx::heap_tuple_header_get_type_id(header);
        let tupdesc = pg_sys::lookup_rowtype_tupdesc(typid, pgrx::heap_tuple_header_get_typmod(header));
        let mut tuple = pg_sys::HeapTupleData {
            t_len: pgrx::heap_tuple_header_get_datum_length(header) as u32,
            t_self: pg_sys::ItemPointerData::default(),
            t_tableOid: pg_sys::InvalidOid,
            t_data: header,
        };
        let ring = statement_ring();
        let ring = ring.as_deref();
        let verdict = verdict_of(&mut tuple, tupdesc, pg_sys::get_typ_typrelid(typid), ring, &|v, key_id| resolve(ring, v, key_id));
        if (*tupdesc).tdrefcount >= 0 {
            pg_sys::DecrTupleDescRefCount(tupdesc);
        }
        verdict.or_report()
    };
    let [l0, l1, l2, l3] = element.as_signed();
    vec![flags, l0, l1, l2, l3].into_datum().expect("an int8 array")
}
