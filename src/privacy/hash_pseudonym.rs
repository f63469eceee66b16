//! The `hash` strategy at hash-function speed (issue 17): `audit_pseudonymize_hash(text)`.
//!
//! It touches no table, so it needs neither SECURITY DEFINER nor a `SET search_path`
//! (whose save and restore PostgreSQL would pay on every call), and it is declared
//! STRICT STABLE PARALLEL SAFE: the planner may run it in parallel workers. STABLE, not
//! IMMUTABLE: the answer depends on the current key, which a reload can change.
//!
//! Per call it costs the HMAC and one palloc of the result. The keyed HMAC state is
//! prepared once per key (`RootKey::mac`); the key ring itself is read by the
//! postmaster when it loads the library (`preload_key_ring`), so backends and parallel
//! workers start with it and only check the file's identity once per statement
//! (base/keys.rs). The function is written against the V1 calling convention
//! directly: the argument is read in place (detoasted only when it is toasted) and the
//! pseudonym is written straight into the result varlena.

use crate::base::error::OrReport;
use crate::base::keys::key_ring;
use audit_db_core::crypto::Purpose;
use audit_db_core::pseudonym::{self, is_reference_bytes, write_hash_pseudonym, HASH_PSEUDONYM_LEN};
use pgrx::pg_sys;

/// The hash pseudonym of `original` under the ring's current key (a reference already,
/// `pseudonym::is_reference`, is returned unchanged). Reads no table: `audit_pseudonymize`
/// also leaves the pseudonyms its mapping table knows (`gdpr::pseudonymize_many`).
pub fn hash_with(ring: &audit_db_core::crypto::KeyRing, original: &str) -> String {
    if pseudonym::is_reference(original) {
        return original.to_string();
    }
    pseudonym::hash_pseudonym(ring.current(), original)
}

/// Loads the key ring and prepares the hash key's HMAC state in the postmaster (from
/// `_PG_init` under shared_preload_libraries), so every backend and parallel worker
/// forks with both. A missing or bad key is not an error here: the first call that
/// needs the key reports it, with its SQLSTATE and hint.
pub fn preload_key_ring() {
    if let Ok(ring) = key_ring() {
        ring.current().prepared_mac(Purpose::PseudonymHmac);
    }
}

#[doc(hidden)]
#[no_mangle]
pub extern "C" fn pg_finfo_audit_pseudonymize_hash_v1() -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
}

/// `audit_pseudonymize_hash(original text) RETURNS text`, STRICT (PostgreSQL never
/// passes NULL). Created by sql/finalize.sql and the 0.5.0 -> 0.6.0 step.
#[doc(hidden)]
#[no_mangle]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn audit_pseudonymize_hash_v1(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: PostgreSQL calls this V1 function with one non-NULL text argument (the
    // function is STRICT); pg_detoast_datum_packed returns the same pointer for a
    // plain or short-header varlena and a palloc'd copy for a toasted one, valid for
    // the rest of this call.
    let (ptr, len) = unsafe {
        let raw = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<pg_sys::varlena>();
        let text = pg_sys::pg_detoast_datum_packed(raw);
        (pgrx::varlena::vardata_any(text).cast::<u8>(), pgrx::varlena::varsize_any_exhdr(text))
    };
    // SAFETY: ptr/len describe the argument's bytes, alive until the call returns.
    let original = unsafe { std::slice::from_raw_parts(ptr, len) };
    if is_reference_bytes(original) {
        // SAFETY: the argument datum is a valid text datum of this call.
        return unsafe { pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0) };
    }
    let total = pg_sys::VARHDRSZ + HASH_PSEUDONYM_LEN;
    // SAFETY: palloc returns total writable bytes in the current (per-call or
    // per-tuple) memory context, or raises an ERROR.
    let result = unsafe { pg_sys::palloc(total) }.cast::<pg_sys::varlena>();
    // SAFETY: the HASH_PSEUDONYM_LEN bytes after the 4-byte header belong to the
    // allocation above; set_varsize_4b writes the header.
    unsafe {
        let body = &mut *(pgrx::varlena::vardata_4b(result).cast_mut().cast::<[u8; HASH_PSEUDONYM_LEN]>());
        write_hash_pseudonym(key_ring().or_report().current(), original, body);
        pgrx::varlena::set_varsize_4b(result, total as i32);
    }
    pg_sys::Datum::from(result)
}
