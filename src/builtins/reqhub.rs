//! `ReqHubMerchant` (Pre, CustomKeyCheck, PostKeyAuth): ReqHub request verification.
//!
//! A ReqHub client signs every request with five headers (`ClientToken`, `ClientKey`,
//! `ClientTimestamp`, `ClientNonce`, `ClientUrl`; see [`client`] for the formula and a helper
//! that produces them). This middleware checks them in one of two modes:
//!
//! - **remote** (the default): it adds the merchant set (`MerchantToken`, `MerchantKey`,
//!   `MerchantTimestamp`, `MerchantNonce`, `MerchantUrl`, signed with the configured merchant
//!   key pair, fresh timestamp and nonce) and POSTs the ten headers to `verify_url`
//!   (ReqHub's `/req` endpoint by default) within `timeout_ms`. Only a 200 passes; its body goes
//!   to `metadata["reqhub"]`. Any other status denies with the `error` field of the verifier's
//!   JSON body (`verification_failed` when it has none). A timeout, connection failure or
//!   unreadable answer is 503 `verification_unavailable` and fires the gateway event
//!   `ReqHubVerificationUnavailable`.
//! - **local**: a configured client table replaces the network call: the client must be known
//!   (`client_not_found`), belong to this API (`product_mismatch`), sign correctly
//!   (`client_signature_invalid`, compared in constant time), send a timestamp within
//!   `window_ms` and a nonce not seen within the window (both `merchant_signature_invalid`).
//!   Nonces live in the host store, so every gateway node sharing it catches replays; one
//!   atomic store-if-absent decides a replay, and a store that does not answer is 503
//!   `verification_unavailable` (fail closed).
//!
//! In both modes missing client headers are `headers_missing` and a `ClientUrl` different from
//! `request_uri` is `url_mismatch`. Denials answer 403 with `response_error` =
//! `<code>: <text>`, which the gateway's error template turns into
//! `{"error": "<code>: <text>"}`. As CustomKeyCheck a pass also sets the session
//! from the `session` template and `metadata["token"]` = `ClientKey`; PostKeyAuth behaves as
//! Pre. docs/builtins/reqhub-merchant.md has the configuration keys and the decisions taken.

#[path = "reqhub_client.rs"]
pub mod client;

use self::client::{SignedHeaders, CLIENT_HEADERS};
use crate::proto::{HookType, SessionState};
use crate::{Blocking, ConfigError, Context, LogLevel, Middleware, MiddlewareError, SessionTemplate, Setup};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// ReqHub's verification endpoint, the default `verify_url`.
pub const DEFAULT_VERIFY_URL: &str = "https://api.reqhub.io/req";
/// The gateway event fired when the verifier cannot be reached in time.
pub const UNAVAILABLE_EVENT: &str = "ReqHubVerificationUnavailable";
/// The metadata key receiving the verification result.
pub const METADATA_KEY: &str = "reqhub";
/// The largest verifier answer read, in bytes.
pub const MAX_VERIFIER_BODY: u64 = 64 * 1024;
/// The largest accepted `timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// The largest accepted `window_ms`: the nonce TTL (seconds) must fit the host store's C int.
pub const MAX_WINDOW_MS: u64 = i32::MAX as u64 * 1000;

/// Where verification happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// POST the ten headers to `verify_url`.
    #[default]
    Remote,
    /// Verify against the configured client table.
    Local,
}

/// One client of the local table.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// The client's private key (the HMAC key part).
    pub private_key: String,
    /// The API (product) id the client is subscribed to.
    pub api: String,
}

impl fmt::Debug for ClientEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEntry").field("private_key", &"<redacted>").field("api", &self.api).finish()
    }
}

/// Configuration of [`ReqHubMerchant`] (docs/builtins/reqhub-merchant.md).
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReqHubMerchantConfig {
    /// `remote` (default) or `local`.
    pub mode: Mode,
    /// The merchant (publisher) public key: `MerchantKey` (remote mode).
    pub public_key: String,
    /// The merchant private key signing `MerchantToken` (remote mode).
    pub private_key: String,
    /// This API's product id: clients of another product are `product_mismatch` (local mode).
    pub api: String,
    /// The verifier (remote mode), default [`DEFAULT_VERIFY_URL`].
    pub verify_url: String,
    /// The whole verification call's time limit (remote mode), 1..=60000.
    pub timeout_ms: u64,
    /// Accepted distance between `ClientTimestamp` and the gateway clock (local mode).
    pub window_ms: u64,
    /// Host store key prefix of seen nonces (local mode).
    pub nonce_prefix: String,
    /// The client table (local mode): public key to private key and API.
    pub clients: BTreeMap<String, ClientEntry>,
    /// The session template set as CustomKeyCheck (default: an empty SessionState).
    pub session: Option<SessionState>,
    /// A request header that carries the verification result to the upstream ("" = none).
    pub result_header: String,
    /// As CustomKeyCheck: when > 0, the session's `id_extractor_deadline` is set to now + this
    /// many seconds; 0 leaves the template's value.
    pub id_extractor_ttl_s: u64,
}

impl Default for ReqHubMerchantConfig {
    fn default() -> Self {
        ReqHubMerchantConfig {
            mode: Mode::Remote,
            public_key: String::new(),
            private_key: String::new(),
            api: String::new(),
            verify_url: DEFAULT_VERIFY_URL.into(),
            timeout_ms: 2000,
            window_ms: 300_000,
            nonce_prefix: "reqhub-nonce-".into(),
            clients: BTreeMap::new(),
            session: None,
            result_header: String::new(),
            id_extractor_ttl_s: 0,
        }
    }
}

impl fmt::Debug for ReqHubMerchantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqHubMerchantConfig")
            .field("mode", &self.mode)
            .field("public_key", &self.public_key)
            .field("private_key", &"<redacted>")
            .field("api", &self.api)
            .field("verify_url", &display_url(&self.verify_url))
            .field("timeout_ms", &self.timeout_ms)
            .field("window_ms", &self.window_ms)
            .field("nonce_prefix", &self.nonce_prefix)
            .field("clients", &self.clients)
            .field("session", &self.session.is_some())
            .field("result_header", &self.result_header)
            .field("id_extractor_ttl_s", &self.id_extractor_ttl_s)
            .finish()
    }
}

/// The ReqHub denial codes, plus this middleware's own two.
pub mod codes {
    /// A client header is missing (or empty, or not printable ASCII).
    pub const HEADERS_MISSING: &str = "headers_missing";
    /// `ClientUrl` differs from the request path.
    pub const URL_MISMATCH: &str = "url_mismatch";
    /// The verifier knows no API for the merchant key.
    pub const API_NOT_FOUND: &str = "api_not_found";
    /// Merchant signature wrong, duplicate request (replayed nonce), or timestamp stale/malformed.
    pub const MERCHANT_SIGNATURE_INVALID: &str = "merchant_signature_invalid";
    /// No client has this `ClientKey`.
    pub const CLIENT_NOT_FOUND: &str = "client_not_found";
    /// The client belongs to another API.
    pub const PRODUCT_MISMATCH: &str = "product_mismatch";
    /// `ClientToken` does not verify.
    pub const CLIENT_SIGNATURE_INVALID: &str = "client_signature_invalid";
    /// A paid API needs an active subscription.
    pub const SUBSCRIPTION_REQUIRED: &str = "subscription_required";
    /// The verifier denied without a usable error code (this middleware's fallback).
    pub const VERIFICATION_FAILED: &str = "verification_failed";
    /// The verifier could not be reached in time (503; this middleware's own code).
    pub const VERIFICATION_UNAVAILABLE: &str = "verification_unavailable";
    /// The eight codes ReqHub documents.
    pub const REQHUB: [&str; 8] = [
        HEADERS_MISSING,
        URL_MISMATCH,
        API_NOT_FOUND,
        MERCHANT_SIGNATURE_INVALID,
        CLIENT_NOT_FOUND,
        PRODUCT_MISMATCH,
        CLIENT_SIGNATURE_INVALID,
        SUBSCRIPTION_REQUIRED,
    ];
}

/// The generic explanation of a denial code (used for verifier answers).
pub fn code_message(code: &str) -> &'static str {
    match code {
        codes::HEADERS_MISSING => "A ReqHub header is missing: send ClientToken, ClientKey, ClientTimestamp, ClientNonce and ClientUrl.",
        codes::URL_MISMATCH => "ClientUrl must equal the requested path (with its query string) exactly.",
        codes::API_NOT_FOUND => "This API's merchant key is not registered with ReqHub.",
        codes::MERCHANT_SIGNATURE_INVALID => {
            "The request could not be verified: it repeats an earlier request, its timestamp is too old, or the merchant signature is wrong."
        }
        codes::CLIENT_NOT_FOUND => "ClientKey does not belong to any ReqHub client of this API.",
        codes::PRODUCT_MISMATCH => "ClientKey belongs to a different API.",
        codes::CLIENT_SIGNATURE_INVALID => {
            "ClientToken does not match: sign the public key with HMAC-SHA256 keyed by privateKey + ClientTimestamp + ClientNonce + ClientUrl, base64-encoded."
        }
        codes::SUBSCRIPTION_REQUIRED => "An active subscription to this API is required.",
        codes::VERIFICATION_UNAVAILABLE => "ReqHub verification is unavailable at the moment; try again later.",
        _ => "ReqHub denied the request.",
    }
}

/// A denial: status, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Denial {
    status: i32,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
}

impl Denial {
    fn new(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Denial { status: 403, code: Cow::Borrowed(code), message: message.into() }
    }

    fn generic(code: &'static str) -> Self {
        Denial::new(code, code_message(code))
    }

    /// The rejection text: `<code>: <message>`. The gateway renders it through its error
    /// template, so the client receives `{"error": "<code>: <message>"}`.
    fn text(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

enum Verdict {
    /// Passed; the verification result for metadata.
    Pass(String),
    Deny(Denial),
}

/// The five client header values of a request.
struct ClientValues<'a> {
    token: &'a str,
    key: &'a str,
    timestamp: &'a str,
    nonce: &'a str,
    url: &'a str,
}

fn read_client_headers<'a>(ctx: &Context<'a>) -> Result<ClientValues<'a>, Denial> {
    let values = CLIENT_HEADERS.map(|name| ctx.header(name).filter(|v| !v.is_empty()));
    let missing: Vec<&str> = CLIENT_HEADERS.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(n, _)| *n).collect();
    if !missing.is_empty() {
        return Err(Denial::new(
            codes::HEADERS_MISSING,
            format!(
                "Missing ReqHub header{}: {}. Send ClientToken, ClientKey, ClientTimestamp, ClientNonce and ClientUrl.",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", ")
            ),
        ));
    }
    let malformed: Vec<&str> = CLIENT_HEADERS
        .iter()
        .zip(&values)
        .filter(|(_, v)| !v.is_some_and(is_printable_ascii))
        .map(|(n, _)| *n)
        .collect();
    if !malformed.is_empty() {
        return Err(Denial::new(
            codes::HEADERS_MISSING,
            format!(
                "Malformed ReqHub header{}: {} (printable ASCII only).",
                if malformed.len() > 1 { "s" } else { "" },
                malformed.join(", ")
            ),
        ));
    }
    let [token, key, timestamp, nonce, url] = values.map(|v| v.expect("checked above"));
    Ok(ClientValues { token, key, timestamp, nonce, url })
}

fn is_printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// `ClientTimestamp` as milliseconds: exactly 13 ASCII digits.
pub fn parse_timestamp(text: &str) -> Option<u64> {
    (text.len() == 13 && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

/// Whether `nonce` is the base64 of exactly 20 bytes.
pub fn is_valid_nonce(nonce: &str) -> bool {
    nonce.len() == 28 && STANDARD.decode(nonce).is_ok_and(|b| b.len() == client::NONCE_BYTES)
}

/// The TTL, in whole seconds, of a nonce seen at `now_ms` with timestamp `ts_ms`: the window
/// rounded up, extended by how far the timestamp lies ahead of the gateway clock, so the nonce
/// is remembered for as long as its timestamp is accepted. At least 1 (0 would mean "forever").
pub fn nonce_ttl(window_ms: u64, ts_ms: u64, now_ms: u64) -> i64 {
    let keep_ms = window_ms.saturating_add(ts_ms.saturating_sub(now_ms));
    let secs = keep_ms.div_ceil(1000).max(1);
    i64::try_from(secs).unwrap_or(i64::MAX).min(i64::from(i32::MAX))
}

/// A URL without userinfo and query, for logs and events.
fn display_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or("");
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => no_query.to_owned(),
    }
}

/// The remote verifier.
struct Remote {
    agent: ureq::Agent,
    url: String,
    display_url: String,
    timeout_ms: u64,
}

fn check_verify_url(url: &str) -> Result<(), ConfigError> {
    let uri: ureq::http::Uri = url.parse().map_err(|_| ConfigError::new("verify_url is not a valid URL"))?;
    let authority = uri.authority().ok_or_else(|| ConfigError::new("verify_url needs a host"))?;
    if authority.as_str().contains('@') {
        return Err(ConfigError::new("verify_url must not contain credentials"));
    }
    match uri.scheme_str() {
        Some("http") => Ok(()),
        Some("https") if cfg!(feature = "reqhub-tls") => Ok(()),
        Some("https") => Err(ConfigError::new(
            "verify_url is https but this library was built without TLS: build with the cargo feature `reqhub-tls`, or use an http verify_url (e.g. a local ReqHub relay)",
        )),
        _ => Err(ConfigError::new("verify_url must be an http:// or https:// URL")),
    }
}

/// The `ReqHubMerchant` middleware.
pub struct ReqHubMerchant {
    mode: Mode,
    public_key: String,
    private_key: String,
    api: String,
    remote: Option<Remote>,
    window_ms: u64,
    nonce_prefix: String,
    clients: BTreeMap<String, ClientEntry>,
    session: SessionTemplate,
    result_header: Option<String>,
    id_extractor_ttl_s: u64,
}

impl Middleware for ReqHubMerchant {
    const NAME: &'static str = "ReqHubMerchant";
    const HOOKS: &'static [HookType] = &[HookType::Pre, HookType::CustomKeyCheck, HookType::PostKeyAuth];
    type Config = ReqHubMerchantConfig;

    fn new(config: ReqHubMerchantConfig, _setup: &Setup<'_>) -> Result<Self, ConfigError> {
        if !config.result_header.is_empty() && !super::is_header_name(&config.result_header) {
            return Err(ConfigError::new("result_header is not a valid header name"));
        }
        let remote = match config.mode {
            Mode::Remote => {
                if config.public_key.is_empty() || config.private_key.is_empty() {
                    return Err(ConfigError::new("remote mode needs the merchant public_key and private_key"));
                }
                if !is_printable_ascii(&config.public_key) || !is_printable_ascii(&config.private_key) {
                    return Err(ConfigError::new("public_key and private_key must be printable ASCII"));
                }
                if config.timeout_ms == 0 || config.timeout_ms > MAX_TIMEOUT_MS {
                    return Err(ConfigError::new(format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")));
                }
                check_verify_url(&config.verify_url)?;
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .max_redirects_will_error(false)
                    .user_agent(concat!("coprocess-reqhub/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .into();
                Some(Remote {
                    agent,
                    display_url: display_url(&config.verify_url),
                    url: config.verify_url,
                    timeout_ms: config.timeout_ms,
                })
            }
            Mode::Local => {
                if config.api.is_empty() {
                    return Err(ConfigError::new("local mode needs `api`, this API's ReqHub product id"));
                }
                if config.window_ms == 0 || config.window_ms > MAX_WINDOW_MS {
                    return Err(ConfigError::new(format!("window_ms must be between 1 and {MAX_WINDOW_MS}")));
                }
                if let Some(key) = config
                    .clients
                    .iter()
                    .find(|(k, c)| k.is_empty() || c.private_key.is_empty() || c.api.is_empty())
                    .map(|(k, _)| k)
                {
                    return Err(ConfigError::new(format!(
                        "client {key:?}: the public key, private_key and api must not be empty"
                    )));
                }
                None
            }
        };
        Ok(ReqHubMerchant {
            mode: config.mode,
            public_key: config.public_key,
            private_key: config.private_key,
            api: config.api,
            remote,
            window_ms: config.window_ms,
            nonce_prefix: config.nonce_prefix,
            clients: config.clients,
            session: SessionTemplate::new(&config.session.unwrap_or_default()),
            result_header: (!config.result_header.is_empty()).then_some(config.result_header),
            id_extractor_ttl_s: config.id_extractor_ttl_s,
        })
    }

    /// Local mode keeps nonces in the host store; remote mode calls the verifier.
    fn blocking(&self) -> Blocking {
        match self.mode {
            Mode::Local => Blocking::Store,
            Mode::Remote => Blocking::Network,
        }
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        let client = match read_client_headers(ctx) {
            Ok(c) => c,
            Err(denial) => {
                deny(ctx, &denial);
                return Ok(());
            }
        };
        let verdict = if client.url != ctx.request_uri() {
            Verdict::Deny(Denial::new(
                codes::URL_MISMATCH,
                "ClientUrl must equal the requested path (with its query string) exactly as the client sent it.",
            ))
        } else {
            match self.mode {
                Mode::Local => self.verify_local(ctx, &client, client::unix_millis()),
                Mode::Remote => self.verify_remote(ctx, &client)?,
            }
        };
        match verdict {
            Verdict::Pass(result) => {
                if let Some(name) = &self.result_header {
                    ctx.set_header(name.as_str(), header_safe(&result));
                }
                ctx.set_metadata(METADATA_KEY, result);
                if ctx.hook_type() == HookType::CustomKeyCheck {
                    let mut patch = self.session.patch();
                    let now = Duration::from_millis(client::unix_millis());
                    if let Some(deadline) = super::id_extractor_deadline(now, self.id_extractor_ttl_s) {
                        patch = patch.id_extractor_deadline(deadline);
                    }
                    ctx.authenticate_with(patch, client.key);
                }
            }
            Verdict::Deny(denial) => deny(ctx, &denial),
        }
        Ok(())
    }
}

fn deny(ctx: &mut Context<'_>, denial: &Denial) {
    ctx.reject(denial.status, denial.text());
}

/// A header value for the upstream: compact JSON when the text is JSON, otherwise the text
/// with control characters replaced by spaces.
fn header_safe(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => v.to_string(),
        Err(_) => text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect(),
    }
}

impl ReqHubMerchant {
    fn verify_local(&self, ctx: &Context<'_>, client: &ClientValues<'_>, now_ms: u64) -> Verdict {
        let Some(ts) = parse_timestamp(client.timestamp) else {
            return Verdict::Deny(Denial::new(
                codes::MERCHANT_SIGNATURE_INVALID,
                "ClientTimestamp must be the UNIX time in milliseconds (13 digits).",
            ));
        };
        if ts.abs_diff(now_ms) > self.window_ms {
            return Verdict::Deny(Denial::new(
                codes::MERCHANT_SIGNATURE_INVALID,
                format!(
                    "ClientTimestamp is outside the accepted window of {} ms: sign every request when it is sent, and check the client's clock.",
                    self.window_ms
                ),
            ));
        }
        if !is_valid_nonce(client.nonce) {
            return Verdict::Deny(Denial::new(
                codes::MERCHANT_SIGNATURE_INVALID,
                "ClientNonce must be 20 random bytes encoded as base64 (28 characters).",
            ));
        }
        let Some(entry) = self.clients.get(client.key) else {
            return Verdict::Deny(Denial::generic(codes::CLIENT_NOT_FOUND));
        };
        if entry.api != self.api {
            return Verdict::Deny(Denial::generic(codes::PRODUCT_MISMATCH));
        }
        let expected = client::token(client.key, &entry.private_key, client.timestamp, client.nonce, client.url);
        if !bool::from(expected.as_bytes().ct_eq(client.token.as_bytes())) {
            return Verdict::Deny(Denial::generic(codes::CLIENT_SIGNATURE_INVALID));
        }
        // Only authentic requests reach the store, so garbage cannot fill it. One atomic
        // store-if-absent decides the replay (atomic where the host implements it so).
        let store_key = format!("{}{}:{}", self.nonce_prefix, client.key, client.nonce);
        match ctx.store().set_if_absent(&store_key, client.timestamp, nonce_ttl(self.window_ms, ts, now_ms)) {
            Ok(true) => Verdict::Pass(json!({"mode": "local", "client_key": client.key, "api": self.api}).to_string()),
            Ok(false) => Verdict::Deny(Denial::new(
                codes::MERCHANT_SIGNATURE_INVALID,
                "ClientNonce was already used: this request repeats an earlier one. Use a fresh nonce for every request.",
            )),
            Err(e) => self.unavailable(ctx, client, None, &format!("nonce store: {e}")),
        }
    }

    fn verify_remote(&self, ctx: &Context<'_>, client: &ClientValues<'_>) -> Result<Verdict, MiddlewareError> {
        let remote = self.remote.as_ref().expect("remote mode has a verifier");
        let nonce =
            client::random_nonce().map_err(|e| MiddlewareError::new(format!("the OS random source failed: {e}")))?;
        let merchant =
            SignedHeaders::sign(&self.public_key, &self.private_key, ctx.request_uri(), client::unix_millis(), &nonce);
        let client_values = [client.token, client.key, client.timestamp, client.nonce, client.url];
        let mut request = remote.agent.post(&remote.url);
        for (name, value) in CLIENT_HEADERS.into_iter().zip(client_values).chain(merchant.merchant_pairs()) {
            request = request.header_raw(name, value.as_bytes());
        }
        let mut response = match request.send_empty() {
            Ok(r) => r,
            Err(e) => return Ok(self.unavailable(ctx, client, Some(remote), &transport_reason(&e, remote.timeout_ms))),
        };
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(MAX_VERIFIER_BODY).read_to_vec();
        if status == 200 {
            return Ok(match body {
                Ok(b) => Verdict::Pass(String::from_utf8_lossy(&b).into_owned()),
                Err(e) => self.unavailable(
                    ctx,
                    client,
                    Some(remote),
                    &format!("reading the verifier's answer failed: {}", transport_reason(&e, remote.timeout_ms)),
                ),
            });
        }
        let body = body.unwrap_or_default();
        let code = verifier_error_code(&body);
        if code.is_none() || status >= 500 {
            ctx.log(
                LogLevel::Warning,
                &format!(
                    "ReqHubMerchant: verifier {} answered HTTP {status}{}",
                    remote.display_url,
                    if code.is_none() { " without an error code" } else { "" }
                ),
            );
        }
        Ok(Verdict::Deny(match code {
            Some(code) => {
                let message = match codes::REQHUB.iter().find(|c| **c == code) {
                    Some(known) => Cow::Borrowed(code_message(known)),
                    None => Cow::Owned(format!("ReqHub denied the request ({code}).")),
                };
                Denial { status: 403, code: Cow::Owned(code), message }
            }
            None => Denial::new(codes::VERIFICATION_FAILED, format!("ReqHub denied the request (HTTP {status}).")),
        }))
    }

    /// Verification could not be done (the verifier of remote mode, or the nonce store of
    /// local mode, did not answer): 503, a warning log line and the gateway event.
    fn unavailable(
        &self,
        ctx: &Context<'_>,
        client: &ClientValues<'_>,
        remote: Option<&Remote>,
        reason: &str,
    ) -> Verdict {
        let api = ctx.api();
        let mut payload = json!({
            "event": UNAVAILABLE_EVENT,
            "hook": ctx.hook_name(),
            "api_id": api.api_id,
            "org_id": api.org_id,
            "mode": if remote.is_some() { "remote" } else { "local" },
            "reason": reason,
            "client_key": client.key,
            "path": client.url,
        });
        let what = match remote {
            Some(r) => {
                payload["verify_url"] = Value::from(r.display_url.as_str());
                payload["timeout_ms"] = Value::from(r.timeout_ms);
                format!("verifier {}", r.display_url)
            }
            None => "local verification".to_owned(),
        };
        ctx.log(LogLevel::Warning, &format!("ReqHubMerchant: {what} unavailable: {reason}"));
        ctx.host().trigger_event(UNAVAILABLE_EVENT, &payload.to_string());
        Verdict::Deny(Denial { status: 503, ..Denial::generic(codes::VERIFICATION_UNAVAILABLE) })
    }
}

fn transport_reason(e: &ureq::Error, timeout_ms: u64) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer within {timeout_ms} ms"),
        other => other.to_string(),
    }
}

/// The `error` field of a verifier's JSON answer, when it is a plausible code
/// (1-64 characters of `[a-z0-9_]`); a bare code as text is accepted too.
fn verifier_error_code(body: &[u8]) -> Option<String> {
    let plausible = |s: &str| {
        (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let text = std::str::from_utf8(body).ok()?.trim();
    let candidate = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map.get("error")?.as_str()?.to_owned(),
        Ok(Value::String(s)) => s,
        Ok(_) => return None,
        Err(_) => text.to_owned(),
    };
    plausible(&candidate).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeHost;

    fn build(json: &str) -> Result<ReqHubMerchant, ConfigError> {
        let host = FakeHost::new();
        let config: ReqHubMerchantConfig =
            serde_json::from_str(json).map_err(|e| ConfigError::from_serde("ReqHubMerchant", &e))?;
        ReqHubMerchant::new(config, &Setup { section: "ReqHubMerchant", host: &host })
    }

    #[test]
    fn configuration_is_validated() {
        assert!(build("{}").is_err(), "remote mode needs merchant keys");
        // The default verify_url is https: usable only when TLS is built in.
        let built = build(r#"{"public_key": "p", "private_key": "s"}"#);
        if cfg!(feature = "reqhub-tls") {
            assert!(built.is_ok(), "https with TLS built in");
        } else {
            let err = built.err().expect("https refused without TLS");
            assert!(err.0.contains("reqhub-tls"), "{err}");
        }
        assert!(build(r#"{"public_key": "p", "private_key": "s", "verify_url": "http://127.0.0.1:9/req"}"#).is_ok());
        for bad in [
            r#"{"public_key": "p", "private_key": "s", "verify_url": "ftp://h/req"}"#,
            r#"{"public_key": "p", "private_key": "s", "verify_url": "not a url"}"#,
            r#"{"public_key": "p", "private_key": "s", "verify_url": "http://u:secret@h/req"}"#,
            r#"{"public_key": "p", "private_key": "s", "verify_url": "http://h/req", "timeout_ms": 0}"#,
            r#"{"mode": "local"}"#,
            r#"{"mode": "local", "api": "a", "window_ms": 0}"#,
            r#"{"mode": "local", "api": "a", "clients": {"c": {"private_key": "", "api": "a"}}}"#,
            r#"{"mode": "local", "api": "a", "clients": {"c": {"private_key": "k"}}}"#,
            r#"{"mode": "local", "api": "a", "result_header": "Bad Header"}"#,
            r#"{"mode": "nearby", "api": "a"}"#,
            r#"{"mode": "local", "api": "a", "unknown": 1}"#,
        ] {
            assert!(build(bad).is_err(), "{bad}");
        }
        assert!(build(r#"{"mode": "local", "api": "a", "clients": {"c": {"private_key": "k", "api": "a"}}}"#).is_ok());
    }

    #[test]
    fn config_errors_and_debug_never_show_private_keys() {
        let err = build(r#"{"mode": "local", "api": "a", "window_ms": "secret-value"}"#).err().unwrap();
        assert!(!err.0.contains("secret-value"), "{err}");
        let config: ReqHubMerchantConfig = serde_json::from_str(
            r#"{"private_key": "merchant-secret", "clients": {"c": {"private_key": "client-secret", "api": "a"}}}"#,
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("merchant-secret") && !debug.contains("client-secret"), "{debug}");
    }

    #[test]
    fn timestamps_nonces_and_ttls() {
        assert_eq!(parse_timestamp("1714737642000"), Some(1714737642000));
        for bad in ["171473764200", "17147376420000", "+714737642000", "171473764200x", " 714737642000", ""] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert!(is_valid_nonce("AAECAwQFBgcICQoLDA0ODxAREhM="));
        for bad in [
            "AAECAwQFBgcICQoLDA0ODxAREg==",
            "AAECAwQFBgcICQoLDA0ODxAREhM",
            "AAECAwQFBgcICQoLDA0ODxAREhM=A",
            "AAECAwQFBgcICQoLDA0ODxAREh!=",
        ] {
            assert!(!is_valid_nonce(bad), "{bad}");
        }
        assert_eq!(nonce_ttl(300_000, 1000, 1000), 300);
        assert_eq!(nonce_ttl(300_000, 500, 1000), 300, "past timestamps keep the window");
        assert_eq!(nonce_ttl(300_000, 5_000, 1_000), 304, "future timestamps extend it");
        assert_eq!(nonce_ttl(1, 0, 0), 1, "never 0 (no expiry)");
        assert_eq!(nonce_ttl(1500, 0, 0), 2, "rounded up");
        assert_eq!(nonce_ttl(u64::MAX, u64::MAX, 0), i64::from(i32::MAX));
    }

    #[test]
    fn verifier_error_codes_are_extracted_defensively() {
        assert_eq!(
            verifier_error_code(br#"{"error": "client_not_found", "x": 1}"#).as_deref(),
            Some("client_not_found")
        );
        assert_eq!(verifier_error_code(b"subscription_required\n").as_deref(), Some("subscription_required"));
        assert_eq!(verifier_error_code(br#""url_mismatch""#).as_deref(), Some("url_mismatch"));
        for bad in [
            &b"<html>Bad gateway</html>"[..],
            br#"{"error": 5}"#,
            br#"{"error": "<script>"}"#,
            b"",
            b"\xff\xfe",
            br#"[1]"#,
        ] {
            assert_eq!(verifier_error_code(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn urls_are_displayed_without_credentials_or_query() {
        assert_eq!(display_url("https://u:p@api.reqhub.io/req?k=v"), "https://api.reqhub.io/req");
        assert_eq!(display_url("http://127.0.0.1:80"), "http://127.0.0.1:80");
    }

    #[test]
    fn denial_texts_start_with_the_code() {
        let d = Denial::new(codes::URL_MISMATCH, "say \"hi\"");
        assert_eq!(d.text(), "url_mismatch: say \"hi\"");
    }

    #[test]
    fn header_safe_values_have_no_line_breaks() {
        assert_eq!(header_safe("{\n \"plan\": \"gold\"\n}"), r#"{"plan":"gold"}"#);
        assert_eq!(header_safe("a\r\nb"), "a  b");
    }
}
