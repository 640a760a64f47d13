//! `UpstreamRequestSigning` (Post; also Pre and PostKeyAuth): signs the request going upstream
//! with draft-cavage-http-signatures-10, HMAC or RSA, like the gateway's own
//! `upstream.authentication.requestSigning`.
//!
//! Config (the gateway's camelCase names): `{"signatureHeader": "Authorization", "algorithm":
//! "hmac-sha256", "secret": "...", "keyId": "...", "headers": ["..."], "certificateId": "...",
//! "privateKey": "<PEM>", "plainSignature": false}`.
//!
//! Per request:
//! 1. A `Date` header (RFC 1123, GMT, now) is added through `set_headers` when the request has
//!    none (or an empty one), before anything else, so that value is the one signed.
//! 2. The header list: with `headers` configured, those of it the request has with a non-empty
//!    value (`(request-target)` always counts as present), or `(request-target) date` when none
//!    is; without it, `(request-target)` then every request header name except the signature
//!    header, lower-cased, de-duplicated and sorted (`date` is always among them).
//! 3. The signing string: one `name: value` line per listed header, values trimmed, joined by
//!    `\n`; `(request-target)` is the lower-cased method, a space, and `request.url` (path and
//!    query going upstream).
//! 4. `<signatureHeader>: Signature keyId="..",algorithm="..",headers="..",signature=".."` is
//!    set through `set_headers`. HMAC signatures are base64 then URL-query-escaped (Go's
//!    `url.QueryEscape`) unless `plainSignature`; RSA (`rsa-sha256`, PKCS#1 v1.5 over SHA-256)
//!    is plain base64 whatever `plainSignature` says.
//!
//! Missing or unusable configuration is answered with a 500 through `return_overrides`
//! (`Dispatch` still returns 0), never with key material in the message. Only a configuration
//! that cannot even be expressed in the output (a key id with a quote, an invalid header name)
//! is a configuration error (-5).

use crate::host::LogLevel;
use crate::proto::HookType;
use crate::{Blocking, ConfigError, Context, Middleware, MiddlewareError, Setup};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha2::{Sha256, Sha384, Sha512};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// The gateway's answer when keyId, algorithm, the HMAC secret or the RSA key is missing.
pub const MISSING_FIELDS: &str = "Fields required for signing the request are missing";
/// The answer for an algorithm outside hmac-sha1/256/384/512 and rsa-sha256.
pub const UNSUPPORTED_ALGORITHM: &str = "Request signing algorithm is not supported";
/// The answer when `certificateId` is not in the host store.
pub const CERTIFICATE_NOT_FOUND: &str = "Certificate not found";
/// The start of the answer when the RSA key cannot be used (a reason without key material follows).
pub const BAD_KEY: &str = "Request signing key cannot be used";
/// The start of the answer when a request header cannot be put in a signing string.
pub const UNSIGNABLE_HEADER: &str = "Request header cannot be signed";

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Configuration of [`UpstreamRequestSigning`] (the gateway's camelCase key names). Not
/// `Debug`: it holds the secret and the private key.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct UpstreamRequestSigningConfig {
    /// The header that carries the signature; "" means `Authorization`.
    pub signature_header: String,
    /// hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512 or rsa-sha256 (case-insensitive).
    pub algorithm: String,
    /// The HMAC key, its bytes as given.
    pub secret: String,
    /// The `keyId` the upstream uses to find the secret or public key.
    pub key_id: String,
    /// The headers to sign, in order; empty means `(request-target)` plus every header.
    pub headers: Vec<String>,
    /// RSA: the host-store key (`TykGetData`) of a PEM holding the private key.
    pub certificate_id: String,
    /// RSA: the PEM private key inline (PKCS#1 or PKCS#8).
    pub private_key: String,
    /// HMAC: emit plain base64 instead of URL-query-escaped base64. No effect on RSA.
    pub plain_signature: bool,
}

impl Default for UpstreamRequestSigningConfig {
    fn default() -> Self {
        UpstreamRequestSigningConfig {
            signature_header: "Authorization".into(),
            algorithm: String::new(),
            secret: String::new(),
            key_id: String::new(),
            headers: Vec::new(),
            certificate_id: String::new(),
            private_key: String::new(),
            plain_signature: false,
        }
    }
}

/// A keyed HMAC, ready to be cloned per request.
#[derive(Clone)]
enum HmacKey {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

impl HmacKey {
    fn new(algorithm: &str, secret: &[u8]) -> Option<HmacKey> {
        // HMAC accepts keys of any length, so new_from_slice cannot fail.
        Some(match algorithm {
            "hmac-sha1" => HmacKey::Sha1(Hmac::new_from_slice(secret).ok()?),
            "hmac-sha256" => HmacKey::Sha256(Hmac::new_from_slice(secret).ok()?),
            "hmac-sha384" => HmacKey::Sha384(Hmac::new_from_slice(secret).ok()?),
            "hmac-sha512" => HmacKey::Sha512(Hmac::new_from_slice(secret).ok()?),
            _ => return None,
        })
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + Clone>(m: &M, message: &[u8]) -> Vec<u8> {
            let mut m = m.clone();
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            HmacKey::Sha1(m) => run(m, message),
            HmacKey::Sha256(m) => run(m, message),
            HmacKey::Sha384(m) => run(m, message),
            HmacKey::Sha512(m) => run(m, message),
        }
    }
}

/// Where the RSA key comes from.
enum RsaSource {
    /// Parsed from the inline `privateKey` in `new`: the key or why it cannot be used.
    Inline(Result<Arc<SigningKey<Sha256>>, String>),
    /// Fetched from the host store under this id at first use, then kept for the life of the
    /// configuration (until `Reload` or a new config_data). Failures are not kept: the next
    /// request looks again.
    Store { certificate_id: String, cache: OnceLock<Arc<SigningKey<Sha256>>> },
}

/// What the configuration allows, decided once in `new`.
enum Signer {
    Hmac {
        key: Box<HmacKey>,
        escape: bool,
    },
    Rsa(RsaSource),
    /// Every request is answered 500 with this message (missing fields, unsupported algorithm).
    Refuse(&'static str),
}

/// The `UpstreamRequestSigning` middleware.
pub struct UpstreamRequestSigning {
    signature_header: String,
    /// `keyId="..",algorithm=".."` (the fixed part of the output).
    prefix: String,
    /// Configured header names, lower-cased, de-duplicated; empty: the default list.
    headers: Vec<String>,
    signer: Signer,
}

impl Middleware for UpstreamRequestSigning {
    const NAME: &'static str = "UpstreamRequestSigning";
    const HOOKS: &'static [HookType] = &[HookType::Post, HookType::Pre, HookType::PostKeyAuth];
    type Config = UpstreamRequestSigningConfig;

    fn new(config: UpstreamRequestSigningConfig, _setup: &Setup<'_>) -> Result<Self, ConfigError> {
        let signature_header = match config.signature_header.trim() {
            "" => "Authorization".to_owned(),
            h if super::is_header_name(h) => h.to_owned(),
            _ => return Err(ConfigError::new("signatureHeader is not a valid header name")),
        };
        if signature_header.eq_ignore_ascii_case("date") {
            return Err(ConfigError::new("signatureHeader must not be Date: the Date header is signed"));
        }
        if config.key_id.bytes().any(|b| b == b'"' || b == b'\\' || b.is_ascii_control()) {
            return Err(ConfigError::new("keyId must not contain quotes, backslashes or control characters"));
        }
        let mut headers: Vec<String> = Vec::with_capacity(config.headers.len());
        for h in &config.headers {
            let h = h.trim().to_ascii_lowercase();
            if h != REQUEST_TARGET && !super::is_header_name(&h) {
                return Err(ConfigError::new(format!("headers: {h:?} is not a valid header name")));
            }
            if h.eq_ignore_ascii_case(&signature_header) {
                return Err(ConfigError::new("headers must not list the signatureHeader itself (it is overwritten)"));
            }
            if !headers.contains(&h) {
                headers.push(h);
            }
        }
        if !config.private_key.is_empty() && !config.certificate_id.is_empty() {
            return Err(ConfigError::new("set only one of privateKey and certificateId"));
        }

        let algorithm = config.algorithm.trim().to_ascii_lowercase();
        let signer = if config.key_id.is_empty() || algorithm.is_empty() {
            Signer::Refuse(MISSING_FIELDS)
        } else if algorithm == "rsa-sha256" {
            if !config.private_key.is_empty() {
                Signer::Rsa(RsaSource::Inline(parse_rsa_pem(config.private_key.as_bytes()).map(Arc::new)))
            } else if !config.certificate_id.is_empty() {
                Signer::Rsa(RsaSource::Store { certificate_id: config.certificate_id.clone(), cache: OnceLock::new() })
            } else {
                Signer::Refuse(MISSING_FIELDS)
            }
        } else {
            match HmacKey::new(&algorithm, config.secret.as_bytes()) {
                None => Signer::Refuse(UNSUPPORTED_ALGORITHM),
                Some(_) if config.secret.is_empty() => Signer::Refuse(MISSING_FIELDS),
                Some(key) => Signer::Hmac { key: Box::new(key), escape: !config.plain_signature },
            }
        };
        let prefix = format!("keyId=\"{}\",algorithm=\"{}\"", config.key_id, algorithm);
        Ok(UpstreamRequestSigning { signature_header, prefix, headers, signer })
    }

    /// Only a `certificateId` key not fetched yet needs the store.
    fn blocking(&self) -> Blocking {
        match &self.signer {
            Signer::Rsa(RsaSource::Store { cache, .. }) if cache.get().is_none() => Blocking::Store,
            _ => Blocking::Never,
        }
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        // Resolve the key first: a refused configuration edits nothing but return_overrides.
        let rsa_key = match self.resolve_key(ctx) {
            Ok(key) => key,
            Err(message) => {
                ctx.log(LogLevel::Error, &format!("UpstreamRequestSigning ({}): {message}", ctx.hook_name()));
                ctx.reject(500, message);
                return Ok(());
            }
        };

        // 1. Date, before the header list is computed.
        let added_date = match ctx.header("date") {
            Some(v) if !v.trim().is_empty() => None,
            _ => Some(http_date(SystemTime::now())),
        };
        let added = added_date.as_deref();

        // 2. The header list, as (name, value); `(request-target)` has no value.
        let mut list: Vec<(&str, Option<&str>)> = Vec::with_capacity(self.headers.len().max(16));
        if self.headers.is_empty() {
            // Values come from the header list itself (no per-name look-up: linear in the header
            // count), in decoded-map order without decoding the Object.
            for (k, v) in ctx.header_pairs() {
                let is_date = k.eq_ignore_ascii_case("date");
                if !(k.eq_ignore_ascii_case(&self.signature_header) || is_date && added.is_some()) {
                    list.push((k, Some(v)));
                }
            }
            if let Some(d) = added {
                list.push(("date", Some(d)));
            }
            // Stable: of names differing only in case, the first in map order is kept.
            list.sort_by(|a, b| {
                a.0.bytes().map(|c| c.to_ascii_lowercase()).cmp(b.0.bytes().map(|c| c.to_ascii_lowercase()))
            });
            list.dedup_by(|later, earlier| later.0.eq_ignore_ascii_case(earlier.0));
            list.insert(0, (REQUEST_TARGET, None));
        } else {
            for h in &self.headers {
                if h == REQUEST_TARGET {
                    list.push((REQUEST_TARGET, None));
                    continue;
                }
                let value = match (h.as_str(), added) {
                    ("date", Some(d)) => Some(d),
                    _ => ctx.header(h),
                };
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    list.push((h.as_str(), Some(v)));
                }
            }
            if list.is_empty() {
                list.push((REQUEST_TARGET, None));
                list.push(("date", Some(added.or_else(|| ctx.header("date")).unwrap_or_default())));
            }
        }

        // 3. The signing string and the headers parameter, names lower-cased.
        let mut signing = String::with_capacity(256 + 64 * list.len());
        let mut names = String::with_capacity(16 * list.len());
        for (i, (name, value)) in list.iter().enumerate() {
            if i > 0 {
                signing.push('\n');
                names.push(' ');
            }
            let Some(value) = value else {
                let method = match ctx.method() {
                    "" => "get".to_owned(),
                    m => m.to_ascii_lowercase(),
                };
                let _ = write!(signing, "{REQUEST_TARGET}: {method} {}", upstream_target(ctx.url()));
                names.push_str(REQUEST_TARGET);
                continue;
            };
            let value = value.trim();
            if !super::is_header_name(name) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                let shown: String = name.chars().take(64).collect();
                ctx.reject(
                    400,
                    format!("{UNSIGNABLE_HEADER}: {shown:?} has an invalid name or a value with CR, LF or NUL"),
                );
                return Ok(());
            }
            let start = names.len();
            names.push_str(name);
            names[start..].make_ascii_lowercase();
            signing.push_str(&names[start..]);
            signing.push_str(": ");
            signing.push_str(value);
        }

        // 4. Sign and set the headers.
        let signature = match (&self.signer, rsa_key) {
            (Signer::Hmac { key, escape }, _) => {
                let b64 = BASE64.encode(key.sign(signing.as_bytes()));
                if *escape {
                    query_escape(&b64)
                } else {
                    b64
                }
            }
            (_, Some(key)) => {
                // Blinded with OS randomness (PKCS#1 v1.5 signatures stay deterministic).
                let sig = key
                    .try_sign_with_rng(&mut rsa::rand_core::OsRng, signing.as_bytes())
                    .map_err(|_| MiddlewareError::new("RSA signing failed"))?;
                BASE64.encode(sig.to_bytes())
            }
            (_, None) => unreachable!("RSA always resolves a key or returns above"),
        };
        if let Some(date) = added_date {
            ctx.set_header("Date", date);
        }
        let value = format!("Signature {},headers=\"{names}\",signature=\"{signature}\"", self.prefix);
        ctx.set_header(self.signature_header.as_str(), value);
        Ok(())
    }
}

const REQUEST_TARGET: &str = "(request-target)";

impl UpstreamRequestSigning {
    /// The RSA key (None for HMAC), or the 500 message when the configuration cannot sign.
    fn resolve_key(&self, ctx: &Context<'_>) -> Result<Option<Arc<SigningKey<Sha256>>>, String> {
        match &self.signer {
            Signer::Refuse(message) => Err((*message).to_owned()),
            Signer::Hmac { .. } => Ok(None),
            Signer::Rsa(RsaSource::Inline(Ok(key))) => Ok(Some(key.clone())),
            Signer::Rsa(RsaSource::Inline(Err(reason))) => Err(format!("{BAD_KEY}: {reason}")),
            Signer::Rsa(RsaSource::Store { certificate_id, cache }) => {
                if let Some(key) = cache.get() {
                    return Ok(Some(key.clone()));
                }
                let pem = ctx
                    .store()
                    .get(certificate_id)
                    .map(Zeroizing::new)
                    .ok_or_else(|| CERTIFICATE_NOT_FOUND.to_owned())?;
                let key = parse_rsa_pem(pem.as_bytes()).map_err(|reason| format!("{BAD_KEY}: {reason}"))?;
                // Two threads may both parse at first use; the first one stored wins.
                Ok(Some(cache.get_or_init(|| Arc::new(key)).clone()))
            }
        }
    }
}

/// The path and query of `request.url`: an absolute URL loses its scheme and authority; an
/// empty one is `/`.
fn upstream_target(url: &str) -> &str {
    let rest = match url.find("://") {
        Some(i) if !url[..i].contains('/') => {
            let after = &url[i + 3..];
            match after.find(['/', '?']) {
                Some(j) => &after[j..],
                None => "",
            }
        }
        _ => url,
    };
    if rest.is_empty() {
        "/"
    } else {
        rest
    }
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space to `+`, the rest `%XX` (upper hex).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
    out
}

/// An RFC 1123 date in GMT (`Mon, 02 Jan 2006 15:04:05 GMT`); times before 1970 read as 1970.
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count in 400-year eras starting on 0000-03-01, so the leap day ends each era-year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year, 0..365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The first private-key PEM block of `pem` (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`),
/// as an RSA signing key. Error messages never contain key material.
fn parse_rsa_pem(pem: &[u8]) -> Result<SigningKey<Sha256>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the PEM is not text".to_string())?;
    let (label, body) = first_private_key_block(text)?;
    if body.lines().any(|l| l.contains(':')) {
        return Err("encrypted PEM keys (Proc-Type headers) are not supported".into());
    }
    let b64: Zeroizing<String> = Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let der =
        Zeroizing::new(BASE64.decode(b64.as_bytes()).map_err(|_| format!("the {label} block is not valid base64"))?);
    let key = match label {
        "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&der)
            .map_err(|_| "the RSA PRIVATE KEY block is not a valid PKCS#1 RSA key".to_string())?,
        _ => {
            let info = rsa::pkcs8::PrivateKeyInfo::try_from(der.as_slice())
                .map_err(|_| "the PRIVATE KEY block is not a valid PKCS#8 key".to_string())?;
            if info.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
                return Err("the PRIVATE KEY block holds a key that is not RSA".into());
            }
            RsaPrivateKey::try_from(info).map_err(|_| "the PRIVATE KEY block is not a valid RSA key".to_string())?
        }
    };
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"));
    }
    Ok(SigningKey::<Sha256>::new(key))
}

/// Label and body of the first PEM block whose label names a private key.
fn first_private_key_block(text: &str) -> Result<(&'static str, &str), String> {
    const BEGIN: &str = "-----BEGIN ";
    let mut rest = text;
    let mut saw_other = None;
    while let Some(at) = rest.find(BEGIN) {
        let after = &rest[at + BEGIN.len()..];
        let Some(close) = after.find("-----") else { break };
        let label = &after[..close];
        let body_start = &after[close + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_marker) else {
            return Err(format!("the PEM block {:?} has no END line", truncate(label)));
        };
        let body = &body_start[..end];
        match label {
            "RSA PRIVATE KEY" => return Ok(("RSA PRIVATE KEY", body)),
            "PRIVATE KEY" => return Ok(("PRIVATE KEY", body)),
            "ENCRYPTED PRIVATE KEY" => return Err("encrypted PKCS#8 keys are not supported".into()),
            l if l.ends_with("PRIVATE KEY") => {
                return Err(format!("a {:?} block is not an RSA private key", truncate(l)))
            }
            l => saw_other = saw_other.or(Some(truncate(l))),
        }
        rest = &body_start[end + end_marker.len()..];
    }
    Err(match saw_other {
        Some(l) => format!("the PEM has no private key block (first block: {l:?})"),
        None => "no PEM private key block (RSA PRIVATE KEY or PRIVATE KEY) found".into(),
    })
}

fn truncate(label: &str) -> String {
    label.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn http_dates_match_an_independent_formatter() {
        // Expected values from python3: email.utils.formatdate(t, usegmt=True).
        for (t, want) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_714_737_642, "Fri, 03 May 2024 12:00:42 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (1_136_214_245, "Mon, 02 Jan 2006 15:04:05 GMT"),
        ] {
            assert_eq!(http_date(UNIX_EPOCH + Duration::from_secs(t)), want, "t = {t}");
        }
    }

    #[test]
    fn query_escape_is_gos() {
        // Go: url.QueryEscape("a+b/c=d e~-_.ü") == "a%2Bb%2Fc%3Dd+e~-_.%C3%BC"
        assert_eq!(query_escape("a+b/c=d e~-_.ü"), "a%2Bb%2Fc%3Dd+e~-_.%C3%BC");
    }

    #[test]
    fn upstream_targets() {
        assert_eq!(upstream_target("/a/b?c=1"), "/a/b?c=1");
        assert_eq!(upstream_target(""), "/");
        assert_eq!(upstream_target("http://up.example:8080/p?q"), "/p?q");
        assert_eq!(upstream_target("https://up.example?q=1"), "?q=1");
        assert_eq!(upstream_target("https://up.example"), "/");
        assert_eq!(upstream_target("/redirect?to=http://x/y"), "/redirect?to=http://x/y");
    }

    #[test]
    fn pem_blocks_are_chosen_and_refused_with_clear_reasons() {
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(first_private_key_block(cert).unwrap_err().contains("CERTIFICATE"));
        let both = format!("{cert}-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n");
        assert_eq!(first_private_key_block(&both).unwrap(), ("PRIVATE KEY", "\nQUJD\n"));
        assert!(first_private_key_block("-----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE KEY-----")
            .unwrap_err()
            .contains("not an RSA"));
        assert!(first_private_key_block(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n-----END ENCRYPTED PRIVATE KEY-----"
        )
        .unwrap_err()
        .contains("encrypted"));
        assert!(first_private_key_block("-----BEGIN PRIVATE KEY-----\nQUJD\n").unwrap_err().contains("no END"));
        assert!(first_private_key_block("garbage").is_err());
        // A valid frame around bytes that are not a key: the reason names no byte of it.
        let err = parse_rsa_pem(
            b"-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END RSA PRIVATE KEY-----",
        )
        .unwrap_err();
        assert!(!err.contains("c2Vj") && !err.contains("secret"), "{err}");
        assert!(parse_rsa_pem(b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----")
            .unwrap_err()
            .contains("base64"));
    }
}
