//! Structured logging: one JSON object per line on stderr.
//!
//! `{"time":"2024-05-03T12:00:42.123Z","level":"info","source":"server","msg":"...",...}`:
//! `time` is UTC with milliseconds, `level` one of debug|info|warning|error (the library's
//! levels), `source` is `server` for the server's own lines and `middleware` for lines the
//! middleware writes through the host's `log`; extra fields follow. Each line is written with
//! one `write` call under the stderr lock, so concurrent lines never interleave.

use coprocess::LogLevel;
use serde_json::Value;
use std::io::Write;
use std::time::SystemTime;

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
    fn levels_filter() {
        let l = Logger::new(LogLevel::Warning);
        assert!(!l.enabled(LogLevel::Info));
        assert!(l.enabled(LogLevel::Warning));
        assert!(l.enabled(LogLevel::Error));
    }
}
