//! `InjectHeaders`: add and remove request headers (request hooks) or response headers
//! (Response hooks) from configuration.
//!
//! Config: `{"add": {"Header-Name": "value"}, "remove": ["Header-Name"]}`.
//! On request hooks only `set_headers`/`delete_headers` are written (`headers` is the
//! gateway's read-only copy); the gateway applies deletions first, so a header both removed
//! and added ends up with the added value. On Response hooks the response headers are edited
//! through the context (matched case-insensitively), which keeps `headers` and
//! `multivalue_headers` consistent, so the gateway sends exactly the edited set.

use crate::proto::HookType;
use crate::{Blocking, ConfigError, Context, Middleware, MiddlewareError, Setup};
use std::collections::BTreeMap;

/// Configuration of [`InjectHeaders`].
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectHeadersConfig {
    /// Headers to set, by name.
    pub add: BTreeMap<String, String>,
    /// Header names to remove.
    pub remove: Vec<String>,
}

/// The `InjectHeaders` middleware.
#[derive(Debug)]
pub struct InjectHeaders {
    config: InjectHeadersConfig,
}

impl Middleware for InjectHeaders {
    const NAME: &'static str = "InjectHeaders";
    const HOOKS: &'static [HookType] =
        &[HookType::Pre, HookType::Post, HookType::PostKeyAuth, HookType::CustomKeyCheck, HookType::Response];
    type Config = InjectHeadersConfig;

    fn new(config: InjectHeadersConfig, _setup: &Setup<'_>) -> Result<Self, ConfigError> {
        for name in config.add.keys().chain(&config.remove) {
            if !super::is_header_name(name) {
                return Err(ConfigError::new(format!("{name:?} is not a valid header name")));
            }
        }
        if let Some((name, _)) = config.add.iter().find(|(_, v)| v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0))
        {
            return Err(ConfigError::new(format!("the value of header {name:?} contains CR, LF or NUL")));
        }
        Ok(InjectHeaders { config })
    }

    fn blocking(&self) -> Blocking {
        Blocking::Never
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        if ctx.hook_type() == HookType::Response {
            for name in &self.config.remove {
                ctx.delete_response_header(name);
            }
            for (name, value) in &self.config.add {
                ctx.set_response_header(name, value);
            }
            return Ok(());
        }
        for name in &self.config.remove {
            ctx.delete_header(name.as_str());
        }
        for (name, value) in &self.config.add {
            ctx.set_header(name.as_str(), value.as_str());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Header, MiniRequestObject, Object, ResponseObject};
    use crate::FakeHost;

    fn instance(json: &str) -> Result<InjectHeaders, ConfigError> {
        let host = FakeHost::new();
        let config: InjectHeadersConfig =
            serde_json::from_str(json).map_err(|e| ConfigError::from_serde("InjectHeaders", &e))?;
        InjectHeaders::new(config, &Setup { section: "InjectHeaders", host: &host })
    }

    const CONFIG_REQUEST: &str = r#"{"add": {"X-Added": "1"}, "remove": ["X-Gone"]}"#;
    const CONFIG_RESPONSE: &str = r#"{"add": {"X-Frame-Options": "DENY"}, "remove": ["server"]}"#;

    #[test]
    fn request_hooks_write_set_and_delete_headers_only() {
        let mut req = MiniRequestObject::default();
        req.headers.insert("X-Gone".into(), "old".into());
        let obj = Object { hook_type: HookType::Pre as i32, request: Some(req), ..Default::default() };
        let host = FakeHost::new();
        let out = crate::testing::run::<InjectHeaders>(CONFIG_REQUEST, &obj, &host).unwrap();
        let req = out.request.unwrap();
        assert_eq!(req.set_headers["X-Added"], "1");
        assert_eq!(req.delete_headers, vec!["X-Gone"]);
        assert_eq!(req.headers["X-Gone"], "old", "headers is the gateway's read-only copy");
    }

    #[test]
    fn response_hooks_keep_multivalue_consistent() {
        let mut resp = ResponseObject { status_code: 200, ..Default::default() };
        resp.headers.insert("Server".into(), "nginx".into());
        resp.headers.insert("x-frame-options".into(), "ALLOW".into());
        resp.multivalue_headers.push(Header { key: "Server".into(), values: vec!["nginx".into()] });
        resp.multivalue_headers.push(Header { key: "Set-Cookie".into(), values: vec!["a=1".into(), "b=2".into()] });
        let obj = Object { hook_type: HookType::Response as i32, response: Some(resp), ..Default::default() };
        let host = FakeHost::new();
        let resp = crate::testing::run::<InjectHeaders>(CONFIG_RESPONSE, &obj, &host).unwrap().response.unwrap();
        assert_eq!(resp.headers.len(), 1);
        assert_eq!(resp.headers["X-Frame-Options"], "DENY");
        let keys: Vec<_> = resp.multivalue_headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, vec!["Set-Cookie", "X-Frame-Options"]);
    }

    #[test]
    fn bad_config_is_refused() {
        assert!(instance(r#"{"add": {"Bad Name": "1"}}"#).is_err());
        assert!(instance(r#"{"add": {"X": "a\r\nInjected: 1"}}"#).is_err());
        assert!(instance(r#"{"unknown": 1}"#).unwrap_err().0.contains("unknown field"));
    }
}
