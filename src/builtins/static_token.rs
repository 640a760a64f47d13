//! `StaticTokenAuth` (CustomKeyCheck): configured tokens, read from a configured header, map
//! to session templates.
//!
//! Config: `{"header": "Authorization", "strip_prefix": "", "tokens": {"<token>": <session
//! template>}, "reject_code": 0}`. The header value must equal a token exactly after
//! `strip_prefix` is removed (a value without the prefix matches nothing). A match sets the
//! session and `metadata["token"]`. Otherwise, with `reject_code` 0 no session is set and the
//! gateway answers 403; with 401 or 403 the middleware answers that code with body
//! `Key not authorised` (the gateway's own text). `id_extractor_ttl_s` sets the session's
//! `id_extractor_deadline`.

use crate::proto::{HookType, SessionState};
use crate::{Blocking, ConfigError, Context, Middleware, MiddlewareError, SessionTemplate, Setup};
use std::collections::BTreeMap;

/// Configuration of [`StaticTokenAuth`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticTokenAuthConfig {
    /// The header carrying the token.
    pub header: String,
    /// A prefix removed from the header value before matching (e.g. `Bearer `).
    pub strip_prefix: String,
    /// Known tokens and their session templates.
    pub tokens: BTreeMap<String, SessionState>,
    /// 0: leave no session (the gateway answers 403); 401 or 403: answer it.
    pub reject_code: i32,
    /// When > 0, the session's `id_extractor_deadline` is set to now + this many seconds (the
    /// gateway's ID extractor then skips this hook for the token until then); 0 leaves the
    /// template's value.
    pub id_extractor_ttl_s: u64,
}

impl Default for StaticTokenAuthConfig {
    fn default() -> Self {
        StaticTokenAuthConfig {
            header: "Authorization".into(),
            strip_prefix: String::new(),
            tokens: BTreeMap::new(),
            reject_code: 0,
            id_extractor_ttl_s: 0,
        }
    }
}

/// The gateway's text for a rejected key.
pub const KEY_NOT_AUTHORISED: &str = "Key not authorised";

/// The `StaticTokenAuth` middleware.
pub struct StaticTokenAuth {
    header: String,
    strip_prefix: String,
    /// Tokens and their templates, encoded once here.
    tokens: BTreeMap<String, SessionTemplate>,
    reject_code: i32,
    id_extractor_ttl_s: u64,
}

impl Middleware for StaticTokenAuth {
    const NAME: &'static str = "StaticTokenAuth";
    const HOOKS: &'static [HookType] = &[HookType::CustomKeyCheck];
    type Config = StaticTokenAuthConfig;

    fn new(config: StaticTokenAuthConfig, _setup: &Setup<'_>) -> Result<Self, ConfigError> {
        if ![0, 401, 403].contains(&config.reject_code) {
            return Err(ConfigError::new(format!("reject_code must be 0, 401 or 403, not {}", config.reject_code)));
        }
        if config.header.is_empty() {
            return Err(ConfigError::new("header must not be empty"));
        }
        if config.tokens.keys().any(String::is_empty) {
            return Err(ConfigError::new("tokens must not contain an empty token"));
        }
        let tokens = config.tokens.iter().map(|(t, s)| (t.clone(), SessionTemplate::new(s))).collect();
        Ok(StaticTokenAuth {
            header: config.header,
            strip_prefix: config.strip_prefix,
            tokens,
            reject_code: config.reject_code,
            id_extractor_ttl_s: config.id_extractor_ttl_s,
        })
    }

    fn blocking(&self) -> Blocking {
        Blocking::Never
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        let token = ctx.header(&self.header).and_then(|v| v.strip_prefix(self.strip_prefix.as_str()));
        match token.and_then(|t| self.tokens.get_key_value(t)) {
            Some((token, template)) => {
                let mut patch = template.patch();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                if let Some(deadline) = super::id_extractor_deadline(now, self.id_extractor_ttl_s) {
                    patch = patch.id_extractor_deadline(deadline);
                }
                ctx.authenticate_with(patch, token.as_str())
            }
            None if self.reject_code != 0 => ctx.reject(self.reject_code, KEY_NOT_AUTHORISED),
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{MiniRequestObject, Object};
    use crate::FakeHost;

    fn run(config: &str, header: Option<&str>) -> Object {
        let host = FakeHost::new();
        let mut req = MiniRequestObject::default();
        if let Some(h) = header {
            req.headers.insert("X-Api-Key".into(), h.into());
        }
        let obj = Object { hook_type: HookType::CustomKeyCheck as i32, request: Some(req), ..Default::default() };
        crate::testing::run::<StaticTokenAuth>(config, &obj, &host).unwrap()
    }

    const CONFIG: &str = r#"{"header": "x-api-key", "strip_prefix": "Key ", "tokens": {"abc": {"rate": 100, "per": 1, "quota_max": -1, "tags": ["gold"], "access_rights": {"api1": {"api_id": "api1", "versions": ["Default"]}}}}}"#;

    #[test]
    fn known_token_authenticates_with_the_template() {
        let out = run(CONFIG, Some("Key abc"));
        let s = out.session.expect("session set");
        assert_eq!((s.rate, s.per, s.quota_max), (100.0, 1.0, -1));
        assert_eq!(s.tags, vec!["gold"]);
        assert_eq!(s.access_rights["api1"].versions, vec!["Default"]);
        assert_eq!(out.metadata["token"], "abc");
    }

    #[test]
    fn id_extractor_deadline_is_set_when_configured() {
        let config = CONFIG.replacen('{', r#"{"id_extractor_ttl_s": 120, "#, 1);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let deadline = run(&config, Some("Key abc")).session.unwrap().id_extractor_deadline;
        assert!((now + 120..=now + 121).contains(&deadline), "{deadline}");
        assert_eq!(run(CONFIG, Some("Key abc")).session.unwrap().id_extractor_deadline, 0);
    }

    #[test]
    fn unknown_or_unprefixed_tokens_leave_no_session() {
        for h in [Some("Key abd"), Some("abc"), Some("Key abc "), None] {
            let out = run(CONFIG, h);
            assert!(out.session.is_none(), "{h:?}");
            assert!(!out.metadata.contains_key("token"));
        }
    }

    #[test]
    fn reject_code_answers_with_the_gateway_text() {
        let config = CONFIG.replacen('{', r#"{"reject_code": 401, "#, 1);
        let out = run(&config, Some("Key nope"));
        let ro = out.request.unwrap().return_overrides.unwrap();
        assert_eq!((ro.response_code, ro.response_error.as_str()), (401, KEY_NOT_AUTHORISED));
    }

    #[test]
    fn bad_reject_code_and_unknown_template_keys_are_config_errors() {
        let host = FakeHost::new();
        let c: StaticTokenAuthConfig = serde_json::from_str(r#"{"reject_code": 500}"#).unwrap();
        assert!(StaticTokenAuth::new(c, &Setup { section: "S", host: &host }).is_err());
        assert!(serde_json::from_str::<StaticTokenAuthConfig>(r#"{"tokens": {"t": {"rate": 1, "nope": 2}}}"#).is_err());
    }
}
