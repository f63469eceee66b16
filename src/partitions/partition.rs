//! Partition DDL: creating the current and upcoming periods of a range-partitioned
//! audit table. Planning (bounds, names) lives in `audit_db_core::partition`; this
//! module only reads the catalog and issues DDL through SPI.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::regclass::Regclass;
use crate::base::spi_util::{ext_schema, qualified};
use audit_db_core::calendar::Date;
use audit_db_core::partition::{plan, PartitionInterval, Period, PlanError};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// The default number of periods created ahead of the current one.
pub const DEFAULT_PREMAKE: i32 = 6;

/// A validated range-partitioned parent keyed on one timestamptz column.
#[derive(Debug, Clone)]
pub struct Parent {
    pub oid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    pub key_column: String,
    pub default_partition: Option<String>,
    /// Role owning the parent; new partitions get the same owner.
    pub owner: String,
    pub owner_oid: pg_sys::Oid,
    /// A table of the extension (audit_log, error_log): its code is audit_db's.
    pub member: bool,
    /// The parent's columns, quoted, in order, comma-separated.
    columns: String,
}

impl Parent {
    pub fn qualified(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    /// `"id", "timestamp", ...`: every live column, for explicit INSERT lists.
    pub fn column_list(&self) -> &str {
        &self.columns
    }

    /// Reads and checks the parent: partitioned BY RANGE on one timestamptz column.
    pub fn load(rel: Regclass) -> AuditResult<Parent> {
        let row = Spi::connect(|client| {
            let table = client.select(
                "SELECT c.relkind::text, n.nspname::text, c.relname::text,
                        pt.partstrat::text, pt.partnatts::int4,
                        a.atttypid = 'pg_catalog.timestamptz'::regtype, a.attname::text,
                        (SELECT d.relname::text FROM pg_catalog.pg_class d
                          WHERE d.oid = pt.partdefid),
                        pg_catalog.pg_get_userbyid(c.relowner)::text,
                        (SELECT string_agg(pg_catalog.quote_ident(x.attname), ', ' ORDER BY x.attnum)
                           FROM pg_catalog.pg_attribute x
                          WHERE x.attrelid = c.oid AND x.attnum > 0 AND NOT x.attisdropped),
                        c.relowner,
                        EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                                   AND d.deptype = 'e' AND e.extname = 'audit_db')
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = c.oid
              LEFT JOIN pg_catalog.pg_attribute a
                     ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
                  WHERE c.oid = $1",
                Some(1),
                &[rel.0.into()],
            )?;
            let mut out = None;
            for r in table {
                out = Some((
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<String>(4)?,
                    r.get::<i32>(5)?,
                    r.get::<bool>(6)?,
                    r.get::<String>(7)?,
                    r.get::<String>(8)?,
                    r.get::<String>(9)?,
                    r.get::<String>(10)?,
                    r.get::<pg_sys::Oid>(11)?,
                    r.get::<bool>(12)?,
                ));
            }
            Ok::<_, pgrx::spi::Error>(out)
        })?;
        let Some((kind, schema, name, strat, natts, is_tstz, key, default_partition, owner, columns, owner_oid, member)) =
            row
        else {
            return Err(AuditError::invalid_parameter(format!(
                "relation with OID {} does not exist",
                rel.0.to_u32()
            ))
            .hint("Pass an existing partitioned table, for example 'audit_log'."));
        };
        let schema = schema.unwrap_or_default();
        let name = name.unwrap_or_default();
        if kind.as_deref() != Some("p") {
            return Err(AuditError::wrong_object_type(format!(
                "\"{name}\" is not a partitioned table"
            ))
            .detail("audit_db manages tables declared PARTITION BY RANGE on a timestamptz column.")
            .hint("Pass 'audit_log', 'error_log' or another table declared PARTITION BY RANGE (\"timestamp\")."));
        }
        if strat.as_deref() != Some("r") || natts != Some(1) || is_tstz != Some(true) {
            return Err(AuditError::wrong_object_type(format!(
                "\"{name}\" is not partitioned by range on a single timestamptz column"
            ))
            .hint("audit_db manages tables declared PARTITION BY RANGE (\"timestamp\")."));
        }
        Ok(Parent {
            oid: rel.0,
            schema,
            name,
            key_column: key.unwrap_or_default(),
            default_partition,
            owner: owner.unwrap_or_default(),
            owner_oid: owner_oid.unwrap_or(pg_sys::InvalidOid),
            member: member.unwrap_or(false),
            columns: columns.unwrap_or_default(),
        })
    }

    /// For a table that is not the extension's: runs as its owner, in a restricted
    /// context, until the guard is dropped. Moving its rows fires its triggers and
    /// evaluates its defaults, constraints and index expressions, which are its
    /// owner's code and must not run with the extension owner's rights (issue 25: an
    /// admin became superuser through a table it owns), as VACUUM and ANALYZE do.
    pub fn as_owner(&self) -> Option<crate::base::owner::UserSwitch> {
        (!self.member).then(|| crate::base::owner::UserSwitch::to(self.owner_oid))
    }
}

/// The maintenance functions run as SECURITY DEFINER so that `audit_db_admin` can keep
/// the extension's tables without owning them. They therefore check the real caller
/// (the outer user, not the definer): it must own the parent, or the parent must be one
/// of the extension's own tables.
pub fn authorize_maintenance(parent: &Parent) -> AuditResult<()> {
    // SAFETY: reads backend state (the user that called this SECURITY DEFINER function).
    let caller = unsafe { pg_sys::GetOuterUserId() };
    // (`Parent::load` read the owner and whether the table is the extension's.)
    let allowed = parent.member
        || crate::base::spi_util::read_one::<bool>(
            "SELECT pg_catalog.pg_has_role($1, $2, 'USAGE')",
            &[caller.into(), parent.owner_oid.into()],
        )?
        .unwrap_or(false);
    if allowed {
        Ok(())
    } else {
        Err(AuditError::insufficient_privilege(format!(
            "must be owner of table \"{}\" to manage its partitions",
            parent.name
        ))
        .hint("Members of audit_db_admin may manage the extension's own tables; other tables need their owner."))
    }
}

/// An existing partition with its bounds (NULL bounds = DEFAULT or MINVALUE/MAXVALUE).
#[derive(Debug, Clone)]
pub struct ExistingPartition {
    pub name: String,
    pub from: Option<TimestampWithTimeZone>,
    pub to: Option<TimestampWithTimeZone>,
    pub is_default: bool,
}

/// The partitions of `parent`, through the extension's `audit_partitions()`.
pub fn existing_partitions(parent: &Parent) -> AuditResult<Vec<ExistingPartition>> {
    let query = format!(
        "SELECT c.relname::text, p.range_from, p.range_to, p.is_default
           FROM {}.audit_partitions($1) p
           JOIN pg_catalog.pg_class c ON c.oid = p.partition",
        ext_schema()?
    );
    Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(&query, None, &[Regclass(parent.oid).into()])? {
            out.push(ExistingPartition {
                name: r.get::<String>(1)?.unwrap_or_default(),
                from: r.get(2)?,
                to: r.get(3)?,
                is_default: r.get::<bool>(4)?.unwrap_or(false),
            });
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .map_err(AuditError::from)
}

fn plan_error(e: PlanError) -> AuditError {
    match e {
        PlanError::UnknownInterval(_) => AuditError::invalid_parameter(e.to_string())
            .hint("Use one of 'daily', 'weekly', 'monthly'."),
        PlanError::PremakeOutOfRange(_) => AuditError::invalid_parameter(e.to_string())
            .hint("premake counts the periods created ahead of the current one, for example 6."),
        PlanError::NameTooLong(_) => AuditError::name_too_long(e.to_string())
            .hint("Rename the parent table to a shorter name; partition names add a date suffix."),
        PlanError::YearOutOfRange(_) => AuditError::datetime_out_of_range(e.to_string())
            .hint("Partitions can be planned for years 1 to 9999 only."),
    }
}

/// The UTC calendar date of `at` (NULL = now()).
pub fn utc_date(at: Option<TimestampWithTimeZone>) -> AuditResult<Date> {
    let days = crate::base::spi_util::read_one::<i32>(
        "SELECT CASE WHEN pg_catalog.isfinite(t)
                     THEN ((t AT TIME ZONE 'UTC')::date - DATE '1970-01-01') END
           FROM (SELECT coalesce($1, pg_catalog.now()) AS t) s",
        &[at.into()],
    )?;
    match days {
        Some(d) => Ok(Date::from_days(i64::from(d))),
        None => Err(
            AuditError::datetime_out_of_range("reference time must be finite")
                .hint("Pass a finite timestamptz, or leave it out to use now()."),
        ),
    }
}

/// A retention path's reference time: at most the current time (issue 25). A future
/// one would make current data look expired, so an admin could drop this month's
/// events through retention; 22023 instead.
pub fn retention_reference(at: Option<TimestampWithTimeZone>) -> AuditResult<()> {
    let Some(at) = at else { return Ok(()) };
    // SAFETY: reads the clock; no state.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let at = i64::from(pg_sys::TimestampTz::from(at));
    // (+infinity is refused as infinite, 22008, by the caller's own check.)
    if at > now && at != i64::MAX {
        return Err(AuditError::invalid_parameter("reference_time is in the future")
            .detail("Retention measures age from the reference time; a future one would drop data that has not expired.")
            .hint("Leave reference_time out (now()) or pass a time that has passed."));
    }
    Ok(())
}

/// What the server's shared lock table (max_locks_per_transaction x MaxBackends
/// entries, shared by every session) allows for `parent` (issue 25: daily partitions
/// with premake 1000 made every maintenance run fail with 53200, writers' inserts with
/// it, and any query over the whole table needs a lock on every partition and index).
pub struct PartitionBudget {
    /// Partitions one run may create: an eighth of the table, at the locks a new
    /// partition holds until commit (the table, its TOAST table and index, and one per
    /// index of the parent). The rest come in the next runs.
    pub per_run: usize,
    /// Partitions the parent may have in all: a query without pruning (sealing,
    /// verification, an export) locks each partition and its indexes, and a quarter of
    /// the table is its share.
    pub total: usize,
}

pub fn partition_budget(parent: &Parent) -> AuditResult<PartitionBudget> {
    let indexes = crate::base::spi_util::read_one::<i64>(
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_index WHERE indrelid = $1",
        &[parent.oid.into()],
    )?
    .unwrap_or(0);
    // SAFETY: reads two settings fixed at server start.
    let entries = unsafe { i64::from(pg_sys::max_locks_per_xact) * i64::from(pg_sys::MaxBackends) };
    let share = |fraction: i64, per: i64| usize::try_from(entries / fraction / per).unwrap_or(1).max(1);
    Ok(PartitionBudget { per_run: share(8, 3 + indexes), total: share(4, 1 + indexes) })
}

/// Creates `period` as a partition of `parent` without an ACCESS EXCLUSIVE lock on the
/// parent: `prepare_partition`, then `attach_partitions`. Returns the number of rows
/// moved out of DEFAULT.
pub fn create_partition(parent: &Parent, period: &Period) -> AuditResult<i64> {
    prepare_partition(parent, period)?;
    Ok(attach_partitions(parent, std::slice::from_ref(period))?[0])
}

fn bound_check(parent: &Parent, period: &Period) -> String {
    let key = quote_identifier(&parent.key_column);
    let (from, to) = (period.from_literal(), period.to_literal());
    format!("{key} >= '{from}'::timestamptz AND {key} < '{to}'::timestamptz")
}

/// The part of creating a partition that takes time and holds no writer off: the
/// table built standalone, LIKE the parent with copies of its indexes (so ATTACH builds
/// none), and a CHECK constraint equal to its bounds (so ATTACH skips the validation
/// scan).
///
/// A table that is not the extension's gets no copies of its indexes here: building an
/// index runs its expressions' IMMUTABLE functions (folded as constants), which are its
/// owner's code and must not run as the extension's owner (issue 25). The table is
/// handed to the parent's owner at once, and ATTACH, run as that owner, builds them.
/// (Creating the table as that owner would need CREATE on the schema, which a table's
/// owner often lacks.)
pub fn prepare_partition(parent: &Parent, period: &Period) -> AuditResult<()> {
    let part = qualified(&parent.schema, &period.name);
    let indexes = if parent.member { "INCLUDING INDEXES" } else { "" };
    Spi::run(&format!(
        "CREATE TABLE {part} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS {indexes}
                              INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING GENERATED)",
        parent.qualified()
    ))?;
    Spi::run(&format!("ALTER TABLE {part} OWNER TO {}", quote_identifier(&parent.owner)))?;
    let key = quote_identifier(&parent.key_column);
    let _owner = parent.as_owner();
    Spi::run(&format!(
        "ALTER TABLE {part} ADD CONSTRAINT audit_db_bound CHECK ({key} IS NOT NULL AND {})",
        bound_check(parent, period)
    ))?;
    Ok(())
}

/// Attaches the prepared tables of `periods` (`prepare_partition`), moving rows of
/// their ranges out of the DEFAULT partition first. ATTACH takes SHARE UPDATE
/// EXCLUSIVE on the parent, which blocks no writer and no reader. Returns the rows
/// moved per period.
pub fn attach_partitions(parent: &Parent, periods: &[Period]) -> AuditResult<Vec<i64>> {
    // With a DEFAULT partition, rows of the new ranges may sit in it or arrive in it
    // while we work. Writers are held off from here to the commit (SHARE ROW EXCLUSIVE
    // on the parent alone, ONLY: readers are not blocked, and a session holding one of
    // the other partitions does not hold us up), then DEFAULT is locked, in the order
    // PostgreSQL's own DDL and every INSERT take them (parent, then partition), so no
    // writer deadlocks with us, none slips a row into DEFAULT between the move and the
    // ATTACH, and none routes a row with a partition map from before the ATTACH (which
    // PostgreSQL would refuse with an error). Only moves and ATTACHes follow:
    // milliseconds, the tables are built.
    if let Some(default_name) = &parent.default_partition {
        Spi::run(&format!("LOCK TABLE ONLY {} IN SHARE ROW EXCLUSIVE MODE", parent.qualified()))?;
        Spi::run(&format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            qualified(&parent.schema, default_name)
        ))?;
    }
    let mut moved_per_period = Vec::with_capacity(periods.len());
    for period in periods {
        let part = qualified(&parent.schema, &period.name);
        let range = bound_check(parent, period);
        let mut moved = 0i64;
        // The move and the ATTACH run the table's code (triggers, defaults, index
        // expressions, foreign keys): as its owner, who owns the new table by now.
        let owner = parent.as_owner();
        if let Some(default_name) = &parent.default_partition {
            let default_rel = qualified(&parent.schema, default_name);
            let cols = parent.column_list();
            // An internal write: the append-only trigger lets audit_db move its own rows.
            moved = crate::base::internal::internal(|| Spi::connect_mut(|client| {
                client
                    .update(
                        &format!(
                            "WITH m AS (DELETE FROM ONLY {default_rel} WHERE {range} RETURNING {cols})
                             INSERT INTO {part} ({cols}) SELECT {cols} FROM m"
                        ),
                        None,
                        &[],
                    )
                    .map(|t| t.len() as i64)
            }))?;
        }
        Spi::run(&format!(
            "ALTER TABLE {} ATTACH PARTITION {part} FOR VALUES FROM ('{}') TO ('{}')",
            parent.qualified(),
            period.from_literal(),
            period.to_literal()
        ))?;
        Spi::run(&format!("ALTER TABLE {part} DROP CONSTRAINT audit_db_bound"))?;
        drop(owner);
        release_from_extension(parent, &period.name)?;
        moved_per_period.push(moved);
    }
    Ok(moved_per_period)
}

/// The periods (of `interval`) of the rows in `parent`'s DEFAULT partition that no
/// partition covers yet: creating them moves those rows out. Rows dated +-infinity
/// fit no period and are counted in the second value.
pub fn default_row_periods(parent: &Parent, interval: PartitionInterval) -> AuditResult<(Vec<TimestampWithTimeZone>, i64)> {
    let Some(default_name) = &parent.default_partition else { return Ok((Vec::new(), 0)) };
    let key = quote_identifier(&parent.key_column);
    let unit = match interval {
        PartitionInterval::Daily => "day",
        PartitionInterval::Weekly => "week",
        PartitionInterval::Monthly => "month",
    };
    let query = format!(
        "SELECT pg_catalog.date_trunc($1, {key} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', pg_catalog.count(*)
           FROM ONLY {} GROUP BY 1 ORDER BY 1",
        qualified(&parent.schema, default_name)
    );
    // (A query on the parent owner's table plans with its code: as that owner.)
    let _owner = parent.as_owner();
    Spi::connect(|client| {
        let (mut periods, mut unplaceable) = (Vec::new(), 0);
        for r in client.select(&query, None, &[unit.into()])? {
            let n = r.get::<i64>(2)?.unwrap_or(0);
            match r.get::<TimestampWithTimeZone>(1)? {
                Some(ts) if ts.is_finite() => periods.push(ts),
                _ => unplaceable += n,
            }
        }
        Ok::<_, pgrx::spi::Error>((periods, unplaceable))
    })
    .map_err(AuditError::from)
}

/// Removes `parent`'s DEFAULT partition, which must be empty (its rows were moved into
/// their partitions first). ACCESS EXCLUSIVE on the parent alone (ONLY), then on the
/// DEFAULT partition: the order of PostgreSQL's own DROP and of every INSERT through
/// the parent, so no writer deadlocks with us. Runs inside `with_lock_retries`.
pub fn drop_default_partition(parent: &Parent) -> AuditResult<Option<String>> {
    let Some(default_name) = &parent.default_partition else { return Ok(None) };
    Spi::run(&format!("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE", parent.qualified()))?;
    let default_rel = qualified(&parent.schema, default_name);
    Spi::run(&format!("LOCK TABLE {default_rel} IN ACCESS EXCLUSIVE MODE"))?;
    // (Planning a query on the parent owner's table runs its code: as that owner.)
    let rows = {
        let _owner = parent.as_owner();
        Spi::get_one::<i64>(&format!("SELECT pg_catalog.count(*) FROM ONLY {default_rel}"))?.unwrap_or(0)
    };
    if rows > 0 {
        return Err(AuditError::object_not_in_prerequisite_state(format!(
            "the DEFAULT partition \"{default_name}\" still holds {rows} rows"
        ))
        .detail("Rows dated infinity or -infinity, or of a range whose partition could not be created, stay there.")
        .hint("Move or delete those rows, or set default_partition to true in audit_partition_config."));
    }
    // audit_log_default and error_log_default come with the install script, as members
    // of the extension: released first (audit_verify_schema then no longer expects them).
    let member = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_depend
                         WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                           AND objid = pg_catalog.to_regclass($1) AND deptype = 'e')",
        &[default_rel.as_str().into()],
    )?
    .unwrap_or(false);
    if member {
        let _internal = crate::base::internal::guard();
        Spi::run(&format!("ALTER EXTENSION audit_db DROP TABLE {default_rel}"))?;
    }
    drop_tables(&[(parent.schema.clone(), default_name.clone())], parent.member)?;
    Ok(Some(default_name.clone()))
}

/// Gives `parent` a DEFAULT partition named `<parent>_default` (ACCESS EXCLUSIVE on the
/// parent while it is attached). Runs inside `with_lock_retries`.
pub fn create_default_partition(parent: &Parent) -> AuditResult<String> {
    let mut name = audit_db_core::partition::with_suffix(&parent.name, "_default");
    // (Taken by a table that is not a partition: the next free name, see missing_periods.)
    if relation_exists(&parent.schema, &name)? {
        name = free_name(&parent.schema, &name)?;
    }
    let part = qualified(&parent.schema, &name);
    if parent.member {
        Spi::run(&format!("CREATE TABLE {part} PARTITION OF {} DEFAULT", parent.qualified()))?;
        Spi::run(&format!("ALTER TABLE {part} OWNER TO {}", quote_identifier(&parent.owner)))?;
    } else {
        // As in `prepare_partition`: no index is built as the extension's owner; the
        // parent's owner attaches the table, which builds its indexes.
        Spi::run(&format!(
            "CREATE TABLE {part} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                                  INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING GENERATED)",
            parent.qualified()
        ))?;
        Spi::run(&format!("ALTER TABLE {part} OWNER TO {}", quote_identifier(&parent.owner)))?;
        let _owner = parent.as_owner();
        Spi::run(&format!("ALTER TABLE {} ATTACH PARTITION {part} DEFAULT", parent.qualified()))?;
    }
    release_from_extension(parent, &name)?;
    Ok(name)
}

/// During CREATE EXTENSION, tables created by SPI become extension members. Partitions
/// must not: their number and names depend on the day of install, and pg_dump must dump
/// them (with their rows) like any table.
fn release_from_extension(parent: &Parent, name: &str) -> AuditResult<()> {
    // SAFETY: reads a backend global, set while an extension script runs.
    if unsafe { pg_sys::creating_extension } {
        Spi::run(&format!(
            "ALTER EXTENSION audit_db DROP TABLE {}",
            qualified(&parent.schema, name)
        ))?;
    }
    Ok(())
}

/// The periods of the plan that have no partition yet, after validating the parent,
/// checking the caller, and serialising with other creators of the same parent.
pub fn missing_periods(
    parent: &Parent,
    interval: PartitionInterval,
    premake: i32,
    at: Option<TimestampWithTimeZone>,
) -> AuditResult<Vec<Period>> {
    let today = utc_date(at)?;
    let periods = plan(&parent.name, interval, today, i64::from(premake)).map_err(plan_error)?;
    // One creator per parent at a time: a concurrent run waits, then sees our partitions.
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('audit_db.partitions'), $1::int4)",
        &[(parent.oid.to_u32() as i32).into()],
    )?;
    let existing = existing_partitions(parent)?;
    let mut missing = Vec::new();
    for mut period in periods {
        if existing.iter().any(|p| p.name == period.name) {
            continue;
        }
        if overlaps_existing(&existing, &period)? {
            pgrx::notice!(
                "audit_db: skipping \"{}\": its range overlaps an existing partition of \"{}\"",
                period.name,
                parent.name
            );
            continue;
        }
        // A table of that name that is not a partition (anyone with CREATE on the schema
        // can make one) must not stop the parent's partitions for good (issue 25): the
        // partition takes the next free name.
        if relation_exists(&parent.schema, &period.name)? {
            let taken = std::mem::take(&mut period.name);
            period.name = free_name(&parent.schema, &taken)?;
            pgrx::notice!(
                "audit_db: \"{taken}\" is taken by a relation that is not a partition of \"{}\": the partition is \"{}\"",
                parent.name,
                period.name
            );
        }
        missing.push(period);
    }
    Ok(missing)
}

/// `name` with the first suffix `_1` ... `_99` that no relation of `schema` has,
/// trimmed to PostgreSQL's 63 bytes.
fn free_name(schema: &str, name: &str) -> AuditResult<String> {
    for k in 1..100 {
        let candidate = audit_db_core::partition::with_suffix(name, &format!("_{k}"));
        if !relation_exists(schema, &candidate)? {
            return Ok(candidate);
        }
    }
    Err(AuditError::duplicate_table(format!("relation \"{name}\" and 99 names after it are taken"))
        .hint("Rename or drop those tables."))
}

/// Creates the missing partitions of the period containing `at` and `premake` periods
/// after it (NULL premake = the parent's config row, else 6). Returns the names created.
pub fn create_partitions(
    rel: Regclass,
    premake: Option<i32>,
    at: Option<TimestampWithTimeZone>,
) -> AuditResult<Vec<String>> {
    let parent = Parent::load(rel)?;
    authorize_maintenance(&parent)?;
    let config = PartitionConfig::load(parent.oid)?;
    let premake = premake.unwrap_or(config.premake);
    let mut created = Vec::new();
    for period in missing_periods(&parent, config.interval, premake, at)? {
        let moved = create_partition(&parent, &period)?;
        if moved > 0 {
            pgrx::notice!(
                "audit_db: moved {moved} rows from the DEFAULT partition into \"{}\"",
                period.name
            );
        }
        created.push(period.name);
    }
    Ok(created)
}

/// A partition whose whole range ended before the retention cutoff.
#[derive(Debug, Clone)]
pub struct Expired {
    /// The partition's own schema (a partition may live outside its parent's).
    pub schema: String,
    pub name: String,
    /// Expired for more than `OVERDUE` already: maintenance should have dropped it.
    pub overdue: bool,
}

/// How long past its retention an expired partition may stay before maintenance
/// reports it as overdue (WARNING, and an `overdue` row instead of `skipped`).
pub const OVERDUE: &str = "1 day";

/// The partitions of `parent` whose entire range ends at or before `at - retention`
/// (their rows are all strictly older than the cutoff). Never DEFAULT, never a
/// partition with an open (MAXVALUE) upper bound.
pub fn expired_partitions(
    parent: &Parent,
    retention: Interval,
    at: Option<TimestampWithTimeZone>,
) -> AuditResult<Vec<Expired>> {
    // 'infinity' would expire every partition, the current and future ones included.
    utc_date(at)?;
    let positive = crate::base::spi_util::read_one::<bool>(
        "SELECT $1::interval > interval '0'",
        &[retention.into()],
    )?
    .unwrap_or(false);
    if !positive {
        return Err(AuditError::invalid_parameter("retention must be a positive interval")
            .hint("For example '12 months' or '90 days'; NULL uses the parent's config row."));
    }
    let query = format!(
        "SELECT n.nspname::text, c.relname::text,
                p.range_to <= coalesce($2, pg_catalog.now()) - $3::interval - '{OVERDUE}'::interval
           FROM {}.audit_partitions($1) p
           JOIN pg_catalog.pg_class c ON c.oid = p.partition
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE NOT p.is_default AND p.range_to <> 'infinity'
            AND p.range_to <= coalesce($2, pg_catalog.now()) - $3::interval
          ORDER BY p.range_to",
        ext_schema()?
    );
    Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(&query, None, &[Regclass(parent.oid).into(), at.into(), retention.into()])? {
            out.push(Expired {
                schema: r.get::<String>(1)?.unwrap_or_default(),
                name: r.get::<String>(2)?.unwrap_or_default(),
                overdue: r.get::<bool>(3)?.unwrap_or(false),
            });
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .map_err(AuditError::from)
}

/// Detaches `schema.name` from `parent` and renames it `<name>_detached`. Returns the new name.
pub fn detach_and_keep(parent: &Parent, schema: &str, name: &str) -> AuditResult<String> {
    crate::evidence::retirement::checkpoint_partition(schema, name, "detached")?;
    let part = qualified(schema, name);
    let kept = detached_name(name);
    // The checkpoint above recorded its rows: audit_db's own detach (the partition guard
    // event triggers let it through: `internal::guard`, `audit_internal_write()`).
    let _internal = crate::base::internal::guard();
    {
        // DETACH runs the foreign-key checks of tables that reference the parent,
        // planned with their owners' index expressions: as the parent's owner for a
        // table that is not the extension's (issue 25: an admin became superuser).
        let _owner = parent.as_owner();
        Spi::run(&format!("ALTER TABLE {} DETACH PARTITION {part}", parent.qualified()))?;
    }
    // A kept table is no partition any more: its TRUNCATE guard goes (the DETACH guard
    // reads a guarded table without a parent as an unauthorised detach). The guard is
    // an internal trigger named after its OID: found by its function.
    let guards: Vec<String> = Spi::connect(|client| {
        client
            .select(
                "SELECT t.tgname::text FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                  WHERE t.tgrelid = pg_catalog.to_regclass($1) AND p.proname = 'audit_log_no_truncate'",
                None,
                &[part.as_str().into()],
            )?
            .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })?;
    for guard in guards {
        Spi::run(&format!("DROP TRIGGER {} ON {part}", quote_identifier(&guard)))?;
    }
    let _owner = parent.as_owner();
    Spi::run(&format!("ALTER TABLE {part} RENAME TO {}", quote_identifier(&kept)))?;
    Ok(kept)
}

/// Drops every table of `tables` (schema, name) in ONE `DROP TABLE` statement:
/// PostgreSQL takes an ACCESS EXCLUSIVE lock on the parent (and its DEFAULT
/// partition) to drop a partition, so one statement keeps that lock to one DDL.
///
/// `cascade` for partitions of the extension's own tables: any role may create a view
/// (or a temporary table of the partition's row type) that depends on a partition,
/// without any privilege on it, and would hold audit_log's retention back for good
/// (issue 25). Such objects go with the partition; PostgreSQL names each in a NOTICE.
pub fn drop_tables(tables: &[(String, String)], cascade: bool) -> AuditResult<()> {
    if tables.is_empty() {
        return Ok(());
    }
    // audit_log partitions leave a sealed checkpoint so the chain verifies across them.
    for (schema, name) in tables {
        crate::evidence::retirement::checkpoint_partition(schema, name, "dropped")?;
    }
    let list: Vec<String> = tables.iter().map(|(s, n)| qualified(s, n)).collect();
    // Checkpoints recorded: audit_db's own drop (the partition guard event triggers let it
    // through: `internal::guard`, `audit_internal_write()`).
    let _internal = crate::base::internal::guard();
    let behavior = if cascade { "CASCADE" } else { "RESTRICT" };
    Spi::run(&format!("DROP TABLE {} {behavior}", list.join(", ")))?;
    Ok(())
}

/// `<name>_detached`, shortened so it fits in 63 bytes.
pub fn detached_name(name: &str) -> String {
    audit_db_core::partition::with_suffix(name, "_detached")
}

/// Drops (or detaches) every expired partition of `rel`. NULL retention = the config
/// row's; no retention configured = nothing is dropped.
pub fn drop_expired_partitions(
    rel: Regclass,
    retention: Option<Interval>,
    keep_table: bool,
    at: Option<TimestampWithTimeZone>,
) -> AuditResult<Vec<String>> {
    retention_reference(at)?;
    let parent = Parent::load(rel)?;
    authorize_maintenance(&parent)?;
    let Some(retention) = retention.or(PartitionConfig::load(parent.oid)?.retention) else {
        return Ok(Vec::new());
    };
    let expired = expired_partitions(&parent, retention, at)?;
    if expired.is_empty() {
        return Ok(Vec::new());
    }
    // The checkpoint reads each partition's rows before it goes: no insert may slip in
    // between, so lock first, in PostgreSQL's own order for DROP / DETACH (the parent
    // ONLY, then the partitions), which writers also follow: no deadlock with them.
    Spi::run(&format!("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE", parent.qualified()))?;
    for e in &expired {
        Spi::run(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", qualified(&e.schema, &e.name)))?;
    }
    if keep_table {
        for e in &expired {
            let kept = detach_and_keep(&parent, &e.schema, &e.name)?;
            pgrx::notice!("audit_db: partition \"{}\" detached and kept as {kept}", e.name);
        }
    } else {
        let tables: Vec<(String, String)> = expired.iter().map(|e| (e.schema.clone(), e.name.clone())).collect();
        drop_tables(&tables, parent.member)?;
        for e in &expired {
            pgrx::notice!("audit_db: partition \"{}\" dropped", e.name);
        }
    }
    Ok(expired.into_iter().map(|e| e.name).collect())
}

/// A parent's row of `audit_partition_config`, or the defaults when it has none.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    pub interval: PartitionInterval,
    pub premake: i32,
    pub retention: Option<Interval>,
    pub keep_table: bool,
    pub auto_create: bool,
    pub auto_drop: bool,
    /// `lock_timeout` in milliseconds.
    pub lock_timeout_ms: i64,
    /// Whether the parent keeps a DEFAULT partition; None = as it is (issue 19).
    pub default_partition: Option<bool>,
}

impl PartitionConfig {
    pub fn load(parent: pg_sys::Oid) -> AuditResult<PartitionConfig> {
        let schema = ext_schema()?;
        // Version 0.1.0 of the schema has no config table: this library serves every
        // released version, so it falls back to the defaults there.
        let has_table = crate::base::spi_util::read_one::<bool>(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[format!("{schema}.audit_partition_config").into()],
        )?
        .unwrap_or(false);
        if !has_table {
            return Ok(PartitionConfig::default());
        }
        // default_partition came with 0.6.0: read through to_jsonb, NULL before.
        let query = format!(
            "SELECT \"interval\", premake, retention, keep_table, auto_create, auto_drop,
                    (extract(epoch FROM lock_timeout) * 1000)::int8,
                    (pg_catalog.to_jsonb(c) OPERATOR(pg_catalog.->>) 'default_partition')::bool
               FROM {schema}.audit_partition_config c WHERE parent = $1"
        );
        let row = Spi::connect(|client| {
            let mut out = None;
            for r in client.select(&query, Some(1), &[Regclass(parent).into()])? {
                out = Some((
                    r.get::<String>(1)?.unwrap_or_default(),
                    r.get::<i32>(2)?.unwrap_or(DEFAULT_PREMAKE),
                    r.get::<Interval>(3)?,
                    r.get::<bool>(4)?.unwrap_or(false),
                    r.get::<bool>(5)?.unwrap_or(true),
                    r.get::<bool>(6)?.unwrap_or(true),
                    r.get::<i64>(7)?.unwrap_or(2000),
                    r.get::<bool>(8)?,
                ));
            }
            Ok::<_, pgrx::spi::Error>(out)
        })?;
        Ok(match row {
            None => PartitionConfig::default(),
            Some((interval, premake, retention, keep_table, auto_create, auto_drop, lock_ms, default_partition)) => {
                PartitionConfig {
                    interval: PartitionInterval::parse(&interval).map_err(plan_error)?,
                    premake,
                    retention,
                    keep_table,
                    auto_create,
                    auto_drop,
                    lock_timeout_ms: lock_ms,
                    default_partition,
                }
            }
        })
    }
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            interval: PartitionInterval::Monthly,
            premake: DEFAULT_PREMAKE,
            retention: None,
            keep_table: false,
            auto_create: true,
            auto_drop: true,
            lock_timeout_ms: 2000,
            default_partition: None,
        }
    }
}

fn relation_exists(schema: &str, name: &str) -> AuditResult<bool> {
    Ok(crate::base::spi_util::read_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = $1 AND c.relname = $2)",
        &[schema.into(), name.into()],
    )?
    .unwrap_or(false))
}

fn overlaps_existing(existing: &[ExistingPartition], period: &Period) -> AuditResult<bool> {
    let ranges: Vec<_> = existing.iter().filter(|p| !p.is_default).collect();
    if ranges.is_empty() {
        return Ok(false);
    }
    let froms: Vec<Option<TimestampWithTimeZone>> = ranges.iter().map(|p| p.from).collect();
    let tos: Vec<Option<TimestampWithTimeZone>> = ranges.iter().map(|p| p.to).collect();
    // MINVALUE / MAXVALUE bounds come back as -infinity / infinity.
    Ok(crate::base::spi_util::read_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM unnest($1::timestamptz[], $2::timestamptz[]) AS r(f, t)
                         WHERE r.f < $4::timestamptz AND r.t > $3::timestamptz)",
        &[
            froms.into(),
            tos.into(),
            period.from_literal().into(),
            period.to_literal().into(),
        ],
    )?
    .unwrap_or(false))
}

/// `audit_create_partitions(parent, premake, reference_time)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_create_partitions(
    parent: default!(Option<Regclass>, "'audit_log'"),
    premake: default!(Option<i32>, "NULL"),
    reference_time: default!(Option<TimestampWithTimeZone>, "now()"),
) -> SetOfIterator<'static, String> {
    let parent = parent.ok_or_else(|| AuditError::null_argument("parent")).or_report();
    SetOfIterator::new(create_partitions(parent, premake, reference_time).or_report())
}

/// `audit_drop_expired_partitions(parent, retention, keep_table, reference_time)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_drop_expired_partitions(
    parent: default!(Option<Regclass>, "'audit_log'"),
    retention: default!(Option<Interval>, "NULL"),
    keep_table: default!(Option<bool>, false),
    reference_time: default!(Option<TimestampWithTimeZone>, "now()"),
) -> SetOfIterator<'static, String> {
    let parent = parent.ok_or_else(|| AuditError::null_argument("parent")).or_report();
    let keep_table = keep_table.ok_or_else(|| AuditError::null_argument("keep_table")).or_report();
    SetOfIterator::new(
        drop_expired_partitions(parent, retention, keep_table, reference_time).or_report(),
    )
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn names(query: &str) -> Vec<String> {
        Spi::connect(|client| {
            client
                .select(query, None, &[])
                .expect("query runs")
                .map(|r| r.get::<String>(1).expect("text column").expect("not null"))
                .collect()
        })
    }

    #[pg_test]
    fn install_creates_current_month_and_six_ahead_for_both_tables() {
        let today = super::utc_date(None).expect("date");
        for parent in ["audit_log", "error_log"] {
            let expected: Vec<String> = audit_db_core::partition::plan(
                parent,
                audit_db_core::partition::PartitionInterval::Monthly,
                today,
                6,
            )
            .expect("plan")
            .into_iter()
            .map(|p| p.name)
            .collect();
            let got = names(&format!(
                "SELECT partition::text FROM audit_partitions('{parent}') WHERE NOT is_default ORDER BY range_from"
            ));
            assert_eq!(got, expected);
            let defaults = names(&format!(
                "SELECT partition::text FROM audit_partitions('{parent}') WHERE is_default"
            ));
            assert_eq!(defaults, vec![format!("{parent}_default")]);
        }
    }

    #[pg_test]
    fn second_call_creates_nothing() {
        assert!(names("SELECT audit_create_partitions()").is_empty());
        assert!(names("SELECT audit_create_partitions('error_log')").is_empty());
    }

    #[pg_test]
    fn creates_requested_months_with_exact_utc_bounds() {
        let created =
            names("SELECT audit_create_partitions('audit_log', 2, '2024-01-31 23:30:00-05')");
        // 2024-01-31 23:30 at UTC-5 is 2024-02-01 04:30 UTC: February is the current month.
        assert_eq!(
            created,
            [
                "audit_log_2024_02",
                "audit_log_2024_03",
                "audit_log_2024_04"
            ]
        );
        let bounds = names(
            "SELECT format('%s %s %s', partition, range_from AT TIME ZONE 'UTC', range_to AT TIME ZONE 'UTC')
               FROM audit_partitions('audit_log') WHERE partition::text LIKE 'audit_log_2024%'
              ORDER BY range_from",
        );
        assert_eq!(
            bounds,
            [
                "audit_log_2024_02 2024-02-01 00:00:00 2024-03-01 00:00:00",
                "audit_log_2024_03 2024-03-01 00:00:00 2024-04-01 00:00:00",
                "audit_log_2024_04 2024-04-01 00:00:00 2024-05-01 00:00:00",
            ]
        );
        assert!(names("SELECT audit_create_partitions('audit_log', 2, '2024-02-29')").is_empty());
    }

    #[pg_test]
    fn new_partitions_get_every_parent_index() {
        names("SELECT audit_create_partitions('audit_log', 0, '2020-06-15')");
        let parent_indexes = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'audit_log'::regclass",
        )
        .expect("count");
        let part_indexes = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'audit_log_2020_06'::regclass",
        )
        .expect("count");
        // 16 indexes of the original migrations, the primary key, (0.4.0) the chain index
        // and (0.6.0) the seal epoch index.
        assert_eq!(parent_indexes, Some(19));
        assert_eq!(part_indexes, Some(19));
    }

    #[pg_test]
    fn rows_in_default_are_moved_into_the_new_partition() {
        Spi::run(
            "INSERT INTO audit_log (\"timestamp\", action, status)
             SELECT '2019-03-01'::timestamptz + i * interval '1 hour', 'a', 's'
               FROM generate_series(0, 99) i",
        )
        .expect("insert");
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM audit_log_default").expect("count"),
            Some(100)
        );
        let created = names("SELECT audit_create_partitions('audit_log', 0, '2019-03-10')");
        assert_eq!(created, ["audit_log_2019_03"]);
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM audit_log_default").expect("count"),
            Some(0)
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM audit_log_2019_03").expect("count"),
            Some(100)
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(DISTINCT id) FROM audit_log").expect("count"),
            Some(100)
        );
    }

    #[pg_test]
    fn partitions_are_not_extension_members() {
        let members = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
              WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_db')
                AND c.relname ~ '^(audit|error)_log_[0-9]'",
        )
        .expect("count");
        assert_eq!(members, Some(0));
    }

    #[pg_test(error = "\"audit_integrity_log\" is not a partitioned table")]
    fn plain_table_is_refused() {
        names("SELECT audit_create_partitions('audit_integrity_log')");
    }

    #[pg_test(error = "premake must be between 0 and 1000, got -1")]
    fn negative_premake_is_refused() {
        names("SELECT audit_create_partitions('audit_log', -1)");
    }

    #[pg_test(error = "argument \"parent\" must not be NULL")]
    fn null_parent_is_refused() {
        names("SELECT audit_create_partitions(NULL)");
    }
}
