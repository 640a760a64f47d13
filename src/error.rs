//! Result codes of the C ABI and the error types behind them. The `COPROCESS_*` constants are
//! the one definition of the codes: include/api.h carries them as `#define`s and every host
//! (the Go binding through cgo, the gRPC server through [`Code`]) uses them from there.

use std::ffi::c_int;
use std::fmt;

/// Success.
pub const COPROCESS_OK: c_int = 0;
/// A null pointer or a negative length was passed.
pub const COPROCESS_ERR_NULL: c_int = -1;
/// The bytes are not a valid Object, or not valid event JSON.
pub const COPROCESS_ERR_INVALID: c_int = -2;
/// No middleware or event handler is registered under that name, or not for that hook type.
pub const COPROCESS_ERR_NOT_FOUND: c_int = -3;
/// The middleware or event handler returned an error or panicked.
pub const COPROCESS_ERR_MIDDLEWARE: c_int = -4;
/// Invalid configuration (global file, config_data, or a section of either).
pub const COPROCESS_ERR_CONFIG: c_int = -5;

/// A failure code returned by an export. Success is 0 ([`COPROCESS_OK`]); every failure is
/// negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    /// A null pointer or a negative length was passed.
    NullPointer = COPROCESS_ERR_NULL,
    /// The bytes are not a valid `coprocess.Object`, or not valid event JSON.
    InvalidInput = COPROCESS_ERR_INVALID,
    /// No middleware or event handler is registered under that name, or not for that hook type.
    NotFound = COPROCESS_ERR_NOT_FOUND,
    /// The middleware (or event handler) returned an error or panicked.
    Middleware = COPROCESS_ERR_MIDDLEWARE,
    /// The configuration (global file, `config_data`, or a section of either) is invalid.
    Config = COPROCESS_ERR_CONFIG,
}

impl Code {
    /// Every failure code.
    pub const ALL: [Code; 5] = [Code::NullPointer, Code::InvalidInput, Code::NotFound, Code::Middleware, Code::Config];

    /// The integer the C ABI returns for this code.
    pub fn as_int(self) -> i32 {
        self as i32
    }

    /// The code an export returned, if it is one of the failure codes.
    pub fn from_int(code: i32) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_int() == code)
    }

    /// The header's name of the code (`COPROCESS_ERR_NULL`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Code::NullPointer => "COPROCESS_ERR_NULL",
            Code::InvalidInput => "COPROCESS_ERR_INVALID",
            Code::NotFound => "COPROCESS_ERR_NOT_FOUND",
            Code::Middleware => "COPROCESS_ERR_MIDDLEWARE",
            Code::Config => "COPROCESS_ERR_CONFIG",
        }
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
        for (code, value) in Code::ALL.into_iter().zip((1..).map(|n: i32| -n)) {
            assert_eq!(code.as_int(), value, "{code:?}");
            assert_eq!(Code::from_int(value), Some(code));
        }
        assert_eq!(Code::from_int(COPROCESS_OK), None);
        assert_eq!(Code::Config.name(), "COPROCESS_ERR_CONFIG");
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
