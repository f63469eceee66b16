//! Thin SQL types that pass PostgreSQL datums through without converting them.
//!
//! - `Regclass`: `regclass` as a plain OID argument. pgrx's `PgRelation` opens (and
//!   keeps open) the relation, which makes later DDL on it fail with "table is being
//!   used by active queries in this session". audit_db only needs the OID.
//! - `JsonbDatum`: a `jsonb` result handed back as PostgreSQL made it. pgrx's `JsonB`
//!   goes through serde (jsonb text, a serde value, text again, jsonb), which for a
//!   subject's export of 100,000 rows cost 2.6x the time of the query and 749 MB.

use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::{pg_sys, FromDatum, IntoDatum};

/// The SQL type of a wrapper, and its return through `into_datum`.
macro_rules! sql_type {
    ($t:ident, $sql:literal) => {
        // SAFETY: $sql is the type whose datums into_datum returns.
        unsafe impl SqlTranslatable for $t {
            const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!($t);
            const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
            const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal($sql));
            const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal($sql)));
        }

        // SAFETY: returns into_datum's datum, or NULL for None.
        unsafe impl pgrx::callconv::BoxRet for $t {
            unsafe fn box_into<'fcx>(self, fcinfo: &mut pgrx::callconv::FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
                match self.into_datum() {
                    // SAFETY: a datum of the declared return type, alive in the caller's context.
                    Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
                    None => fcinfo.return_null(),
                }
            }
        }
    };
}

/// A relation OID passed as SQL `regclass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regclass(pub pg_sys::Oid);

impl FromDatum for Regclass {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            None
        } else {
            pg_sys::Oid::from_datum(datum, false).map(Regclass)
        }
    }
}

impl IntoDatum for Regclass {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        self.0.into_datum()
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGCLASSOID
    }
}

sql_type!(Regclass, "regclass");

// SAFETY: a regclass argument is an OID datum; both functions read it with
// `FromDatum` above, the same way pgrx reads an `Oid` argument.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for Regclass {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the caller's promise (ArgAbi): `arg` is this function's argument of
        // this type; a NULL is refused instead of read.
        unsafe {
            arg.unbox_arg_using_from_datum()
                .unwrap_or_else(|| panic!("argument {index} must not be null"))
        }
    }

    unsafe fn unbox_nullable_arg(
        arg: pgrx::callconv::Arg<'_, 'fcx>,
    ) -> pgrx::nullable::Nullable<Self> {
        // SAFETY: as above; a NULL becomes `Nullable::Null`.
        unsafe { arg.unbox_arg_using_from_datum().into() }
    }
}

/// A `jsonb` value made by PostgreSQL, returned as it is.
pub struct JsonbDatum(pg_sys::Datum);

impl JsonbDatum {
    /// Copies the jsonb datum of an SPI result out of SPI's memory, into the context
    /// that was current when SPI was entered (the function's), so it outlives SPI.
    ///
    /// # Safety
    /// `datum` is a non-NULL jsonb datum of a result of the SPI connection that is
    /// still open.
    pub unsafe fn transfer_from_spi(datum: pg_sys::Datum) -> Self {
        // SAFETY: the caller's promise; jsonb is a varlena (by reference, length -1).
        JsonbDatum(unsafe { pg_sys::SPI_datumTransfer(datum, false, -1) })
    }
}

impl IntoDatum for JsonbDatum {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

sql_type!(JsonbDatum, "jsonb");
