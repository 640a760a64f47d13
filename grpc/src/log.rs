//! Structured logging: one JSON object per line on stderr.
//!
//! `{"time":"2024-05-03T12:00:42.123Z","level":"info","source":"server","msg":"...",...}`:
//! `time` is UTC with milliseconds, `level` one of debug|info|warning|error (the library's
//! levels), `source` is `server` for the server's own lines and `middleware` for lines the
//! middleware writes through the host's `log`; extra fields follow. Each line is written with
//! one `write` call under the stderr lock, so concurrent lines never interleave.

use coprocess::LogLevel;
use parking_lot::Mutex;
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Writes JSON lines to stderr at or above a minimum level.
#[derive(Debug, Clone)]
pub struct Logger {
    min: LogLevel,
}

impl Logger {
    /// A logger that drops lines below `min`.
    pub fn new(min: LogLevel) -> Self {
        Logger { min }
    }

    /// Whether lines at `level` are written.
    pub fn enabled(&self, level: LogLevel) -> bool {
        level >= self.min
    }

    /// Write one line (when `level` is enabled).
    pub fn log(&self, level: LogLevel, source: &str, msg: &str, fields: &[(&str, Value)]) {
        if !self.enabled(level) {
            return;
        }
        let mut line = format_line(SystemTime::now(), level, source, msg, fields);
        line.push('\n');
        let stderr = std::io::stderr();
        let mut lock = stderr.lock();
        // Nowhere to report a failed write to stderr.
        let _ = lock.write_all(line.as_bytes());
        let _ = lock.flush();
    }

    /// A server line at level info.
    pub fn info(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Info, "server", msg, fields);
    }

    /// A server line at level warning.
    pub fn warn(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Warning, "server", msg, fields);
    }

    /// A server line at level error.
    pub fn error(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Error, "server", msg, fields);
    }
}

/// One kind of repeated error, written at most once per interval: the first occurrence is
/// written at once, later ones within the interval are counted, and the next line written
/// carries that count as `suppressed` (so an outage of any length costs a line per interval).
#[derive(Debug)]
pub struct RateLimited {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        RateLimited { interval, state: Mutex::new((None, 0)) }
    }

    /// Write the line now if the interval has passed since the last one, otherwise count it.
    pub fn log(&self, logger: &Logger, level: LogLevel, msg: &str, fields: &[(&str, Value)]) {
        if !logger.enabled(level) {
            return;
        }
        let suppressed = {
            let mut state = self.state.lock();
            let now = Instant::now();
            match state.0 {
                Some(last) if now.duration_since(last) < self.interval => {
                    state.1 += 1;
                    return;
                }
                _ => {
                    *state = (Some(now), 0);
                }
            }
            std::mem::take(&mut state.1)
        };
        self.write(logger, level, msg, fields, suppressed);
    }

    /// The count of lines suppressed since the last one written, reset to zero.
    pub fn take_suppressed(&self) -> u64 {
        std::mem::take(&mut self.state.lock().1)
    }

    fn write(&self, logger: &Logger, level: LogLevel, msg: &str, fields: &[(&str, Value)], suppressed: u64) {
        let mut all: Vec<(&str, Value)> = fields.to_vec();
        all.push(("suppressed", Value::from(suppressed)));
        logger.log(level, "server", msg, &all);
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// One log line without the newline.
pub fn format_line(at: SystemTime, level: LogLevel, source: &str, msg: &str, fields: &[(&str, Value)]) -> String {
    let mut line = format!(
        "{{\"time\":{},\"level\":{},\"source\":{},\"msg\":{}",
        json_str(&rfc3339_millis(at)),
        json_str(level.as_str()),
        json_str(source),
        json_str(msg)
    );
    for (k, v) in fields {
        if matches!(*k, "time" | "level" | "source" | "msg") {
            continue;
        }
        line.push(',');
        line.push_str(&json_str(k));
        line.push(':');
        line.push_str(&v.to_string());
    }
    line.push('}');
    line
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) for a time at or after the Unix epoch.
pub fn rfc3339_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01, computed
/// over 400-year eras (146097 days each) counted from 0000-03-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // month counted from March
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
        assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // The SPEC's HMAC vector date: Fri, 03 May 2024 12:00:42 GMT.
        assert_eq!(rfc3339_millis(at(1_714_737_642, 7)), "2024-05-03T12:00:42.007Z");
        // Leap day and the day after, end of a century leap year.
        assert_eq!(rfc3339_millis(at(951_782_400, 0)), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_millis(at(951_868_800 - 1, 999)), "2000-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_millis(at(978_307_200 - 1, 0)), "2000-12-31T23:59:59.000Z");
        assert_eq!(rfc3339_millis(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn lines_are_one_json_object() {
        let line = format_line(
            UNIX_EPOCH,
            LogLevel::Warning,
            "middleware",
            "quote \" newline \n tab \t",
            &[("code", Value::from(-4)), ("msg", Value::from("shadowed"))],
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "warning");
        assert_eq!(v["source"], "middleware");
        assert_eq!(v["msg"], "quote \" newline \n tab \t");
        assert_eq!(v["code"], -4);
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert!(line.starts_with("{\"time\":"), "{line}");
    }

    #[test]
    fn rate_limited_lines_count_what_they_suppress() {
        let logger = Logger::new(LogLevel::Debug);
        let limited = RateLimited::new(Duration::from_millis(200));
        let mut written = 0;
        let started = Instant::now();
        for _ in 0..1000 {
            // Only the state matters here; the lines go to the test's stderr.
            let before = limited.state.lock().0;
            limited.log(&logger, LogLevel::Debug, "test line", &[]);
            if limited.state.lock().0 != before {
                written += 1;
            }
        }
        let elapsed = started.elapsed();
        assert!(written <= 1 + elapsed.as_millis() as usize / 200, "{written} lines in {elapsed:?}");
        assert_eq!(limited.take_suppressed() + written as u64, 1000);
        std::thread::sleep(Duration::from_millis(210));
        let before = limited.state.lock().0;
        limited.log(&logger, LogLevel::Debug, "after the interval", &[]);
        assert_ne!(limited.state.lock().0, before, "written once the interval has passed");
    }

    #[test]
    fn levels_filter() {
        let l = Logger::new(LogLevel::Warning);
        assert!(!l.enabled(LogLevel::Info));
        assert!(l.enabled(LogLevel::Warning));
        assert!(l.enabled(LogLevel::Error));
    }
}
