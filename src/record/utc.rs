//! UTC times as the recorder names and shows them: milliseconds since the Unix epoch, written
//! as RFC 3339 (`2026-12-07T10:15:00.123Z`) in the API and as the same with `-` for `:` in file
//! names (`2026-12-07T10-15-00.123Z.mp4`), which every filesystem accepts and which sort by
//! time. A few lines of civil-calendar arithmetic rather than a date crate: nothing here needs
//! time zones, only UTC and the offsets a client may write in a query.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type UtcMs = i64;

pub fn from_system(t: SystemTime) -> UtcMs {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub fn to_system(ms: UtcMs) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Days since the epoch of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn fields(ms: UtcMs) -> (i64, u32, u32, i64, i64, i64, i64) {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    (
        y,
        m,
        d,
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    )
}

/// RFC 3339 in UTC with milliseconds: `2026-12-07T10:15:00.123Z`.
pub fn format_rfc3339(ms: UtcMs) -> String {
    let (y, m, d, h, min, s, milli) = fields(ms);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// A segment's file name (without `.mp4`): `2026-12-07T10-15-00.123Z`.
pub fn format_file_stem(ms: UtcMs) -> String {
    let (y, m, d, h, min, s, milli) = fields(ms);
    format!("{y:04}-{m:02}-{d:02}T{h:02}-{min:02}-{s:02}.{milli:03}Z")
}

/// Parses a file stem written by [`format_file_stem`].
pub fn parse_file_stem(stem: &str) -> Option<UtcMs> {
    let b = stem.as_bytes();
    if b.len() != 24
        || b[10] != b'T'
        || b[13] != b'-'
        || b[16] != b'-'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let text = format!("{}:{}:{}", &stem[..13], &stem[14..16], &stem[17..]);
    parse_rfc3339(&text)
}

/// Parses RFC 3339 (`2026-12-07T10:15:00Z`, with optional fractional seconds and a `Z` or
/// `±HH:MM` offset; `t`/`z`/a space accepted as RFC 3339 allows). `None` if malformed.
pub fn parse_rfc3339(text: &str) -> Option<UtcMs> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(r)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo)
        || d < 1
        || d > days_in_month(y, mo as u32)
        || h > 23
        || mi > 59
        || s > 60
    {
        return None;
    }
    let mut i = 19;
    let mut milli = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &text[start..i.min(start + 3)];
        milli = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_min = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 60 + om;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    // A leap second (:60) is read as the next second's start.
    Some(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + s * 1000 + milli)
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back() {
        // 2026-12-07T10:15:00.123Z, checked with `date -u -d @1796638500`.
        let t = 1_796_638_500_123;
        assert_eq!(format_rfc3339(t), "2026-12-07T10:15:00.123Z");
        assert_eq!(format_file_stem(t), "2026-12-07T10-15-00.123Z");
        assert_eq!(parse_rfc3339("2026-12-07T10:15:00.123Z"), Some(t));
        assert_eq!(parse_file_stem("2026-12-07T10-15-00.123Z"), Some(t));
        assert_eq!(parse_rfc3339("2026-12-07T11:15:00.123+01:00"), Some(t));
        assert_eq!(parse_rfc3339("2026-12-07t10:15:00.1234567z"), Some(t));
        assert_eq!(parse_rfc3339("2026-12-07T10:15:00Z"), Some(t - 123));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z")
                .map(format_rfc3339)
                .as_deref(),
            Some("2024-02-29T00:00:00.000Z")
        );
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07T10:15:00",
            "2026-13-07T10:15:00Z",
            "2025-02-29T10:15:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T10:15:00.Z",
            "2026-12-07T10:15:00+0100",
            "2026-12-07T10:15:00Zjunk",
            "+026-12-07T10:15:00Z",
            "2026-12-07T10-15-00.123Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(parse_file_stem("2026-12-07T10:15:00.123Z"), None);
        assert_eq!(parse_file_stem("notes"), None);
    }

    #[test]
    fn every_day_round_trips() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
