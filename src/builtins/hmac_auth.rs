//! `HMACSignatureAuth` (CustomKeyCheck): authenticate requests signed with an HMAC
//! draft-cavage HTTP signature.
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
//! Config (`deny_unknown_fields`):
//! `{"keys": {"<keyId>": "<secret>"}, "store_prefix": "hmac-secret-",
//!   "allowed_algorithms": ["hmac-sha1","hmac-sha256","hmac-sha384","hmac-sha512"],
//!   "clock_skew_ms": 0, "session": <session template>, "store_cache_ms": 0,
//!   "id_extractor_ttl_s": 0}`.
//!
//! Outcomes, as `return_overrides`: a missing or malformed header or field is 400
//! `Custom middleware: Bad request`; an unsupported or disallowed algorithm is 400
//! `Bad HMAC request, unsupported algorithm`; an unknown key, a wrong signature or a Date
//! outside the clock-skew window is 401 `Custom middleware: Not authorized`. On success the
//! session template is returned with `hmac_enabled`, `hmac_secret`, `last_updated` and
//! `metadata["token"] = keyId`. Secrets and expected signatures never reach a message or a log.

use super::signature::{self, is_tchar, parse_http_date, percent_decode_into};
use crate::host::LogLevel;
use crate::proto::{HookType, SessionState};
use crate::{Blocking, ConfigError, Context, Middleware, MiddlewareError, SessionTemplate, Setup};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// Body of a 400 for a missing or malformed header or field.
pub const BAD_REQUEST: &str = "Custom middleware: Bad request";
/// Body of a 400 for an unsupported or disallowed algorithm.
pub const UNSUPPORTED_ALGORITHM: &str = "Bad HMAC request, unsupported algorithm";
/// Body of a 401 for an unknown key, a wrong signature or a stale Date.
pub const NOT_AUTHORIZED: &str = "Custom middleware: Not authorized";

/// Longest keyId looked up (longer ones are unknown keys, and a config error in `keys`).
const MAX_KEY_ID_LEN: usize = 1024;
/// Most names a `headers=` list may hold.
const MAX_SIGNED_HEADERS: usize = 64;
/// Most entries the store cache holds (when `store_cache_ms > 0`).
const STORE_CACHE_MAX: usize = 4096;

/// The HMAC algorithms, by their draft-cavage names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Algorithm {
    /// `hmac-sha1`
    HmacSha1,
    /// `hmac-sha256`
    HmacSha256,
    /// `hmac-sha384`
    HmacSha384,
    /// `hmac-sha512`
    HmacSha512,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 4] =
        [Algorithm::HmacSha1, Algorithm::HmacSha256, Algorithm::HmacSha384, Algorithm::HmacSha512];

    /// The draft-cavage name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The algorithm named `name` (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }

    fn index(self) -> usize {
        self as usize
    }
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
}

impl Default for HmacSignatureAuthConfig {
    fn default() -> Self {
        HmacSignatureAuthConfig {
            keys: BTreeMap::new(),
            store_prefix: "hmac-secret-".into(),
            allowed_algorithms: Algorithm::ALL.iter().map(|a| a.name().to_owned()).collect(),
            clock_skew_ms: 0,
            session: SessionState::default(),
            store_cache_ms: 0,
            id_extractor_ttl_s: 0,
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
            .finish_non_exhaustive()
    }
}

/// A secret with its keyed HMAC states, each made once (on first use) and cloned per request,
/// so a request never re-runs the key schedule.
struct KeyedSecret {
    secret: String,
    sha1: OnceLock<Hmac<Sha1>>,
    sha256: OnceLock<Hmac<Sha256>>,
    sha384: OnceLock<Hmac<Sha384>>,
    sha512: OnceLock<Hmac<Sha512>>,
}

impl KeyedSecret {
    fn new(secret: String) -> Self {
        KeyedSecret {
            secret,
            sha1: OnceLock::new(),
            sha256: OnceLock::new(),
            sha384: OnceLock::new(),
            sha512: OnceLock::new(),
        }
    }

    /// Key the state of `alg` now (configured keys are keyed at configuration time).
    fn prepare(&self, alg: Algorithm) {
        let key = self.secret.as_bytes();
        match alg {
            Algorithm::HmacSha1 => drop(keyed(&self.sha1, key)),
            Algorithm::HmacSha256 => drop(keyed(&self.sha256, key)),
            Algorithm::HmacSha384 => drop(keyed(&self.sha384, key)),
            Algorithm::HmacSha512 => drop(keyed(&self.sha512, key)),
        }
    }

    /// Whether `provided` is the HMAC of `msg` under this secret, compared in constant time.
    fn verify(&self, alg: Algorithm, msg: &SigningString<'_>, provided: &[u8]) -> bool {
        let key = self.secret.as_bytes();
        match alg {
            Algorithm::HmacSha1 => verify_with(keyed(&self.sha1, key), msg, provided),
            Algorithm::HmacSha256 => verify_with(keyed(&self.sha256, key), msg, provided),
            Algorithm::HmacSha384 => verify_with(keyed(&self.sha384, key), msg, provided),
            Algorithm::HmacSha512 => verify_with(keyed(&self.sha512, key), msg, provided),
        }
    }
}

fn keyed<'c, M: Mac + KeyInit>(cell: &'c OnceLock<M>, key: &[u8]) -> &'c M {
    cell.get_or_init(|| <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length"))
}

fn verify_with<M: Mac + Clone>(state: &M, msg: &SigningString<'_>, provided: &[u8]) -> bool {
    let mut mac = state.clone();
    msg.feed(|part| mac.update(part));
    let tag = mac.finalize().into_bytes();
    bool::from(tag.as_slice().ct_eq(provided))
}

/// One line of the signing string.
enum Line<'a> {
    Header { name: &'a str, value: &'a str },
    RequestTarget { method: &'a str, uri: &'a str },
}

/// The signing string, fed to the HMAC in pieces without being assembled.
struct SigningString<'a> {
    lines: SmallVec<[Line<'a>; 4]>,
}

impl SigningString<'_> {
    fn feed(&self, mut update: impl FnMut(&[u8])) {
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                update(b"\n");
            }
            match line {
                Line::Header { name, value } => {
                    update_lower(&mut update, name);
                    update(b": ");
                    update(value.as_bytes());
                }
                Line::RequestTarget { method, uri } => {
                    update(b"(request-target): ");
                    update_lower(&mut update, method);
                    update(b" ");
                    update(uri.as_bytes());
                }
            }
        }
    }

    /// The signing string as text (tests and documentation).
    #[cfg(test)]
    fn to_text(&self) -> String {
        let mut out = Vec::new();
        self.feed(|p| out.extend_from_slice(p));
        String::from_utf8(out).expect("built from str")
    }
}

/// Feed `s` ASCII-lower-cased, through a small stack buffer (no allocation).
fn update_lower(update: &mut impl FnMut(&[u8]), s: &str) {
    if !s.bytes().any(|b| b.is_ascii_uppercase()) {
        return update(s.as_bytes());
    }
    let mut buf = [0u8; 64];
    for chunk in s.as_bytes().chunks(buf.len()) {
        let lower = &mut buf[..chunk.len()];
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        update(lower);
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
    fn code(self) -> i32 {
        match self {
            Refusal::BadRequest(_) | Refusal::UnsupportedAlgorithm => 400,
            Refusal::NotAuthorized(_) => 401,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => BAD_REQUEST,
            Refusal::UnsupportedAlgorithm => UNSUPPORTED_ALGORITHM,
            Refusal::NotAuthorized(_) => NOT_AUTHORIZED,
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
            let alg = Algorithm::from_name(name).ok_or_else(|| {
                ConfigError::new(format!(
                    "allowed_algorithms: {name:?} is not one of hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512"
                ))
            })?;
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
            for alg in Algorithm::ALL.into_iter().filter(|a| allowed[a.index()]) {
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
                    .hmac_secret(&secret.secret)
                    .last_updated(itoa::Buffer::new().format(now.as_secs()));
                if self.id_extractor_ttl_s > 0 {
                    let deadline = now.as_secs().saturating_add(self.id_extractor_ttl_s);
                    patch = patch.id_extractor_deadline(i64::try_from(deadline).unwrap_or(i64::MAX));
                }
                ctx.authenticate_with(patch, key_id);
            }
            Err((refusal, key_id)) => {
                let (code, reason) = (refusal.code(), refusal.reason());
                let line = match key_id {
                    Some(k) => format!("HMACSignatureAuth: {code} for keyId {:?}: {reason}", truncate(k, 64)),
                    None => format!("HMACSignatureAuth: {code}: {reason}"),
                };
                ctx.log(LogLevel::Debug, &line);
                ctx.reject(refusal.code(), refusal.message());
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

type Checked<'c, 's> = Result<(&'c str, Found<'s>), (Refusal, Option<&'c str>)>;

impl HmacSignatureAuth {
    /// Verify the request; on success the keyId and its secret.
    fn check<'c>(&self, ctx: &Context<'c>, now: Duration) -> Checked<'c, '_> {
        use Refusal::*;
        let authorization = ctx
            .header("Authorization")
            .filter(|v| !v.is_empty())
            .ok_or((BadRequest("no Authorization header"), None))?;
        let params = signature::parse(authorization).map_err(|e| (BadRequest(e.as_str()), None))?;
        let key_id = params.key_id.filter(|v| !v.is_empty()).ok_or((BadRequest("keyId missing"), None))?;
        let fail = |r: Refusal| (r, Some(key_id));
        let algorithm = params.algorithm.filter(|v| !v.is_empty()).ok_or(fail(BadRequest("algorithm missing")))?;
        let sig = params.signature.filter(|v| !v.is_empty()).ok_or(fail(BadRequest("signature missing")))?;
        let alg =
            Algorithm::from_name(algorithm).filter(|a| self.allowed[a.index()]).ok_or(fail(UnsupportedAlgorithm))?;
        let date = ctx.header("Date").filter(|v| !v.is_empty()).ok_or(fail(BadRequest("no Date header")))?;
        let msg = self.signing_string(ctx, params.headers).map_err(|r| fail(BadRequest(r)))?;

        if self.clock_skew_ms > 0 {
            let sent = parse_http_date(date).ok_or(fail(NotAuthorized("Date does not parse")))?;
            let now_ms = i128::from(now.as_secs()) * 1000 + i128::from(now.subsec_millis());
            if (now_ms - i128::from(sent) * 1000).unsigned_abs() > u128::from(self.clock_skew_ms) {
                return Err(fail(NotAuthorized("Date outside the clock-skew window")));
            }
        }

        let secret = self.lookup(ctx, key_id).ok_or(fail(NotAuthorized("unknown keyId")))?;
        // base64 of an HMAC-SHA512 is 88 characters; anything longer cannot match.
        let mut b64 = [0u8; 96];
        let b64_len = percent_decode_into(sig, &mut b64)
            .ok_or(fail(NotAuthorized("signature is not a valid percent-encoded HMAC")))?;
        let mut raw = [0u8; 72]; // decode_slice wants room for its length estimate
        let raw_len =
            base64_decode(&b64[..b64_len], &mut raw).ok_or(fail(NotAuthorized("signature is not valid base64")))?;
        if !secret.verify(alg, &msg, &raw[..raw_len]) {
            return Err(fail(NotAuthorized("signature mismatch")));
        }
        Ok((key_id, secret))
    }

    /// The signing string for the `headers=` list (default `date`), or why it cannot be built.
    fn signing_string<'c>(&self, ctx: &Context<'c>, list: Option<&'c str>) -> Result<SigningString<'c>, &'static str> {
        let list = list.unwrap_or("date");
        let mut lines = SmallVec::new();
        let mut has_date = false;
        for name in list.split([' ', '\t']).filter(|n| !n.is_empty()) {
            if lines.len() == MAX_SIGNED_HEADERS {
                return Err("too many signed headers");
            }
            if name.eq_ignore_ascii_case("(request-target)") {
                lines.push(Line::RequestTarget { method: ctx.method(), uri: ctx.request_uri() });
                continue;
            }
            if !name.bytes().all(is_tchar) {
                return Err("invalid name in headers=");
            }
            let value = ctx.header(name).ok_or("a header listed in headers= is missing")?;
            has_date |= name.eq_ignore_ascii_case("date");
            lines.push(Line::Header { name, value: value.trim_matches(|c| c == ' ' || c == '\t') });
        }
        if lines.is_empty() {
            return Err("headers= lists no header");
        }
        if self.clock_skew_ms > 0 && !has_date {
            return Err("the clock-skew check needs date in headers=");
        }
        Ok(SigningString { lines })
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

/// Base64 (standard alphabet, padding optional) into `out`; `None` when invalid or too long.
fn base64_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode_slice(input, out).ok()
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

    #[test]
    fn signing_string_lines() {
        let host = FakeHost::new();
        let mw = instance(serde_json::json!({}), &host);
        let obj = request(
            "PaTCH",
            "/a/b?c=d%20e",
            &[("Date", " Fri, 03 May 2024 12:00:42 GMT\t"), ("X-Custom-Header", "v"), ("Empty", "")],
        );
        crate::testing::with_context(&obj, &host, |ctx| {
            let s = mw.signing_string(ctx, Some("(REQUEST-TARGET)  DATE\tx-custom-header Empty")).unwrap();
            assert_eq!(
                s.to_text(),
                "(request-target): patch /a/b?c=d%20e\ndate: Fri, 03 May 2024 12:00:42 GMT\nx-custom-header: v\nempty: "
            );
            assert_eq!(mw.signing_string(ctx, None).unwrap().to_text(), "date: Fri, 03 May 2024 12:00:42 GMT");
            assert!(mw.signing_string(ctx, Some("")).is_err());
            assert!(mw.signing_string(ctx, Some("date host")).is_err());
            assert!(mw.signing_string(ctx, Some("date da:te")).is_err());
        });
        // Long names and methods lower-case across the chunk boundary.
        let long = format!("X-{}", "AbC".repeat(50));
        let method = "M".repeat(100);
        let obj = request(&method, "/", &[(long.as_str(), "1")]);
        let list = format!("{long} (request-target)");
        crate::testing::with_context(&obj, &host, |ctx| {
            let s = mw.signing_string(ctx, Some(&list)).unwrap();
            assert_eq!(
                s.to_text(),
                format!("{}: 1\n(request-target): {} /", long.to_lowercase(), method.to_lowercase())
            );
        });
    }

    #[test]
    fn keyed_state_matches_fresh_keying() {
        // A state keyed once and cloned gives the same tags as keying anew every time, for
        // short keys and keys longer than the hash block (which HMAC hashes first).
        for secret in ["k".to_owned(), "s".repeat(64), "L".repeat(200)] {
            let keyed = KeyedSecret::new(secret.clone());
            let msg = SigningString { lines: smallvec::smallvec![Line::Header { name: "date", value: "x" }] };
            let mut fresh = <Hmac<Sha384> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
            fresh.update(b"date: x");
            let tag = fresh.finalize().into_bytes();
            for _ in 0..3 {
                assert!(keyed.verify(Algorithm::HmacSha384, &msg, &tag));
            }
            assert!(!keyed.verify(Algorithm::HmacSha384, &msg, &tag[..47]));
            assert!(!keyed.verify(Algorithm::HmacSha512, &msg, &tag));
        }
    }

    #[test]
    fn config_keys_are_keyed_up_front_for_allowed_algorithms_only() {
        let host = FakeHost::new();
        let mw = instance(
            serde_json::json!({"keys": {"a": "s"}, "allowed_algorithms": ["hmac-sha256", "HMAC-SHA1"]}),
            &host,
        );
        let k = &mw.keys["a"];
        assert!(k.sha1.get().is_some() && k.sha256.get().is_some());
        assert!(k.sha384.get().is_none() && k.sha512.get().is_none());
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
