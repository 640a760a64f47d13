//! Dates and times on the wire: HTTP dates (RFC 9110 section 5.6.7) written and read, RFC 3339
//! timestamps, and the proleptic Gregorian calendar arithmetic both need. The one place the
//! crate (and the gRPC server) does calendar work.

use std::time::{SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Days from 1970-01-01 to a proleptic Gregorian date, or `None` when the date does not exist.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day == 0 || day > month_len[month as usize - 1] {
        return None;
    }
    // Count from 0000-03-01 so the leap day ends the year, in 400-year eras of 146097 days.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = i64::from((month + 9) % 12); // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// The (year, month 1-12, day 1-31) of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // month counted from March
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Seconds and milliseconds since the epoch (times before 1970 read as 1970).
fn since_epoch(t: SystemTime) -> (u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_millis())
}

/// An IMF-fixdate in GMT, `Mon, 02 Jan 2006 15:04:05 GMT`.
pub fn http_date(t: SystemTime) -> String {
    let (secs, _) = since_epoch(t);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = &WEEKDAYS[(days + 3).rem_euclid(7) as usize][..3];
    format!(
        "{weekday}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An RFC 3339 timestamp in UTC with milliseconds, `2024-05-03T12:00:42.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let (secs, millis) = since_epoch(t);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// How [`parse_http_date_with`] reads the zone of an IMF-fixdate-like date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zones {
    /// `GMT`, `UTC`, `UT`, `Z` or a numeric `+hhmm`/`-hhmm`.
    Strict,
    /// Also what Go's `time.Parse` accepts for the layouts `Mon, 02 Jan 2006 15:04:05 MST` and
    /// `Mon, 02 Jan 2006 15:04:05 -07` on a gateway whose local zone is UTC: any zone
    /// abbreviation of 3 to 5 letters (read as offset 0, as Go reads an abbreviation the local
    /// zone does not define) and a numeric `+hh`/`-hh`.
    GoLayouts,
}

/// Parse an HTTP date into unix seconds: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, also
/// with a one-digit day, `UTC`/`UT`/`Z` or a numeric `+hhmm` zone), the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`; two-digit years below 70 are 20xx) and asctime
/// (`Sun Nov  6 08:49:37 1994`). Weekday names must be valid but are not checked against the
/// date; a leap second `:60` counts as `:59`. Anything else is `None`.
pub fn parse_http_date(s: &str) -> Option<i64> {
    parse_http_date_with(s, Zones::Strict)
}

/// [`parse_http_date`] with a choice of the zones accepted.
pub fn parse_http_date_with(s: &str, zones: Zones) -> Option<i64> {
    let s = s.trim_matches(|c| c == ' ' || c == '\t');
    if !s.is_ascii() || s.len() > 64 {
        return None;
    }
    imf_fixdate(s, zones).or_else(|| rfc850_date(s)).or_else(|| asctime_date(s))
}

fn short_weekday(s: &str) -> bool {
    WEEKDAYS.iter().any(|d| d[..3].eq_ignore_ascii_case(s))
}

fn month(s: &str) -> Option<u32> {
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(s)).map(|i| i as u32 + 1)
}

fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `HH:MM:SS` as seconds of the day.
fn time_of_day(s: &str) -> Option<i64> {
    let mut it = s.split(':');
    let (h, m, sec) = (digits(it.next()?, 2, 2)?, digits(it.next()?, 2, 2)?, digits(it.next()?, 2, 2)?);
    if it.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(i64::from(h * 3600 + m * 60 + sec.min(59)))
}

fn timestamp(year: i64, month: u32, day: u32, time: &str) -> Option<i64> {
    Some(days_from_civil(year, month, day)? * 86_400 + time_of_day(time)?)
}

fn zone_offset(z: &str, zones: Zones) -> Option<i64> {
    if ["GMT", "UTC", "UT", "Z"].iter().any(|g| g.eq_ignore_ascii_case(z)) {
        return Some(0);
    }
    let sign = match z.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ if zones == Zones::GoLayouts && (3..=5).contains(&z.len()) && z.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Some(0)
        }
        _ => return None,
    };
    let (h, m) = match (zones, z.len()) {
        (_, 5) => {
            let hhmm = digits(&z[1..], 4, 4)?;
            (hhmm / 100, hhmm % 100)
        }
        (Zones::GoLayouts, 3) => (digits(&z[1..], 2, 2)?, 0),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * i64::from(h * 3600 + m * 60))
}

fn imf_fixdate(s: &str, zones: Zones) -> Option<i64> {
    let (weekday, rest) = s.split_once(", ")?;
    if !short_weekday(weekday) {
        return None;
    }
    let mut it = rest.split(' ');
    let day = digits(it.next()?, 1, 2)?;
    let month = month(it.next()?)?;
    let year = digits(it.next()?, 4, 4)?;
    let time = it.next()?;
    let offset = zone_offset(it.next()?, zones)?;
    if it.next().is_some() {
        return None;
    }
    Some(timestamp(i64::from(year), month, day, time)? - offset)
}

fn rfc850_date(s: &str) -> Option<i64> {
    let (weekday, rest) = s.split_once(", ")?;
    if !WEEKDAYS.iter().any(|d| d.eq_ignore_ascii_case(weekday)) {
        return None;
    }
    let mut it = rest.split(' ');
    let mut date = it.next()?.split('-');
    let day = digits(date.next()?, 2, 2)?;
    let month = month(date.next()?)?;
    let yy = digits(date.next()?, 2, 2)?;
    let time = it.next()?;
    if date.next().is_some() || !it.next()?.eq_ignore_ascii_case("GMT") || it.next().is_some() {
        return None;
    }
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    timestamp(i64::from(year), month, day, time)
}

fn asctime_date(s: &str) -> Option<i64> {
    let mut it = s.split_ascii_whitespace();
    if !short_weekday(it.next()?) {
        return None;
    }
    let month = month(it.next()?)?;
    let day = digits(it.next()?, 1, 2)?;
    let time = it.next()?;
    let year = digits(it.next()?, 4, 4)?;
    if it.next().is_some() {
        return None;
    }
    timestamp(i64::from(year), month, day, time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn http_dates_match_an_independent_formatter() {
        // Expected values from python3: email.utils.formatdate(t, usegmt=True).
        for (t, want) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_714_737_642, "Fri, 03 May 2024 12:00:42 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (1_136_214_245, "Mon, 02 Jan 2006 15:04:05 GMT"),
        ] {
            assert_eq!(http_date(at(t, 0)), want, "t = {t}");
            assert_eq!(parse_http_date(want), Some(t as i64), "{want}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(at(1_714_737_642, 7)), "2024-05-03T12:00:42.007Z");
        // Leap day and the day after, end of a century leap year.
        assert_eq!(rfc3339_millis(at(951_782_400, 0)), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_millis(at(951_868_800 - 1, 999)), "2000-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_millis(at(978_307_200 - 1, 0)), "2000-12-31T23:59:59.000Z");
        assert_eq!(rfc3339_millis(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn calendar_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(1900, 2, 29), None);
    }

    #[test]
    fn http_dates() {
        let t = 1_714_737_642;
        for ok in [
            "Fri, 03 May 2024 12:00:42 GMT",
            "fri, 03 may 2024 12:00:42 gmt",
            "Fri, 3 May 2024 12:00:42 UTC",
            "Fri, 03 May 2024 14:00:42 +0200",
            "Fri, 03 May 2024 07:00:42 -0500",
            "Friday, 03-May-24 12:00:42 GMT",
            "Fri May  3 12:00:42 2024",
            "  Fri, 03 May 2024 12:00:42 GMT\t",
        ] {
            assert_eq!(parse_http_date(ok), Some(t), "{ok}");
        }
        assert_eq!(parse_http_date("Fri, 03 May 2024 12:00:60 GMT"), Some(t + 17));
        for bad in [
            "",
            "Fri, 03 May 2024 12:00:42",
            "Fri, 03 May 2024 12:00:42 EST",
            "Fri, 32 May 2024 12:00:42 GMT",
            "Fri, 29 Feb 2023 12:00:42 GMT",
            "Fri, 03 May 2024 24:00:00 GMT",
            "Frx, 03 May 2024 12:00:42 GMT",
            "Fri, 03 May 2024 12:00:42 +02",
            "Fri, 03 Mai 2024 12:00:42 GMT",
            "1714737642",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates_table() {
        // Expected values from `date -u -d "<date>" +%s` (GNU coreutils).
        let table: &[(&str, Option<i64>)] = &[
            ("Fri, 03 May 2024 12:00:42 GMT", Some(1_714_737_642)),
            ("Fri, 3 May 2024 12:00:42 GMT", Some(1_714_737_642)),
            ("fri, 03 may 2024 12:00:42 gmt", Some(1_714_737_642)),
            ("Fri, 03 May 2024 12:00:42 UTC", Some(1_714_737_642)),
            ("Fri, 03 May 2024 14:00:42 +0200", Some(1_714_737_642)),
            ("Fri, 03 May 2024 07:30:42 -0430", Some(1_714_737_642)),
            ("  Fri, 03 May 2024 12:00:42 GMT\t", Some(1_714_737_642)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
            ("Sun Nov  6 08:49:37 1994", Some(784_111_777)),
            ("Tue, 29 Feb 2000 23:59:59 GMT", Some(951_868_799)),
            ("Mon, 01 Mar 2100 00:00:00 GMT", Some(4_107_542_400)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Wed, 31 Dec 1969 23:59:59 GMT", Some(-1)),
            ("Fri, 03 May 2024 12:00:60 GMT", Some(1_714_737_659)),
            ("", None),
            ("1714737642", None),
            ("2024-05-03T12:00:42Z", None),
            ("Fri, 03 May 2024 12:00:42", None),
            ("Fri, 03 May 2024 12:00:42 GMT extra", None),
            ("Fri,  03 May 2024 12:00:42 GMT", None),
            ("Fri 03 May 2024 12:00:42 GMT", None),
            ("Frx, 03 May 2024 12:00:42 GMT", None),
            ("Fri, 32 May 2024 12:00:42 GMT", None),
            ("Fri, 00 May 2024 12:00:42 GMT", None),
            ("Thu, 29 Feb 2001 12:00:42 GMT", None),
            ("Mon, 29 Feb 2100 00:00:00 GMT", None),
            ("Fri, 03 Mai 2024 12:00:42 GMT", None),
            ("Fri, 03 May 24 12:00:42 GMT", None),
            ("Fri, 03 May 2024 24:00:00 GMT", None),
            ("Fri, 03 May 2024 12:60:00 GMT", None),
            ("Fri, 03 May 2024 12:00:61 GMT", None),
            ("Fri, 03 May 2024 12:0:42 GMT", None),
            ("Fri, 03 May 2024 12:00:42:00 GMT", None),
            ("Fri, 03 May 2024 +1:00:42 GMT", None),
            ("Fri, 03 May 2024 12:00:42 PST", None),
            ("Fri, 03 May 2024 12:00:42 +2400", None),
            ("Fri, 03 May 2024 12:00:42 +02", None),
            ("Fri, 03 May 2024 12:00:42 GMT\0", None),
            ("Fri, 03 Мау 2024 12:00:42 GMT", None),
            ("Sunday, 06-Nov-1994 08:49:37 GMT", None),
            ("Sunday, 06-Nov-94 08:49:37 UTC", None),
            ("Sun Nov 6 08:49:37", None),
        ];
        for (input, want) in table {
            assert_eq!(parse_http_date(input), *want, "{input:?}");
        }
        assert_eq!(parse_http_date(&"Fri, 03 May 2024 12:00:42 GMT ".repeat(10_000)), None);
    }

    #[test]
    fn go_layout_zones() {
        let t = 1_714_737_642;
        let go = |s| parse_http_date_with(s, Zones::GoLayouts);
        assert_eq!(go("Fri, 03 May 2024 12:00:42 EST"), Some(t), "an unknown abbreviation is offset 0");
        assert_eq!(go("Fri, 03 May 2024 14:00:42 +02"), Some(t));
        assert_eq!(go("Fri, 03 May 2024 14:00:42 +0200"), Some(t));
        assert_eq!(go("Fri, 03 May 2024 12:00:42 est"), None);
        assert_eq!(go("Fri, 03 May 2024 12:00:42 E"), None);
    }
}
