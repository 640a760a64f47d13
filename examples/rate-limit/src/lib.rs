//! Per-key rate limiting shared by every gateway node: a fixed-window counter per client key
//! kept in the gateway's key-value store (`TykGetData`/`TykStoreData`, e.g. Redis), so all
//! nodes sharing the store count together. Built as `librate_limit_plugin.so` with only this
//! middleware (no built-ins).
//!
//! Config: `{"limit": 100, "window_secs": 60, "key_header": "Authorization", "prefix": "rl-"}`.
//! The store key is `prefix + hex(sha256(key)) + ":" + window number`, so raw credentials never
//! become store keys. Over the limit the request is answered 429 with `Retry-After`.
//! The read-then-write on the store is not atomic: two nodes racing on the same key in the
//! same instant can both admit one request over the limit (the gateway's store API has no
//! increment). A counter value that is not a number is a middleware failure (-4): the store
//! is shared, so silently resetting it would let a corrupted entry disable the limit.

use coprocess::{ConfigError, Context, HookType, Middleware, MiddlewareError, Registry, Setup};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Configuration of [`RateLimit`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests allowed per window per key.
    pub limit: u64,
    /// Window length in seconds.
    pub window_secs: u64,
    /// The request header identifying the client.
    pub key_header: String,
    /// Store key prefix.
    pub prefix: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { limit: 100, window_secs: 60, key_header: "Authorization".into(), prefix: "rl-".into() }
    }
}

/// The `RateLimit` middleware (Pre, PostKeyAuth).
pub struct RateLimit {
    config: RateLimitConfig,
}

impl Middleware for RateLimit {
    const NAME: &'static str = "RateLimit";
    const HOOKS: &'static [HookType] = &[HookType::Pre, HookType::PostKeyAuth];
    type Config = RateLimitConfig;

    fn new(config: RateLimitConfig, _setup: &Setup<'_>) -> Result<Self, ConfigError> {
        if config.limit == 0 || config.window_secs == 0 {
            return Err(ConfigError::new("limit and window_secs must be positive"));
        }
        if config.window_secs > i32::MAX as u64 {
            return Err(ConfigError::new("window_secs is too large"));
        }
        Ok(RateLimit { config })
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        let Some(client) = ctx.header(&self.config.key_header).filter(|v| !v.is_empty()) else {
            ctx.reject(401, format!("{} header required", self.config.key_header));
            return Ok(());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| MiddlewareError::new("clock before 1970"))?
            .as_secs();
        let window = now / self.config.window_secs;
        let digest = Sha256::digest(client.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let key = format!("{}{}:{}", self.config.prefix, hex, window);
        let used = match ctx.store().get(&key) {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| MiddlewareError::new(format!("rate-limit counter {key} is not a number")))?,
        };
        let reset_in = self.config.window_secs - now % self.config.window_secs;
        if used >= self.config.limit {
            let headers = vec![
                ("Retry-After".to_string(), reset_in.to_string()),
                ("X-RateLimit-Limit".to_string(), self.config.limit.to_string()),
                ("X-RateLimit-Remaining".to_string(), "0".to_string()),
            ];
            ctx.reject_with_headers(429, "Rate limit exceeded", headers);
            return Ok(());
        }
        ctx.store().set(&key, &(used + 1).to_string(), reset_in as i64);
        ctx.set_header("X-RateLimit-Remaining", (self.config.limit - used - 1).to_string());
        Ok(())
    }
}

/// This plugin library offers only `RateLimit`.
pub fn register(r: &mut Registry) {
    r.middleware::<RateLimit>();
}

coprocess::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess::testing::{overrides, run, set_header, ObjectBuilder};
    use coprocess::{Code, FakeHost};

    const CFG: &str = r#"{"limit": 3, "window_secs": 3600, "key_header": "X-Client"}"#;

    fn request(client: &str) -> coprocess::Object {
        ObjectBuilder::new(HookType::Pre, "RateLimit").header("X-Client", client).build()
    }

    #[test]
    fn admits_the_limit_then_answers_429() {
        let host = FakeHost::new();
        for remaining in ["2", "1", "0"] {
            let out = run::<RateLimit>(CFG, &request("alice"), &host).unwrap();
            assert_eq!(overrides(&out).0, -1, "admitted");
            assert_eq!(set_header(&out, "X-RateLimit-Remaining"), Some(remaining));
        }
        let out = run::<RateLimit>(CFG, &request("alice"), &host).unwrap();
        assert_eq!(overrides(&out), (429, "Rate limit exceeded"));
        let ro = out.request.unwrap().return_overrides.unwrap();
        assert!(ro.headers["Retry-After"].parse::<u64>().unwrap() <= 3600);
        // Another client has its own counter.
        assert_eq!(overrides(&run::<RateLimit>(CFG, &request("bob"), &host).unwrap()).0, -1);
    }

    #[test]
    fn counters_live_in_the_shared_store_under_hashed_keys() {
        let host = FakeHost::new();
        run::<RateLimit>(CFG, &request("secret-token"), &host).unwrap();
        let stores = host.stores.lock();
        assert_eq!(stores.len(), 1);
        let (key, value, ttl) = &stores[0];
        assert!(key.starts_with("rl-") && !key.contains("secret-token"), "{key}");
        assert_eq!(value, "1");
        assert!(*ttl > 0 && *ttl <= 3600);
    }

    #[test]
    fn a_second_node_sharing_the_store_sees_the_count() {
        let host = FakeHost::new();
        run::<RateLimit>(CFG, &request("carol"), &host).unwrap();
        let key = host.stores.lock()[0].0.clone();
        host.store.set(&key, "3", 60); // what other nodes wrote meanwhile
        assert_eq!(overrides(&run::<RateLimit>(CFG, &request("carol"), &host).unwrap()).0, 429);
    }

    #[test]
    fn missing_key_rejects_and_corrupt_counter_fails() {
        let host = FakeHost::new();
        let out = run::<RateLimit>(CFG, &ObjectBuilder::new(HookType::Pre, "RateLimit").build(), &host).unwrap();
        assert_eq!(overrides(&out).0, 401);
        run::<RateLimit>(CFG, &request("dave"), &host).unwrap();
        let key = host.stores.lock()[0].0.clone();
        host.store.set(&key, "lots", 60);
        assert_eq!(run::<RateLimit>(CFG, &request("dave"), &host).unwrap_err().code, Code::Middleware);
        assert_eq!(run::<RateLimit>(r#"{"limit": 0}"#, &request("x"), &host).unwrap_err().code, Code::Config);
    }
}
