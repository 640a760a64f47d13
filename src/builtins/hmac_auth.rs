//! `HMACSignatureAuth` (CustomKeyCheck): authenticate requests signed with an HMAC
//! draft-cavage HTTP signature (docs/builtins/hmac-signature-auth.md).
//!
//! The client sends `Date` and
//! `Authorization: Signature keyId="<id>",algorithm="<alg>",signature="<sig>"` with an optional
//! `headers="date (request-target) x-foo"` (default `date`). The signing string has one
//! `name: value` line per listed header (name lower-cased, value trimmed of spaces and tabs),
//! joined by `\n`; `(request-target)` is `(request-target): <lower-case method> <request_uri>`.
//! The signature is base64 of the HMAC keyed with the secret's bytes, URL-percent-encoded on
//! the wire (unencoded and lower-case escapes are accepted too); it is compared in constant
//! time.
//!
//! With `"compat": "tyk"` it verifies what the gateway's own HMAC verifier accepts (lenient
//! header grammar, `(request-target)` over the decoded path without the query, `X-Aux-Date`
//! for `date`, a listed header the request lacks signed as empty) and answers every failure as
//! that verifier does: 400 `Authorization field missing, malformed or invalid`.
//!
//! Outcomes otherwise, as `return_overrides`: a missing or malformed header or field is 400
//! `Custom middleware: Bad request`; an unsupported or disallowed algorithm is 400
//! `Bad HMAC request, unsupported algorithm`; an unknown key, a wrong signature or a Date
//! outside the clock-skew window is 401 `Custom middleware: Not authorized`. On success the
//! session template is returned with `hmac_enabled`, `hmac_secret`, `last_updated` and
//! `metadata["token"] = keyId`. Secrets and expected signatures never reach a message or a log.

use super::cavage::{self, HmacAlgorithm, KeyedSecret, Line, SigningString, REQUEST_TARGET};
use crate::calendar::{parse_http_date_with, Zones};
use crate::host::LogLevel;
use crate::proto::{HookType, SessionState};
use crate::{Blocking, ConfigError, Context, Middleware, MiddlewareError, SessionTemplate, Setup};
use parking_lot::RwLock;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Body of a 400 for a missing or malformed header or field.
pub const BAD_REQUEST: &str = "Custom middleware: Bad request";
/// Body of a 400 for an unsupported or disallowed algorithm.
pub const UNSUPPORTED_ALGORITHM: &str = "Bad HMAC request, unsupported algorithm";
/// Body of a 401 for an unknown key, a wrong signature or a stale Date.
pub const NOT_AUTHORIZED: &str = "Custom middleware: Not authorized";
/// Body of every refusal with `"compat": "tyk"` (status 400), the gateway verifier's text.
pub const TYK_REFUSAL: &str = "Authorization field missing, malformed or invalid";

/// Longest keyId looked up (longer ones are unknown keys, and a config error in `keys`).
const MAX_KEY_ID_LEN: usize = 1024;
/// Most names a `headers=` list may hold.
const MAX_SIGNED_HEADERS: usize = 64;
/// Most entries the store cache holds (when `store_cache_ms > 0`).
const STORE_CACHE_MAX: usize = 4096;

/// Whose clients the middleware verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compat {
    /// The strict grammar and outcomes of this middleware.
    #[default]
    Default,
    /// What the gateway's own HMAC verifier accepts, answered as it answers.
    Tyk,
}

/// Configuration of [`HmacSignatureAuth`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HmacSignatureAuthConfig {
    /// Secrets by keyId; looked up before the host store. The secret's bytes are the key.
    pub keys: BTreeMap<String, String>,
    /// Host-store prefix: a keyId absent from `keys` is looked up as
    /// `TykGetData(store_prefix + keyId)`. Empty disables the store look-up.
    pub store_prefix: String,
    /// Algorithms clients may use (draft-cavage names).
    pub allowed_algorithms: Vec<String>,
    /// Largest allowed difference between `Date` and now, in ms; 0 disables the check.
    pub clock_skew_ms: u64,
    /// The session returned on success (SessionState field names).
    pub session: SessionState,
    /// How long a host-store look-up (found or not) is reused, in ms; 0 = never cached.
    pub store_cache_ms: u64,
    /// When > 0, the session's `id_extractor_deadline` is set to now + this many seconds;
    /// 0 leaves the template's value.
    pub id_extractor_ttl_s: u64,
    /// `"tyk"`: verify what the gateway's own HMAC verifier accepts ([`Compat`]).
    pub compat: Compat,
}

impl Default for HmacSignatureAuthConfig {
    fn default() -> Self {
        HmacSignatureAuthConfig {
            keys: BTreeMap::new(),
            store_prefix: "hmac-secret-".into(),
            allowed_algorithms: HmacAlgorithm::ALL.iter().map(|a| a.name().to_owned()).collect(),
            clock_skew_ms: 0,
            session: SessionState::default(),
            store_cache_ms: 0,
            id_extractor_ttl_s: 0,
            compat: Compat::Default,
        }
    }
}

impl fmt::Debug for HmacSignatureAuthConfig {
    /// Key ids only: never the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSignatureAuthConfig")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("store_prefix", &self.store_prefix)
            .field("allowed_algorithms", &self.allowed_algorithms)
            .field("clock_skew_ms", &self.clock_skew_ms)
            .field("store_cache_ms", &self.store_cache_ms)
            .field("id_extractor_ttl_s", &self.id_extractor_ttl_s)
            .field("compat", &self.compat)
            .finish_non_exhaustive()
    }
}

/// Why a request is refused. The reasons are for the debug log and never hold secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadRequest(&'static str),
    UnsupportedAlgorithm,
    NotAuthorized(&'static str),
}

impl Refusal {
    fn code(self, compat: Compat) -> i32 {
        match (compat, self) {
            (Compat::Tyk, _) | (_, Refusal::BadRequest(_) | Refusal::UnsupportedAlgorithm) => 400,
            (_, Refusal::NotAuthorized(_)) => 401,
        }
    }

    fn message(self, compat: Compat) -> &'static str {
        match (compat, self) {
            (Compat::Tyk, _) => TYK_REFUSAL,
            (_, Refusal::BadRequest(_)) => BAD_REQUEST,
            (_, Refusal::UnsupportedAlgorithm) => UNSUPPORTED_ALGORITHM,
            (_, Refusal::NotAuthorized(_)) => NOT_AUTHORIZED,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::BadRequest(r) | Refusal::NotAuthorized(r) => r,
            Refusal::UnsupportedAlgorithm => "unsupported or disallowed algorithm",
        }
    }
}

/// A secret found for a keyId: borrowed from the key table or shared with the store cache.
enum Found<'s> {
    Table(&'s KeyedSecret),
    Store(Arc<KeyedSecret>),
}

impl std::ops::Deref for Found<'_> {
    type Target = KeyedSecret;
    fn deref(&self) -> &KeyedSecret {
        match self {
            Found::Table(k) => k,
            Found::Store(k) => k,
        }
    }
}

struct CacheEntry {
    fetched: Instant,
    secret: Option<Arc<KeyedSecret>>,
}

/// Host-store look-ups kept for `ttl` (found and not found alike), bounded in size.
struct StoreCache {
    ttl: Duration,
    entries: RwLock<BTreeMap<String, CacheEntry>>,
}

/// The `HMACSignatureAuth` middleware.
pub struct HmacSignatureAuth {
    keys: BTreeMap<String, KeyedSecret>,
    store_prefix: String,
    allowed: [bool; 4],
    clock_skew_ms: u64,
    /// The configured session, encoded once; each success appends it with a small patch.
    session: SessionTemplate,
    id_extractor_ttl_s: u64,
    cache: Option<StoreCache>,
    compat: Compat,
}

impl Middleware for HmacSignatureAuth {
    const NAME: &'static str = "HMACSignatureAuth";
    const HOOKS: &'static [HookType] = &[HookType::CustomKeyCheck];
    type Config = HmacSignatureAuthConfig;

    fn new(config: HmacSignatureAuthConfig, _setup: &Setup<'_>) -> Result<Self, ConfigError> {
        let mut allowed = [false; 4];
        if config.allowed_algorithms.is_empty() {
            return Err(ConfigError::new("allowed_algorithms must name at least one algorithm"));
        }
        for name in &config.allowed_algorithms {
            let alg = match cavage::Algorithm::from_name(name) {
                Some(cavage::Algorithm::Hmac(a)) => a,
                _ => {
                    return Err(ConfigError::new(format!(
                        "allowed_algorithms: {name:?} is not one of hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512"
                    )))
                }
            };
            allowed[alg.index()] = true;
        }
        let mut keys = BTreeMap::new();
        for (key_id, secret) in config.keys {
            if key_id.is_empty() || key_id.len() > MAX_KEY_ID_LEN {
                return Err(ConfigError::new(format!("keys: a keyId must be 1 to {MAX_KEY_ID_LEN} bytes long")));
            }
            if secret.is_empty() {
                // The keyId is not secret; the (empty) secret is not shown either way.
                return Err(ConfigError::new(format!("keys: the secret of keyId {key_id:?} is empty")));
            }
            let keyed = KeyedSecret::new(secret);
            for alg in HmacAlgorithm::ALL.into_iter().filter(|a| allowed[a.index()]) {
                keyed.prepare(alg);
            }
            keys.insert(key_id, keyed);
        }
        let cache = (config.store_cache_ms > 0 && !config.store_prefix.is_empty()).then(|| StoreCache {
            ttl: Duration::from_millis(config.store_cache_ms),
            entries: RwLock::new(BTreeMap::new()),
        });
        Ok(HmacSignatureAuth {
            keys,
            store_prefix: config.store_prefix,
            allowed,
            clock_skew_ms: config.clock_skew_ms,
            session: SessionTemplate::new(&config.session),
            id_extractor_ttl_s: config.id_extractor_ttl_s,
            cache,
            compat: config.compat,
        })
    }

    /// Keys outside `keys` are looked up in the host store unless `store_prefix` is empty.
    fn blocking(&self) -> Blocking {
        if self.store_prefix.is_empty() {
            Blocking::Never
        } else {
            Blocking::Store
        }
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        match self.check(ctx, now) {
            Ok((key_id, secret)) => {
                // Merged over the template: these fields replace the template's values.
                let mut patch = self
                    .session
                    .patch()
                    .hmac_enabled(true)
                    .hmac_secret(secret.secret())
                    .last_updated(itoa::Buffer::new().format(now.as_secs()));
                if let Some(deadline) = super::id_extractor_deadline(now, self.id_extractor_ttl_s) {
                    patch = patch.id_extractor_deadline(deadline);
                }
                ctx.authenticate_with(patch, key_id);
            }
            Err((refusal, key_id)) => {
                let (code, reason) = (refusal.code(self.compat), refusal.reason());
                let line = match key_id {
                    Some(k) => format!("HMACSignatureAuth: {code} for keyId {:?}: {reason}", truncate(&k, 64)),
                    None => format!("HMACSignatureAuth: {code}: {reason}"),
                };
                ctx.log(LogLevel::Debug, &line);
                ctx.reject(code, refusal.message(self.compat));
            }
        }
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

type Checked<'c, 's> = Result<(Cow<'c, str>, Found<'s>), (Refusal, Option<Cow<'c, str>>)>;

/// The path of a request URI without its query, percent-decoded as the gateway's `r.URL.Path`
/// is (the raw path when it does not decode).
fn decoded_path(request_uri: &str) -> Cow<'_, [u8]> {
    let path = request_uri.split_once('?').map_or(request_uri, |(p, _)| p);
    if !path.contains('%') {
        return Cow::Borrowed(path.as_bytes());
    }
    let mut out = vec![0u8; path.len()];
    match cavage::percent_decode_into(path, &mut out) {
        Some(n) => {
            out.truncate(n);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(path.as_bytes()),
    }
}

impl HmacSignatureAuth {
    /// Verify the request; on success the keyId and its secret.
    fn check<'c>(&self, ctx: &Context<'c>, now: Duration) -> Checked<'c, '_> {
        use Refusal::*;
        let authorization = ctx
            .header("Authorization")
            .filter(|v| !v.is_empty())
            .ok_or((BadRequest("no Authorization header"), None))?;
        let params = match self.compat {
            Compat::Default => cavage::parse(authorization),
            Compat::Tyk => cavage::parse_lenient(authorization),
        }
        .map_err(|e| (BadRequest(e.as_str()), None))?;
        let key_id = params.key_id.filter(|v| !v.is_empty()).ok_or((BadRequest("keyId missing"), None))?;
        let fail = |r: Refusal| (r, Some(key_id.clone()));
        let algorithm =
            params.algorithm.filter(|v| !v.is_empty()).ok_or_else(|| fail(BadRequest("algorithm missing")))?;
        let sig = params.signature.filter(|v| !v.is_empty()).ok_or_else(|| fail(BadRequest("signature missing")))?;
        let alg = match cavage::Algorithm::from_name(&algorithm) {
            Some(cavage::Algorithm::Hmac(a)) if self.allowed[a.index()] => a,
            _ => return Err(fail(UnsupportedAlgorithm)),
        };
        let (date_name, date) = self.date_header(ctx);
        let date = date.filter(|v| !v.is_empty()).ok_or_else(|| fail(BadRequest("no Date header")))?;
        let target = OnceCell::new();
        let list = params.headers.as_deref().unwrap_or("date");
        let msg = self.signing_string(ctx, list, &target, (date_name, date)).map_err(|r| fail(BadRequest(r)))?;

        // The gateway's verifier refuses a Date it cannot parse even without a skew check.
        if self.clock_skew_ms > 0 || self.compat == Compat::Tyk {
            let zones = if self.compat == Compat::Tyk { Zones::GoLayouts } else { Zones::Strict };
            let sent = parse_http_date_with(date, zones).ok_or_else(|| fail(NotAuthorized("Date does not parse")))?;
            let now_ms = i128::from(now.as_secs()) * 1000 + i128::from(now.subsec_millis());
            if self.clock_skew_ms > 0
                && (now_ms - i128::from(sent) * 1000).unsigned_abs() > u128::from(self.clock_skew_ms)
            {
                return Err(fail(NotAuthorized("Date outside the clock-skew window")));
            }
        }

        let secret = self.lookup(ctx, &key_id).ok_or_else(|| fail(NotAuthorized("unknown keyId")))?;
        // base64 of an HMAC-SHA512 is 88 characters; anything longer cannot match.
        let mut b64 = [0u8; 96];
        let b64_len = cavage::percent_decode_into(&sig, &mut b64)
            .ok_or_else(|| fail(NotAuthorized("signature is not a valid percent-encoded HMAC")))?;
        let mut raw = [0u8; 72]; // decode_slice wants room for its length estimate
        let raw_len = cavage::base64_decode_into(&b64[..b64_len], &mut raw)
            .ok_or_else(|| fail(NotAuthorized("signature is not valid base64")))?;
        if !secret.verify(alg, &msg, &raw[..raw_len]) {
            return Err(fail(NotAuthorized("signature mismatch")));
        }
        Ok((key_id, secret))
    }

    /// The date line's name and value: `Date`, or with `"compat": "tyk"` `X-Aux-Date` when the
    /// request has one (the gateway's verifier prefers it).
    fn date_header<'c>(&self, ctx: &Context<'c>) -> (&'static str, Option<&'c str>) {
        if self.compat == Compat::Tyk {
            if let Some(aux) = ctx.header("X-Aux-Date").filter(|v| !v.is_empty()) {
                return ("x-aux-date", Some(aux));
            }
        }
        ("date", ctx.header("Date"))
    }

    /// The signing string for the `headers=` list, or why it cannot be built. `target` holds
    /// the `(request-target)` path once a listed `(request-target)` needs it.
    fn signing_string<'x>(
        &self,
        ctx: &Context<'x>,
        list: &'x str,
        target: &'x OnceCell<Cow<'x, [u8]>>,
        date: (&'static str, &'x str),
    ) -> Result<SigningString<'x>, &'static str> {
        let mut msg = SigningString::new();
        let mut has_date = false;
        let tyk = self.compat == Compat::Tyk;
        // The gateway's verifier splits on single spaces and keeps empty names (trimmed); the
        // default grammar splits on spaces and tabs and skips empty names.
        for raw in list.split(|c| c == ' ' || (!tyk && c == '\t')) {
            let name = if tyk { raw.trim() } else { raw };
            if !tyk && name.is_empty() {
                continue;
            }
            if msg.len() == MAX_SIGNED_HEADERS {
                return Err("too many signed headers");
            }
            if name.eq_ignore_ascii_case(REQUEST_TARGET) {
                let target = target.get_or_init(|| match self.compat {
                    Compat::Default => Cow::Borrowed(ctx.request_uri().as_bytes()),
                    Compat::Tyk => decoded_path(ctx.request_uri()),
                });
                msg.push(Line::RequestTarget { method: ctx.method(), target });
                continue;
            }
            if name.eq_ignore_ascii_case("date") {
                has_date = true;
                msg.push(Line::Header { name: date.0, value: date.1.trim_matches(|c| c == ' ' || c == '\t') });
                continue;
            }
            let value = match self.compat {
                Compat::Default => {
                    if !super::is_header_name(name) {
                        return Err("invalid name in headers=");
                    }
                    ctx.header(name).ok_or("a header listed in headers= is missing")?.trim_matches([' ', '\t'])
                }
                // Absent headers sign as empty; Host is not among the gateway's request headers.
                Compat::Tyk if name.eq_ignore_ascii_case("host") => "",
                Compat::Tyk => ctx.header(name).unwrap_or("").trim(),
            };
            msg.push(Line::Header { name, value });
        }
        if msg.is_empty() {
            return Err("headers= lists no header");
        }
        if self.clock_skew_ms > 0 && !has_date {
            return Err("the clock-skew check needs date in headers=");
        }
        Ok(msg)
    }

    /// The secret for `key_id`: the key table, then the host store (through the cache).
    fn lookup(&self, ctx: &Context<'_>, key_id: &str) -> Option<Found<'_>> {
        if let Some(k) = self.keys.get(key_id) {
            return Some(Found::Table(k));
        }
        if self.store_prefix.is_empty() || key_id.len() > MAX_KEY_ID_LEN {
            return None;
        }
        let fetch = || {
            let mut store_key = String::with_capacity(self.store_prefix.len() + key_id.len());
            store_key.push_str(&self.store_prefix);
            store_key.push_str(key_id);
            ctx.store().get(&store_key).map(|s| Arc::new(KeyedSecret::new(s)))
        };
        let Some(cache) = &self.cache else {
            return fetch().map(Found::Store);
        };
        let now = Instant::now();
        if let Some(e) = cache.entries.read().get(key_id) {
            if now.duration_since(e.fetched) < cache.ttl {
                return e.secret.clone().map(Found::Store);
            }
        }
        let secret = fetch();
        let mut entries = cache.entries.write();
        if entries.len() >= STORE_CACHE_MAX && !entries.contains_key(key_id) {
            entries.retain(|_, e| now.duration_since(e.fetched) < cache.ttl);
            if entries.len() >= STORE_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(key_id.to_owned(), CacheEntry { fetched: now, secret: secret.clone() });
        secret.map(Found::Store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{MiniRequestObject, Object};
    use crate::FakeHost;

    fn instance(config: serde_json::Value, host: &FakeHost) -> HmacSignatureAuth {
        let config: HmacSignatureAuthConfig = serde_json::from_value(config).unwrap();
        HmacSignatureAuth::new(config, &Setup { section: "HMACSignatureAuth", host }).unwrap()
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Object {
        let mut req = MiniRequestObject {
            method: method.into(),
            request_uri: uri.into(),
            url: "/other".into(),
            ..Default::default()
        };
        for (k, v) in headers {
            req.headers.insert((*k).into(), (*v).into());
        }
        Object { hook_type: HookType::CustomKeyCheck as i32, request: Some(req), ..Default::default() }
    }

    /// The signing string `mw` builds for `list` on `obj`, as text.
    fn signing_text(mw: &HmacSignatureAuth, obj: &Object, list: &str) -> Result<String, &'static str> {
        let host = FakeHost::new();
        crate::testing::with_context(obj, &host, |ctx| {
            let (name, date) = mw.date_header(ctx);
            let target = OnceCell::new();
            let msg = mw.signing_string(ctx, list, &target, (name, date.unwrap_or("")))?;
            Ok(String::from_utf8(msg.to_vec()).unwrap())
        })
    }

    #[test]
    fn signing_string_lines() {
        let host = FakeHost::new();
        let mw = instance(serde_json::json!({}), &host);
        let obj = request(
            "PaTCH",
            "/a/b?c=d%20e",
            &[("Date", " Fri, 03 May 2024 12:00:42 GMT\t"), ("X-Custom-Header", "v"), ("Empty", "")],
        );
        assert_eq!(
            signing_text(&mw, &obj, "(REQUEST-TARGET)  DATE\tx-custom-header Empty").unwrap(),
            "(request-target): patch /a/b?c=d%20e\ndate: Fri, 03 May 2024 12:00:42 GMT\nx-custom-header: v\nempty: "
        );
        assert_eq!(signing_text(&mw, &obj, "date").unwrap(), "date: Fri, 03 May 2024 12:00:42 GMT");
        assert!(signing_text(&mw, &obj, "").is_err());
        assert!(signing_text(&mw, &obj, "date host").is_err());
        assert!(signing_text(&mw, &obj, "date da:te").is_err());
        // Long names and methods lower-case across the chunk boundary.
        let long = format!("X-{}", "AbC".repeat(50));
        let method = "M".repeat(100);
        let obj = request(&method, "/", &[(long.as_str(), "1")]);
        let list = format!("{long} (request-target)");
        assert_eq!(
            signing_text(&mw, &obj, &list).unwrap(),
            format!("{}: 1\n(request-target): {} /", long.to_lowercase(), method.to_lowercase())
        );
    }

    #[test]
    fn tyk_compat_signing_strings() {
        let host = FakeHost::new();
        let mw = instance(serde_json::json!({"compat": "tyk"}), &host);
        let obj = request(
            "GET",
            "/api/caf%C3%A9%2Fx?q=1",
            &[
                ("Date", "Fri, 03 May 2024 12:00:42 GMT"),
                ("X-Aux-Date", " Sat, 04 May 2024 12:00:42 GMT"),
                ("Host", "gw"),
            ],
        );
        // The decoded path without the query; X-Aux-Date in place of Date; absent and Host
        // headers signed as empty; names split on single spaces (an empty name kept).
        assert_eq!(
            signing_text(&mw, &obj, "(request-target) date x-missing host").unwrap(),
            "(request-target): get /api/café/x\nx-aux-date: Sat, 04 May 2024 12:00:42 GMT\nx-missing: \nhost: "
        );
        assert_eq!(signing_text(&mw, &obj, "date  date").unwrap().lines().count(), 3);
        assert_eq!(decoded_path("/a%zz?x"), Cow::Borrowed(&b"/a%zz"[..]), "an undecodable path stays raw");
    }

    #[test]
    fn config_keys_are_keyed_up_front_for_allowed_algorithms_only() {
        let host = FakeHost::new();
        let mw = instance(
            serde_json::json!({"keys": {"a": "s"}, "allowed_algorithms": ["hmac-sha256", "HMAC-SHA1"]}),
            &host,
        );
        let k = &mw.keys["a"];
        assert!(k.is_prepared(HmacAlgorithm::Sha1) && k.is_prepared(HmacAlgorithm::Sha256));
        assert!(!k.is_prepared(HmacAlgorithm::Sha384) && !k.is_prepared(HmacAlgorithm::Sha512));
        assert_eq!(mw.allowed, [true, true, false, false]);
    }

    #[test]
    fn store_cache_stays_bounded() {
        let host = FakeHost::new();
        let mw = instance(serde_json::json!({"store_cache_ms": 60_000}), &host);
        let obj = request("GET", "/", &[]);
        crate::testing::with_context(&obj, &host, |ctx| {
            for i in 0..(STORE_CACHE_MAX + 100) {
                assert!(mw.lookup(ctx, &format!("k{i}")).is_none());
            }
        });
        let len = mw.cache.as_ref().unwrap().entries.read().len();
        assert!(len <= STORE_CACHE_MAX && len > 0, "{len}");
        // No cache without a store prefix or with store_cache_ms 0.
        assert!(instance(serde_json::json!({"store_cache_ms": 5, "store_prefix": ""}), &host).cache.is_none());
        assert!(instance(serde_json::json!({}), &host).cache.is_none());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c: HmacSignatureAuthConfig =
            serde_json::from_value(serde_json::json!({"keys": {"id": "TOPSECRET"}})).unwrap();
        let text = format!("{c:?}");
        assert!(text.contains("id") && !text.contains("TOPSECRET"), "{text}");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 64), "abc");
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate(&"x".repeat(100), 64).len(), 64);
    }
}
