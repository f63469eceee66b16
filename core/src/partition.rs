//! Partition planning: which ranges exist for an interval, their UTC bounds and names.
//!
//! Every bound is midnight UTC of a calendar date, so a monthly partition of
//! `audit_log` for November 2026 is `audit_log_2026_11` covering
//! `['2026-11-01 00:00:00+00', '2026-12-01 00:00:00+00')` whatever the server's
//! `TimeZone`.

use crate::calendar::Date;
use std::fmt;

/// PostgreSQL's NAMEDATALEN - 1: identifiers longer than this are truncated.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Upper limit of `premake`, to stop a typo from creating millions of tables.
pub const MAX_PREMAKE: i64 = 1000;

/// Width of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionInterval {
    Daily,
    Weekly,
    Monthly,
}

/// What can go wrong while planning partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The interval text is none of daily, weekly, monthly.
    UnknownInterval(String),
    /// `premake` is negative or above [`MAX_PREMAKE`].
    PremakeOutOfRange(i64),
    /// The generated partition name would exceed 63 bytes.
    NameTooLong(String),
    /// The period lies outside years 1..=9999.
    YearOutOfRange(i32),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::UnknownInterval(s) => write!(f, "unknown partition interval \"{s}\""),
            PlanError::PremakeOutOfRange(n) => {
                write!(f, "premake must be between 0 and {MAX_PREMAKE}, got {n}")
            }
            PlanError::NameTooLong(s) => write!(
                f,
                "partition name \"{s}\" is longer than {MAX_IDENTIFIER_BYTES} bytes"
            ),
            PlanError::YearOutOfRange(y) => {
                write!(f, "partition year {y} is outside 1..9999")
            }
        }
    }
}

impl std::error::Error for PlanError {}

impl PartitionInterval {
    /// Parses `daily`, `weekly`, `monthly` (also `day`, `week`, `month`, `1 day`,
    /// `1 week`, `1 month`, `1 mon`), case-insensitively.
    pub fn parse(text: &str) -> Result<PartitionInterval, PlanError> {
        let norm = text.trim().to_ascii_lowercase();
        match norm.as_str() {
            "daily" | "day" | "1 day" | "1 days" => Ok(PartitionInterval::Daily),
            "weekly" | "week" | "1 week" | "1 weeks" | "7 days" => Ok(PartitionInterval::Weekly),
            "monthly" | "month" | "1 month" | "1 mon" | "1 months" | "1 mons" => {
                Ok(PartitionInterval::Monthly)
            }
            _ => Err(PlanError::UnknownInterval(text.to_string())),
        }
    }

    /// The canonical name stored in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionInterval::Daily => "daily",
            PartitionInterval::Weekly => "weekly",
            PartitionInterval::Monthly => "monthly",
        }
    }

    /// Start of the period that contains `date`.
    pub fn period_start(self, date: Date) -> Date {
        match self {
            PartitionInterval::Daily => date,
            PartitionInterval::Weekly => date.add_days(1 - i64::from(date.iso_weekday())),
            PartitionInterval::Monthly => date.add_months_to_first(0),
        }
    }

    /// Start of the period `n` periods after the one starting at `start`.
    pub fn advance(self, start: Date, n: i64) -> Date {
        match self {
            PartitionInterval::Daily => start.add_days(n),
            PartitionInterval::Weekly => start.add_days(7 * n),
            PartitionInterval::Monthly => start.add_months_to_first(n),
        }
    }

    /// Name suffix of the period starting at `start`: `YYYY_MM` (monthly),
    /// `YYYY_MM_DD` (daily), `IYYY_wIW` (weekly, ISO week of the Monday).
    pub fn suffix(self, start: Date) -> String {
        match self {
            PartitionInterval::Daily => {
                format!("{:04}_{:02}_{:02}", start.year, start.month, start.day)
            }
            PartitionInterval::Weekly => {
                let (y, w) = start.iso_week();
                format!("{y:04}_w{w:02}")
            }
            PartitionInterval::Monthly => format!("{:04}_{:02}", start.year, start.month),
        }
    }
}

/// One planned partition: `[from, to)` in UTC midnights, and its table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
    pub name: String,
}

impl Period {
    /// `from` as a timestamptz literal, e.g. `2026-11-01 00:00:00+00`.
    pub fn from_literal(&self) -> String {
        bound_literal(self.from)
    }

    /// `to` as a timestamptz literal.
    pub fn to_literal(&self) -> String {
        bound_literal(self.to)
    }
}

/// Midnight UTC of `date` as a timestamptz literal PostgreSQL parses in any TimeZone.
pub fn bound_literal(date: Date) -> String {
    format!("{date} 00:00:00+00")
}

/// Name of the partition of `parent` for the period starting at `start`.
pub fn partition_name(
    parent: &str,
    interval: PartitionInterval,
    start: Date,
) -> Result<String, PlanError> {
    if !(1..=9999).contains(&start.year) {
        return Err(PlanError::YearOutOfRange(start.year));
    }
    let name = format!("{parent}_{}", interval.suffix(start));
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(PlanError::NameTooLong(name));
    }
    Ok(name)
}

/// The current period (the one containing `today`) and `premake` periods after it.
pub fn plan(
    parent: &str,
    interval: PartitionInterval,
    today: Date,
    premake: i64,
) -> Result<Vec<Period>, PlanError> {
    if !(0..=MAX_PREMAKE).contains(&premake) {
        return Err(PlanError::PremakeOutOfRange(premake));
    }
    let first = interval.period_start(today);
    (0..=premake)
        .map(|i| {
            let from = interval.advance(first, i);
            let to = interval.advance(first, i + 1);
            if !(1..=9999).contains(&to.year) {
                return Err(PlanError::YearOutOfRange(to.year));
            }
            Ok(Period {
                from,
                to,
                name: partition_name(parent, interval, from)?,
            })
        })
        .collect()
}

/// Whole months from the month of `a` to the month of `b` (negative when `b` is earlier).
pub fn months_between(a: Date, b: Date) -> i64 {
    (i64::from(b.year) * 12 + i64::from(b.month)) - (i64::from(a.year) * 12 + i64::from(a.month))
}

/// The UTC month start strictly after the month containing `date`: the exclusive upper
/// bound of a range that must include `date`.
pub fn month_after(date: Date) -> Date {
    date.add_months_to_first(1)
}

/// `name` with `suffix`, the name shortened (by whole characters) so that the result
/// fits in PostgreSQL's 63 bytes: how audit_db names a DEFAULT partition, a detached
/// or converted table, and the next free name.
pub fn with_suffix(name: &str, suffix: &str) -> String {
    let mut base = name.to_string();
    while base.len() + suffix.len() > MAX_IDENTIFIER_BYTES && !base.is_empty() {
        base.pop();
    }
    base + suffix
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn with_suffix_fits_and_keeps_a_prefix(name in "\\PC{0,80}", suffix in "_[a-z0-9]{1,12}") {
            let out = with_suffix(&name, &suffix);
            prop_assert!(out.len() <= MAX_IDENTIFIER_BYTES);
            prop_assert!(out.ends_with(&suffix));
            let base = &out[..out.len() - suffix.len()];
            prop_assert!(name.starts_with(base));
            // Only as much is cut as needed: one more character would not fit.
            if base.len() < name.len() {
                let next = name[base.len()..].chars().next().unwrap();
                prop_assert!(base.len() + next.len_utf8() + suffix.len() > MAX_IDENTIFIER_BYTES);
            }
        }
    }

    #[test]
    fn with_suffix_examples() {
        assert_eq!(with_suffix("audit_log", "_default"), "audit_log_default");
        assert_eq!(with_suffix(&"x".repeat(63), "_1"), format!("{}_1", "x".repeat(61)));
        // A multibyte character is cut whole, never split.
        assert_eq!(with_suffix(&format!("{}é", "x".repeat(55)), "_default"), format!("{}_default", "x".repeat(55)));
    }

    fn d(y: i32, m: u32, day: u32) -> Date {
        Date::new(y, m, day).unwrap()
    }

    #[test]
    fn month_spans() {
        assert_eq!(months_between(d(2024, 1, 31), d(2024, 3, 1)), 2);
        assert_eq!(months_between(d(2024, 12, 1), d(2025, 1, 31)), 1);
        assert_eq!(months_between(d(2025, 1, 1), d(2024, 12, 31)), -1);
        assert_eq!(month_after(d(2024, 12, 31)), d(2025, 1, 1));
        assert_eq!(month_after(d(2024, 2, 1)), d(2024, 3, 1));
    }

    #[test]
    fn parse_intervals() {
        assert_eq!(
            PartitionInterval::parse("monthly"),
            Ok(PartitionInterval::Monthly)
        );
        assert_eq!(
            PartitionInterval::parse(" Weekly "),
            Ok(PartitionInterval::Weekly)
        );
        assert_eq!(
            PartitionInterval::parse("1 day"),
            Ok(PartitionInterval::Daily)
        );
        assert_eq!(
            PartitionInterval::parse("1 mon"),
            Ok(PartitionInterval::Monthly)
        );
        assert_eq!(
            PartitionInterval::parse("hourly"),
            Err(PlanError::UnknownInterval("hourly".into()))
        );
        assert!(PartitionInterval::parse("").is_err());
        assert_eq!(PartitionInterval::Weekly.as_str(), "weekly");
    }

    #[test]
    fn monthly_plan_spec_default() {
        let p = plan("audit_log", PartitionInterval::Monthly, d(2026, 11, 24), 6).unwrap();
        let names: Vec<&str> = p.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "audit_log_2026_11",
                "audit_log_2026_12",
                "audit_log_2027_01",
                "audit_log_2027_02",
                "audit_log_2027_03",
                "audit_log_2027_04",
                "audit_log_2027_05"
            ]
        );
        assert_eq!(p[0].from_literal(), "2026-11-01 00:00:00+00");
        assert_eq!(p[0].to_literal(), "2026-12-01 00:00:00+00");
        assert_eq!(p[1].to_literal(), "2027-01-01 00:00:00+00");
        assert_eq!(p[6].to_literal(), "2027-06-01 00:00:00+00");
    }

    #[test]
    fn monthly_plan_on_month_boundaries() {
        // Last day of a month and first day of the next pick different current periods.
        let a = plan("t", PartitionInterval::Monthly, d(2026, 1, 31), 0).unwrap();
        assert_eq!(a[0].name, "t_2026_01");
        let b = plan("t", PartitionInterval::Monthly, d(2026, 2, 1), 0).unwrap();
        assert_eq!(b[0].name, "t_2026_02");
        assert_eq!(b[0].to_literal(), "2026-03-01 00:00:00+00");
    }

    #[test]
    fn daily_plan_through_leap_day() {
        let p = plan("audit_log", PartitionInterval::Daily, d(2024, 2, 28), 2).unwrap();
        let got: Vec<(String, String, String)> = p
            .iter()
            .map(|x| (x.name.clone(), x.from_literal(), x.to_literal()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "audit_log_2024_02_28".into(),
                    "2024-02-28 00:00:00+00".into(),
                    "2024-02-29 00:00:00+00".into()
                ),
                (
                    "audit_log_2024_02_29".into(),
                    "2024-02-29 00:00:00+00".into(),
                    "2024-03-01 00:00:00+00".into()
                ),
                (
                    "audit_log_2024_03_01".into(),
                    "2024-03-01 00:00:00+00".into(),
                    "2024-03-02 00:00:00+00".into()
                ),
            ]
        );
    }

    #[test]
    fn weekly_plan_starts_on_monday_and_uses_iso_weeks() {
        // 2024-12-31 is a Tuesday in ISO week 2025-W01.
        let p = plan("e", PartitionInterval::Weekly, d(2024, 12, 31), 1).unwrap();
        assert_eq!(p[0].from, d(2024, 12, 30));
        assert_eq!(p[0].to, d(2025, 1, 6));
        assert_eq!(p[0].name, "e_2025_w01");
        assert_eq!(p[1].name, "e_2025_w02");
    }

    #[test]
    fn premake_bounds() {
        assert_eq!(
            plan("t", PartitionInterval::Monthly, d(2026, 1, 1), -1),
            Err(PlanError::PremakeOutOfRange(-1))
        );
        assert!(plan(
            "t",
            PartitionInterval::Monthly,
            d(2026, 1, 1),
            MAX_PREMAKE + 1
        )
        .is_err());
        assert_eq!(
            plan("t", PartitionInterval::Daily, d(2026, 1, 1), 0)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn names_longer_than_63_bytes_are_refused() {
        let parent = "p".repeat(55);
        assert_eq!(
            partition_name(&parent, PartitionInterval::Monthly, d(2026, 1, 1))
                .unwrap()
                .len(),
            63
        );
        let parent = "p".repeat(56);
        assert!(matches!(
            partition_name(&parent, PartitionInterval::Monthly, d(2026, 1, 1)),
            Err(PlanError::NameTooLong(_))
        ));
    }

    #[test]
    fn years_outside_four_digits_are_refused() {
        assert_eq!(
            plan("t", PartitionInterval::Monthly, d(9999, 12, 5), 0),
            Err(PlanError::YearOutOfRange(10000))
        );
    }
}
