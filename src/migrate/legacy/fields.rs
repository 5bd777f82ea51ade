//! Legacy field text → domain values, and the ids imported records get.

use constellation_core::ValidationError;
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// 16 bytes that identify a legacy record for good: the same source, table
/// and legacy id always give the same bytes, so importing a row twice finds
/// the record the first run wrote.
pub fn seed(source: &str, table: &str, legacy_id: &str) -> [u8; 16] {
    let mut hash = Sha256::new();
    for part in ["constellation-legacy", source, table, legacy_id] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut out = [0_u8; 16];
    out.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    out
}

/// [`seed`] as an integer (the random part of a time-ordered id).
pub fn seed_u128(source: &str, table: &str, legacy_id: &str) -> u128 {
    u128::from_be_bytes(seed(source, table, legacy_id))
}

/// [`seed`] as 32 lowercase hex digits (organization ids).
pub fn seed_hex(source: &str, table: &str, legacy_id: &str) -> String {
    hex::encode(seed(source, table, legacy_id))
}

/// A ValidationError as a reject reason.
pub fn invalid(e: ValidationError) -> String {
    e.to_string()
}

/// A timestamp as PostgreSQL writes one (`2024-03-01 12:34:56.789+00`,
/// `timestamptz` with `DateStyle = ISO`; without an offset, a `timestamp`
/// column, taken as UTC) or as RFC 3339 (`$date`, JSON exports).
pub fn timestamp(field: &'static str, raw: &str) -> Result<OffsetDateTime, String> {
    let raw = raw.trim();
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(t);
    }
    let bad = || {
        format!(
            "{field}: `{raw}` is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]] or RFC 3339)"
        )
    };
    // Split a trailing offset (`+00`, `-05:30`) from the local part.
    let (local, offset) = match raw.rfind(['+', '-']).filter(|&i| i > 10) {
        Some(i) => (
            raw.get(..i).ok_or_else(bad)?,
            Some(raw.get(i..).ok_or_else(bad)?),
        ),
        None => (raw, None),
    };
    let local = local.replacen('T', " ", 1);
    let parsed = PrimitiveDateTime::parse(
        &local,
        format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
        ),
    )
    .map_err(|_| bad())?;
    let offset = match offset {
        None => UtcOffset::UTC,
        Some(o) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let digits = o.get(1..).ok_or_else(bad)?;
            let (h, m) = match digits.split_once(':') {
                Some((h, m)) => (h, m),
                None if digits.len() == 4 => digits.split_at(2),
                None => (digits, "0"),
            };
            let h: i8 = h.parse().map_err(|_| bad())?;
            let m: i8 = m.parse().map_err(|_| bad())?;
            UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())?
        }
    };
    Ok(parsed.assume_offset(offset))
}

/// A day: `YYYY-MM-DD`, or a timestamp's UTC day (a `$date`).
pub fn day(field: &'static str, raw: &str) -> Result<Date, String> {
    let raw = raw.trim();
    if raw.len() == 10 {
        return Date::parse(raw, format_description!("[year]-[month]-[day]"))
            .map_err(|_| format!("{field}: `{raw}` is not a date (YYYY-MM-DD)"));
    }
    timestamp(field, raw)
        .map(|t| t.to_offset(UtcOffset::UTC).date())
        .map_err(|_| format!("{field}: `{raw}` is not a date (YYYY-MM-DD)"))
}

/// A boolean as PostgreSQL (`t`/`f`) or JSON (`true`/`false`) writes it.
pub fn boolean(field: &'static str, raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "t" | "true" | "TRUE" | "1" => Ok(true),
        "f" | "false" | "FALSE" | "0" => Ok(false),
        other => Err(format!("{field}: `{other}` is not a boolean (t/f)")),
    }
}

/// A whole number in `min..=max`.
pub fn integer(field: &'static str, raw: &str, min: i64, max: i64) -> Result<i64, String> {
    let n: i64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("{field}: `{raw}` is not a whole number"))?;
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{field}: must be from {min} to {max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn postgres_and_rfc3339_timestamps() {
        assert_eq!(
            timestamp("t", "2024-03-01 12:34:56.789+00"),
            Ok(datetime!(2024-03-01 12:34:56.789 UTC))
        );
        assert_eq!(
            timestamp("t", "2024-03-01 12:34:56-05:30"),
            Ok(datetime!(2024-03-01 12:34:56 -05:30))
        );
        assert_eq!(
            timestamp("t", "2024-03-01 12:34:56"),
            Ok(datetime!(2024-03-01 12:34:56 UTC))
        );
        assert_eq!(
            timestamp("t", "2024-03-01T12:34:56Z"),
            Ok(datetime!(2024-03-01 12:34:56 UTC))
        );
        for bad in [
            "2024-13-01 00:00:00",
            "yesterday",
            "2024-03-01 25:00:00+00",
            "",
        ] {
            assert!(timestamp("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_and_seeds() {
        assert_eq!(
            day("d", "2024-02-29").map(|d| d.to_string()),
            Ok("2024-02-29".to_owned())
        );
        assert!(day("d", "2023-02-29").is_err());
        assert!(day("d", "2024-1-1").is_err());
        assert_eq!(
            day("d", "2024-03-01T23:30:00-02:00").map(|d| d.to_string()),
            Ok("2024-03-02".to_owned())
        );
        assert_eq!(seed("pg", "users", "1"), seed("pg", "users", "1"));
        assert_ne!(seed("pg", "users", "1"), seed("pg", "users", "11"));
        assert_ne!(seed("pg", "users", "1"), seed("pg", "orders", "1"));
        assert_ne!(seed("pg", "users", "1"), seed("mongo", "users", "1"));
    }
}
