//! Structured logging: one JSON object per line on stderr.
//!
//! `{"time":"2024-05-03T12:00:42.123Z","level":"info","source":"server","msg":"...",...}`:
//! `time` is UTC with milliseconds, `level` one of debug|info|warning|error (the library's
//! levels), `source` is `server` for the server's own lines and `middleware` for lines the
//! middleware writes through the host's `log`; extra fields follow (`trace_id` on every line
//! written while a call with a trace id is dispatched on the thread, see [`crate::trace`]).
//! Each line is written with
//! one `write` call under the stderr lock, so concurrent lines never interleave.

use coprocess::LogLevel;
use parking_lot::Mutex;
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

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
        // A line written while a call is dispatched on this thread carries the call's trace id.
        let traced;
        let fields = match crate::trace::current_trace_id() {
            Some(id) if !fields.iter().any(|(k, _)| *k == "trace_id") => {
                traced = [fields, &[("trace_id", Value::from(id.as_str()))]].concat();
                &traced[..]
            }
            _ => fields,
        };
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

pub use coprocess::calendar::rfc3339_millis;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

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
