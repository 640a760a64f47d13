//! Configuration: the global JSON file named by `COPROCESS_CONFIG` and the per-API
//! `config_data` the gateway sends in `spec`.
//!
//! Both are JSON objects with one section per middleware (`Name` or `Name:instance`) or event
//! handler. For a hook `Name:instance` the first section found is used whole, no merging:
//! per-API `Name:instance`, per-API `Name`, global `Name:instance`, global `Name`.

use serde_json::{Map, Value};
use std::path::PathBuf;

/// The environment variable naming the global configuration file.
pub const CONFIG_ENV: &str = "COPROCESS_CONFIG";

/// Sections by name.
pub type Sections = Map<String, Value>;

/// Where the global configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// The file named by `COPROCESS_CONFIG`, read anew at every load; unset or empty means no
    /// global file (an empty configuration).
    Env,
    /// A file path (read at every load).
    File(PathBuf),
    /// Fixed sections (tests, embedding).
    Fixed(Sections),
}

impl ConfigSource {
    /// Read and parse the global configuration.
    pub fn load(&self) -> Result<Sections, String> {
        let path = match self {
            ConfigSource::Fixed(s) => return Ok(s.clone()),
            ConfigSource::File(p) => p.clone(),
            ConfigSource::Env => match std::env::var_os(CONFIG_ENV) {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => return Ok(Sections::new()),
            },
        };
        let text =
            std::fs::read(&path).map_err(|e| format!("cannot read configuration file {}: {e}", path.display()))?;
        parse_sections(&text).map_err(|e| format!("configuration file {}: {e}", path.display()))
    }
}

/// Parse a JSON object of sections. Error messages never quote values.
pub fn parse_sections(text: &[u8]) -> Result<Sections, String> {
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {}", crate::error::redact_quoted_values(&e.to_string()))),
    }
}

/// The base middleware name of a hook name: `Name` for `Name:instance`.
pub fn base_name(hook_name: &str) -> &str {
    hook_name.split_once(':').map_or(hook_name, |(base, _)| base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_must_be_an_object() {
        assert!(parse_sections(b"[]").is_err());
        assert!(parse_sections(b"{\"a\":").is_err());
        assert_eq!(parse_sections(b"{\"A\":{}}").unwrap().len(), 1);
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name("Inject:two"), "Inject");
        assert_eq!(base_name("Inject"), "Inject");
        assert_eq!(base_name("A:b:c"), "A");
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = ConfigSource::File("/nonexistent/coprocess.json".into()).load().unwrap_err();
        assert!(e.contains("/nonexistent/coprocess.json"), "{e}");
    }
}
