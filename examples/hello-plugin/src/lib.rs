//! The gateway's plugin tutorials as native middleware: a Pre hook that injects a header and
//! a CustomKeyCheck hook that authenticates a fixed token. Built as `libhello_plugin.so`, it
//! exports the same C ABI as `libcoprocess.so`, with these two beside the built-ins.
//!
//! API definition: `"custom_middleware": {"driver": "native", "pre": [{"name": "AddHeader"}],
//! "auth_check": {"name": "TokenCheck"}}` and, in `config_data`,
//! `{"AddHeader": {"name": "X-Hello", "value": "world"}, "TokenCheck": {"token": "...", "rate": 100, "per": 1}}`.

use coprocess::{ConfigError, Context, HookType, Middleware, MiddlewareError, Registry, SessionState, Setup};

/// Pre hook: adds one configured header to the request going upstream.
pub struct AddHeader {
    name: String,
    value: String,
}

/// Configuration of [`AddHeader`].
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddHeaderConfig {
    /// Header name (default `X-Hello`).
    pub name: Option<String>,
    /// Header value (default `world`).
    pub value: Option<String>,
}

impl Middleware for AddHeader {
    const NAME: &'static str = "AddHeader";
    const HOOKS: &'static [HookType] = &[HookType::Pre, HookType::Post];
    type Config = AddHeaderConfig;

    fn new(config: AddHeaderConfig, _setup: &Setup<'_>) -> Result<Self, ConfigError> {
        let name = config.name.unwrap_or_else(|| "X-Hello".into());
        if name.is_empty() || name.contains([' ', ':', '\r', '\n']) {
            return Err(ConfigError::new("name must be a header name"));
        }
        Ok(AddHeader { name, value: config.value.unwrap_or_else(|| "world".into()) })
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        ctx.set_header(self.name.as_str(), self.value.as_str());
        Ok(())
    }
}

/// CustomKeyCheck: the `Authorization` header must equal the configured token; then the
/// request gets a session with the configured rate limit and `metadata["token"]`. Anything
/// else leaves no session, and the gateway answers 403.
pub struct TokenCheck {
    token: String,
    rate: f64,
    per: f64,
}

/// Configuration of [`TokenCheck`].
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenCheckConfig {
    /// The accepted token (required).
    pub token: String,
    /// Requests allowed per `per` seconds (default 1000).
    pub rate: Option<f64>,
    /// The rate window in seconds (default 60).
    pub per: Option<f64>,
}

impl Middleware for TokenCheck {
    const NAME: &'static str = "TokenCheck";
    const HOOKS: &'static [HookType] = &[HookType::CustomKeyCheck];
    type Config = TokenCheckConfig;

    fn new(config: TokenCheckConfig, _setup: &Setup<'_>) -> Result<Self, ConfigError> {
        if config.token.is_empty() {
            return Err(ConfigError::new("token is required"));
        }
        Ok(TokenCheck { token: config.token, rate: config.rate.unwrap_or(1000.0), per: config.per.unwrap_or(60.0) })
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        if ctx.header("Authorization") == Some(self.token.as_str()) {
            let session = SessionState { rate: self.rate, per: self.per, quota_max: -1, ..Default::default() };
            ctx.authenticate(session, self.token.as_str());
        }
        Ok(())
    }
}

/// Everything this plugin library offers: the built-ins plus the two tutorials.
pub fn register(r: &mut Registry) {
    coprocess::builtins::register(r);
    r.middleware::<AddHeader>().middleware::<TokenCheck>();
}

coprocess::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess::testing::{run, set_header, ObjectBuilder};
    use coprocess::{Code, FakeHost};

    #[test]
    fn add_header_sets_the_configured_header() {
        let host = FakeHost::new();
        let obj = ObjectBuilder::new(HookType::Pre, "AddHeader").build();
        let out = run::<AddHeader>(r#"{"name": "X-Team", "value": "blue"}"#, &obj, &host).unwrap();
        assert_eq!(set_header(&out, "X-Team"), Some("blue"));
        let out = run::<AddHeader>("{}", &obj, &host).unwrap();
        assert_eq!(set_header(&out, "X-Hello"), Some("world"));
        assert_eq!(run::<AddHeader>(r#"{"name": "Bad Name"}"#, &obj, &host).unwrap_err().code, Code::Config);
    }

    #[test]
    fn token_check_authenticates_only_the_token() {
        let host = FakeHost::new();
        let cfg = r#"{"token": "47a0c79c427728b3df4af62b9228c8ae", "rate": 5, "per": 1}"#;
        let good = ObjectBuilder::new(HookType::CustomKeyCheck, "TokenCheck")
            .header("Authorization", "47a0c79c427728b3df4af62b9228c8ae")
            .build();
        let out = run::<TokenCheck>(cfg, &good, &host).unwrap();
        let session = out.session.expect("session");
        assert_eq!((session.rate, session.per), (5.0, 1.0));
        assert_eq!(out.metadata["token"], "47a0c79c427728b3df4af62b9228c8ae");

        let bad = ObjectBuilder::new(HookType::CustomKeyCheck, "TokenCheck").header("Authorization", "nope").build();
        let out = run::<TokenCheck>(cfg, &bad, &host).unwrap();
        assert!(out.session.is_none() && !out.metadata.contains_key("token"));
        assert_eq!(run::<TokenCheck>("{}", &good, &host).unwrap_err().code, Code::Config, "token is required");
        let pre = ObjectBuilder::new(HookType::Pre, "TokenCheck").build();
        assert_eq!(run::<TokenCheck>(cfg, &pre, &host).unwrap_err().code, Code::NotFound);
    }
}
