//! The original application's event hash, to verify rows it wrote (adopted, or
//! written before audit_db sealed rows) against their stored `hash` when
//! `hash_algorithm` is 'SHA-256'.
//!
//! The original hashed eight fields: with keys sorted (action, organizationId,
//! outcomeDescription, principalId, status, targetResourceId, targetResourceType,
//! timestamp), each as `key:` + the JSON text of its value, joined by `|`, SHA-256 in
//! lowercase hex. Empty and missing optional values are JSON `null`. `timestamp` is the
//! ISO-8601 string the application held (`Date.toISOString()`: UTC, milliseconds,
//! `Z`), which the database stored as a timestamptz: a stored time with a
//! sub-millisecond part cannot have come from that string, and is not reproduced.

use crate::calendar::Date;
use crate::integrity::push_json_string;
use sha2::{Digest, Sha256};

/// The stored values the original hash covered.
#[derive(Debug, Default, Clone)]
pub struct OriginalEvent<'a> {
    /// Microseconds since the Unix epoch.
    pub timestamp_us: i64,
    pub action: Option<&'a str>,
    pub status: Option<&'a str>,
    pub principal_id: Option<&'a str>,
    pub organization_id: Option<&'a str>,
    pub target_resource_type: Option<&'a str>,
    pub target_resource_id: Option<&'a str>,
    pub outcome_description: Option<&'a str>,
}

/// `Date.toISOString()` of a time with whole milliseconds; None otherwise (or outside
/// the years 0..=9999, which toISOString writes in another form).
pub fn iso_millis(timestamp_us: i64) -> Option<String> {
    if timestamp_us.rem_euclid(1000) != 0 {
        return None;
    }
    let ms = timestamp_us.div_euclid(1000);
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let Date { year: y, month: m, day: d } = Date::from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let (h, min, s, milli) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    Some(format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z"))
}

/// The original's hash of the event, or None when its timestamp string cannot be
/// reproduced.
pub fn original_hash(e: &OriginalEvent) -> Option<String> {
    let timestamp = iso_millis(e.timestamp_us)?;
    // (key, value) in sorted key order; `|| null` made empty strings null.
    let fields: [(&str, Option<&str>); 8] = [
        ("action", e.action),
        ("organizationId", e.organization_id.filter(|s| !s.is_empty())),
        ("outcomeDescription", e.outcome_description.filter(|s| !s.is_empty())),
        ("principalId", e.principal_id.filter(|s| !s.is_empty())),
        ("status", e.status),
        ("targetResourceId", e.target_resource_id.filter(|s| !s.is_empty())),
        ("targetResourceType", e.target_resource_type.filter(|s| !s.is_empty())),
        ("timestamp", Some(timestamp.as_str())),
    ];
    let mut text = String::with_capacity(256);
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            text.push('|');
        }
        text.push_str(key);
        text.push(':');
        match value {
            Some(v) => push_json_string(&mut text, v),
            None => text.push_str("null"),
        }
    }
    Some(hex::encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed by Node.js from the algorithm described above.
    #[test]
    fn matches_the_original_application() {
        let login = OriginalEvent {
            timestamp_us: 1_754_267_324_684_000,
            action: Some("auth.login.success"),
            status: Some("success"),
            principal_id: Some("alice@example.com"),
            organization_id: Some("org-1"),
            ..Default::default()
        };
        assert_eq!(
            original_hash(&login).as_deref(),
            Some("49951b2c0d85f0d311653d51c301c962760713c5598bc96672b3136d7c7c9a27")
        );
        let odd = OriginalEvent {
            timestamp_us: 946_684_799_000_000,
            action: Some("data.read"),
            status: Some("failure"),
            principal_id: Some(""),
            organization_id: None,
            target_resource_type: Some("Patient"),
            target_resource_id: Some("p-\"1\"\n"),
            outcome_description: Some("tab\there \u{1} Zoë 😀"),
        };
        assert_eq!(
            original_hash(&odd).as_deref(),
            Some("9407b6834949f83b4add1653d5abc5f16ae7d27c9ec9638e3379e13ba663df66")
        );
    }

    #[test]
    fn timestamps_as_to_iso_string() {
        assert_eq!(iso_millis(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(iso_millis(-1000).as_deref(), Some("1969-12-31T23:59:59.999Z"));
        assert_eq!(iso_millis(951_782_400_000_000).as_deref(), Some("2000-02-29T00:00:00.000Z"));
        assert_eq!(iso_millis(1_754_267_324_684_001), None, "sub-millisecond: not from toISOString");
        assert_eq!(iso_millis(-62_167_219_200_000_000).as_deref(), Some("0000-01-01T00:00:00.000Z"));
        assert_eq!(iso_millis(-62_167_219_200_001_000), None, "before year 0");
    }
}
