//! Civil (proleptic Gregorian) dates without time zones.
//!
//! Days are counted from 1970-01-01 (day 0), the same epoch as Unix time, using
//! Howard Hinnant's `days_from_civil` / `civil_from_days` algorithms.

use std::fmt;

/// A calendar date. Invariant: `month` in 1..=12, `day` in 1..=days_in_month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

/// Why a date could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateError {
    /// Month or day out of range for the given year.
    Invalid { year: i32, month: u32, day: u32 },
}

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateError::Invalid { year, month, day } => {
                write!(f, "invalid date {year:04}-{month:02}-{day:02}")
            }
        }
    }
}

impl std::error::Error for DateError {}

pub fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// Builds a date, checking month and day.
    pub fn new(year: i32, month: u32, day: u32) -> Result<Date, DateError> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(DateError::Invalid { year, month, day });
        }
        Ok(Date { year, month, day })
    }

    /// Days since 1970-01-01 (negative before).
    pub fn to_days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400; // [0, 399]
        let m = i64::from(self.month);
        let mp = (m + 9) % 12; // March = 0
        let doy = (153 * mp + 2) / 5 + i64::from(self.day) - 1; // [0, 365]
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
        era * 146_097 + doe - 719_468
    }

    /// The date `days` days after 1970-01-01.
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097; // [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
        let mp = (5 * doy + 2) / 153; // [0, 11]
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    pub fn add_days(self, n: i64) -> Date {
        Date::from_days(self.to_days() + n)
    }

    /// First day of the month `n` months after this date's month (n may be negative).
    pub fn add_months_to_first(self, n: i64) -> Date {
        let idx = i64::from(self.year) * 12 + i64::from(self.month) - 1 + n;
        Date {
            year: idx.div_euclid(12) as i32,
            month: (idx.rem_euclid(12) + 1) as u32,
            day: 1,
        }
    }

    /// ISO weekday: Monday = 1 .. Sunday = 7.
    pub fn iso_weekday(self) -> u32 {
        // 1970-01-01 was a Thursday (4).
        ((self.to_days() + 3).rem_euclid(7) + 1) as u32
    }

    /// ISO 8601 week-numbering year and week (1..=53).
    pub fn iso_week(self) -> (i32, u32) {
        // The Thursday of this week decides the ISO year.
        let thursday = self.add_days(4 - i64::from(self.iso_weekday()));
        let jan1 = Date {
            year: thursday.year,
            month: 1,
            day: 1,
        };
        let week = ((thursday.to_days() - jan1.to_days()) / 7 + 1) as u32;
        (thursday.year, week)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> Date {
        Date::new(y, m, day).unwrap()
    }

    #[test]
    fn epoch_and_known_days() {
        assert_eq!(d(1970, 1, 1).to_days(), 0);
        assert_eq!(d(2000, 3, 1).to_days(), 11_017);
        assert_eq!(d(1969, 12, 31).to_days(), -1);
        assert_eq!(Date::from_days(20_781), d(2026, 11, 24));
    }

    #[test]
    fn round_trip_over_many_years() {
        let mut prev = Date::from_days(-800_000);
        for n in -799_999..800_000 {
            let cur = Date::from_days(n);
            assert_eq!(cur.to_days(), n);
            assert!(cur > prev, "{cur} after {prev}");
            prev = cur;
        }
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2024));
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2026));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(d(2024, 2, 28).add_days(1), d(2024, 2, 29));
        assert_eq!(d(2023, 2, 28).add_days(1), d(2023, 3, 1));
    }

    #[test]
    fn invalid_dates_are_refused() {
        assert!(Date::new(2023, 2, 29).is_err());
        assert!(Date::new(2024, 13, 1).is_err());
        assert!(Date::new(2024, 0, 1).is_err());
        assert!(Date::new(2024, 4, 31).is_err());
        assert_eq!(
            Date::new(2024, 4, 31).unwrap_err().to_string(),
            "invalid date 2024-04-31"
        );
    }

    #[test]
    fn month_arithmetic_crosses_years() {
        assert_eq!(d(2026, 11, 24).add_months_to_first(0), d(2026, 11, 1));
        assert_eq!(d(2026, 11, 24).add_months_to_first(2), d(2027, 1, 1));
        assert_eq!(d(2026, 1, 31).add_months_to_first(-1), d(2025, 12, 1));
        assert_eq!(d(2026, 1, 31).add_months_to_first(-25), d(2023, 12, 1));
    }

    #[test]
    fn iso_weeks() {
        assert_eq!(d(2026, 11, 23).iso_weekday(), 1); // Monday
        assert_eq!(d(2026, 11, 24).iso_week(), (2026, 48));
        // 2021-01-03 (Sunday) belongs to ISO week 53 of 2020.
        assert_eq!(d(2021, 1, 3).iso_week(), (2020, 53));
        // 2024-12-30 (Monday) belongs to ISO week 1 of 2025.
        assert_eq!(d(2024, 12, 30).iso_week(), (2025, 1));
    }
}
