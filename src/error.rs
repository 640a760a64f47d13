//! Result codes of the C ABI and the error types behind them.

use std::fmt;

/// A failure code returned by an export. Success is 0; every failure is negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    /// A null pointer or a negative length was passed.
    NullPointer = -1,
    /// The bytes are not a valid `coprocess.Object`, or not valid event JSON.
    InvalidInput = -2,
    /// No middleware or event handler is registered under that name, or not for that hook type.
    NotFound = -3,
    /// The middleware (or event handler) returned an error or panicked.
    Middleware = -4,
    /// The configuration (global file, `config_data`, or a section of either) is invalid.
    Config = -5,
}

impl Code {
    /// The integer the C ABI returns for this code.
    pub fn as_int(self) -> i32 {
        self as i32
    }
}

/// An error that crosses the C boundary as a code plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Which negative code the export returns.
    pub code: Code,
    /// The reason, readable through `CoProcessLastError`. Never contains secrets.
    pub message: String,
}

impl Error {
    /// An error with the given code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_int())
    }
}

impl std::error::Error for Error {}

/// A middleware or event handler could not do its work (the export returns -4).
///
/// Rejecting a request is *not* an error: use [`crate::Context::reject`] for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiddlewareError(pub String);

impl MiddlewareError {
    /// A failure with a message. Do not put secrets in it.
    pub fn new(message: impl Into<String>) -> Self {
        MiddlewareError(message.into())
    }
}

impl fmt::Display for MiddlewareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MiddlewareError {}

/// A configuration section is invalid (the export returns -5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl ConfigError {
    /// A configuration error with a message. Do not put secrets in it.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }

    /// Turn a serde error into a configuration error, removing any string value it quotes
    /// (serde echoes the offending value, which could be a secret).
    pub fn from_serde(section: &str, err: &serde_json::Error) -> Self {
        ConfigError(format!("section \"{section}\": {}", redact_quoted_values(&err.to_string())))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Replace every `string "..."` value quoted by a serde message with `string "<redacted>"`.
/// Field names (quoted with backticks by serde) are kept.
pub(crate) fn redact_quoted_values(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len()]);
        rest = &rest[at + MARK.len()..];
        // serde escapes inner quotes with Debug formatting, so find the closing unescaped quote.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        out.push_str("<redacted>");
        match end {
            Some(i) => rest = &rest[i..],
            None => {
                rest = "";
                out.push('"');
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_abi_values() {
        assert_eq!(Code::NullPointer.as_int(), -1);
        assert_eq!(Code::InvalidInput.as_int(), -2);
        assert_eq!(Code::NotFound.as_int(), -3);
        assert_eq!(Code::Middleware.as_int(), -4);
        assert_eq!(Code::Config.as_int(), -5);
    }

    #[test]
    fn serde_messages_lose_string_values() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct C {
            keys: Vec<String>,
        }
        let err = serde_json::from_str::<C>(r#"{"keys": "hunter2 \"quoted\""}"#).unwrap_err();
        let redacted = ConfigError::from_serde("X", &err).0;
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(redacted.contains("<redacted>"), "{redacted}");
        assert!(redacted.contains("section \"X\""), "{redacted}");
    }

    #[test]
    fn redaction_keeps_field_names() {
        assert_eq!(redact_quoted_values("unknown field `secretz`"), "unknown field `secretz`");
        assert_eq!(
            redact_quoted_values("a string \"x\" b string \"y"),
            "a string \"<redacted>\" b string \"<redacted>\""
        );
    }
}
