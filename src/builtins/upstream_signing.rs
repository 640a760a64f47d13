//! `UpstreamRequestSigning` (Post; also Pre and PostKeyAuth): signs the request going upstream
//! with draft-cavage-http-signatures-10, HMAC or RSA, like the gateway's own
//! `upstream.authentication.requestSigning` (docs/builtins/upstream-request-signing.md).
//!
//! Config (the gateway's camelCase names): `{"signatureHeader": "Authorization", "algorithm":
//! "hmac-sha256", "secret": "...", "keyId": "...", "headers": ["..."], "certificateId": "...",
//! "privateKey": "<PEM>", "plainSignature": false, "listen_path": "/api/", "target_url":
//! "http://upstream/base"}`.
//!
//! It signs what the upstream receives. Per request:
//! 1. A `Date` header (IMF-fixdate, GMT, now) is added through `set_headers` when the request
//!    has none (or an empty one), before anything else, so that value is the one signed.
//! 2. The header list: with `headers` configured, those of it the request has with a non-empty
//!    value (`(request-target)` always counts as present), or `(request-target) date` when none
//!    is; without it, `(request-target)` then every request header name except the signature
//!    header, `Host`, `X-Forwarded-For` and the hop-by-hop headers (and those `Connection`
//!    names), which the gateway's proxy replaces or removes; lower-cased, de-duplicated, sorted.
//! 3. The signing string: one `name: value` line per listed header, values trimmed, joined by
//!    `\n`; `(request-target)` is the lower-cased method, a space, and the path and query the
//!    upstream receives: `request.url` with `listen_path` stripped and `target_url`'s path
//!    joined in front (as the gateway's proxy does), or `request.url` as it is without them.
//! 4. `<signatureHeader>: Signature keyId="..",algorithm="..",headers="..",signature=".."` is
//!    set through `set_headers`. HMAC signatures are base64 then URL-query-escaped (Go's
//!    `url.QueryEscape`) unless `plainSignature`; RSA (`rsa-sha256`, PKCS#1 v1.5 over SHA-256,
//!    signed with AWS-LC: constant-time and blinded) is plain base64 whatever `plainSignature`
//!    says.
//!
//! Missing or unusable configuration is answered with a 500 through `return_overrides`
//! (`Dispatch` still returns 0), never with key material in the message. Only a configuration
//! that cannot even be expressed in the output (a key id with a quote, an invalid header name)
//! is a configuration error (-5).

use super::cavage::{self, Algorithm, HmacAlgorithm, KeyedSecret, Line, SigningString, REQUEST_TARGET};
use crate::host::LogLevel;
use crate::proto::HookType;
use crate::{Blocking, ConfigError, Context, Middleware, MiddlewareError, Setup};
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
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

/// Headers the gateway's proxy removes before the request leaves (hop-by-hop), or replaces
/// (`Host`, `X-Forwarded-For`): never in the default header list.
const NOT_FORWARDED: [&str; 11] = [
    "host",
    "x-forwarded-for",
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Configuration of [`UpstreamRequestSigning`] (the gateway's camelCase key names; the API
/// definition's own names for the proxy settings). Not `Debug`: it holds the secret and the
/// private key.
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
    /// The headers to sign, in order; empty means `(request-target)` plus every header the
    /// upstream receives as sent.
    pub headers: Vec<String>,
    /// RSA: the host-store key (`TykGetData`) of a PEM holding the private key.
    pub certificate_id: String,
    /// RSA: the PEM private key inline (PKCS#1 or PKCS#8).
    pub private_key: String,
    /// HMAC: emit plain base64 instead of URL-query-escaped base64. No effect on RSA.
    pub plain_signature: bool,
    /// The API's `proxy.listen_path`, when the API strips it (`strip_listen_path`): removed
    /// from the front of `request.url`'s path for `(request-target)`.
    #[serde(rename = "listen_path")]
    pub listen_path: String,
    /// The API's `proxy.target_url`: its path is joined in front of the path and its query in
    /// front of the query for `(request-target)`; a listed `host` is signed as its host.
    #[serde(rename = "target_url")]
    pub target_url: String,
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
            listen_path: String::new(),
            target_url: String::new(),
        }
    }
}

/// Where the RSA key comes from.
enum RsaSource {
    /// Parsed from the inline `privateKey` in `new`: the key or why it cannot be used.
    Inline(Result<Arc<RsaKeyPair>, String>),
    /// Fetched from the host store under this id at first use, then kept for the life of the
    /// configuration (until `Reload` or a new config_data). Failures are not kept: the next
    /// request looks again.
    Store { certificate_id: String, cache: OnceLock<Arc<RsaKeyPair>> },
}

/// What the configuration allows, decided once in `new`.
enum Signer {
    Hmac {
        alg: HmacAlgorithm,
        key: Box<KeyedSecret>,
        escape: bool,
    },
    Rsa(RsaSource),
    /// Every request is answered 500 with this message (missing fields, unsupported algorithm).
    Refuse(&'static str),
}

/// The upstream's target: the path prefix and query of `target_url`, and its authority.
struct Target {
    path: String,
    query: String,
    authority: String,
}

/// The `UpstreamRequestSigning` middleware.
pub struct UpstreamRequestSigning {
    signature_header: String,
    key_id: String,
    algorithm: Option<Algorithm>,
    /// Configured header names, lower-cased, de-duplicated; empty: the default list.
    headers: Vec<String>,
    signer: Signer,
    listen_path: String,
    target: Option<Target>,
}

/// `target_url` split into what `(request-target)` and `host` need.
fn parse_target(url: &str) -> Result<Option<Target>, ConfigError> {
    if url.is_empty() {
        return Ok(None);
    }
    let invalid = || ConfigError::new("target_url is not an absolute http(s) URL");
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or_else(invalid)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') || authority.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(invalid());
    }
    let tail = tail.split_once('#').map_or(tail, |(t, _)| t);
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    Ok(Some(Target { path: path.to_owned(), query: query.to_owned(), authority: authority.to_owned() }))
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
        if !config.listen_path.is_empty() && !config.listen_path.starts_with('/') {
            return Err(ConfigError::new("listen_path must start with /"));
        }
        let target = parse_target(&config.target_url)?;

        let algorithm = Algorithm::from_name(config.algorithm.trim());
        let signer = if config.key_id.is_empty() || config.algorithm.trim().is_empty() {
            Signer::Refuse(MISSING_FIELDS)
        } else {
            match algorithm {
                None => Signer::Refuse(UNSUPPORTED_ALGORITHM),
                Some(Algorithm::RsaSha256) if !config.private_key.is_empty() => {
                    Signer::Rsa(RsaSource::Inline(parse_rsa_pem(config.private_key.as_bytes()).map(Arc::new)))
                }
                Some(Algorithm::RsaSha256) if !config.certificate_id.is_empty() => Signer::Rsa(RsaSource::Store {
                    certificate_id: config.certificate_id.clone(),
                    cache: OnceLock::new(),
                }),
                Some(Algorithm::RsaSha256) => Signer::Refuse(MISSING_FIELDS),
                Some(Algorithm::Hmac(_)) if config.secret.is_empty() => Signer::Refuse(MISSING_FIELDS),
                Some(Algorithm::Hmac(alg)) => {
                    let key = Box::new(KeyedSecret::new(config.secret));
                    key.prepare(alg);
                    Signer::Hmac { alg, key, escape: !config.plain_signature }
                }
            }
        };
        Ok(UpstreamRequestSigning {
            signature_header,
            key_id: config.key_id,
            algorithm,
            headers,
            signer,
            listen_path: config.listen_path,
            target,
        })
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
            _ => Some(crate::calendar::http_date(SystemTime::now())),
        };
        let added = added_date.as_deref();
        let method = match ctx.method() {
            "" => Cow::Borrowed("get"),
            m => Cow::Owned(m.to_ascii_lowercase()),
        };
        let target = self.request_target(ctx.url());

        // 2. The header list, as signing-string lines.
        let mut msg = SigningString::new();
        if self.headers.is_empty() {
            let pairs = ctx.header_pairs();
            let connection_named: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(',').map(str::trim))
                .collect();
            // Values come from the header list itself (no per-name look-up: linear in the header
            // count), in decoded-map order without decoding the Object.
            let mut list: Vec<(&str, &str)> = Vec::with_capacity(pairs.len() + 1);
            for (k, v) in pairs {
                let skip = k.eq_ignore_ascii_case(&self.signature_header)
                    || (k.eq_ignore_ascii_case("date") && added.is_some())
                    || NOT_FORWARDED.iter().any(|h| h.eq_ignore_ascii_case(k))
                    || connection_named.iter().any(|h| h.eq_ignore_ascii_case(k));
                if !skip {
                    list.push((k, v));
                }
            }
            if let Some(d) = added {
                list.push(("date", d));
            }
            // Stable: of names differing only in case, the first in map order is kept.
            list.sort_by(|a, b| {
                a.0.bytes().map(|c| c.to_ascii_lowercase()).cmp(b.0.bytes().map(|c| c.to_ascii_lowercase()))
            });
            list.dedup_by(|later, earlier| later.0.eq_ignore_ascii_case(earlier.0));
            msg.push(Line::RequestTarget { method: &method, target: target.as_bytes() });
            for (name, value) in list {
                msg.push(Line::Header { name, value: value.trim() });
            }
        } else {
            for h in &self.headers {
                if h == REQUEST_TARGET {
                    msg.push(Line::RequestTarget { method: &method, target: target.as_bytes() });
                    continue;
                }
                let value = match (h.as_str(), added, &self.target) {
                    ("date", Some(d), _) => Some(d),
                    ("host", _, Some(t)) => Some(t.authority.as_str()),
                    _ => ctx.header(h),
                };
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    msg.push(Line::Header { name: h, value: v.trim() });
                }
            }
            if msg.is_empty() {
                msg.push(Line::RequestTarget { method: &method, target: target.as_bytes() });
                msg.push(Line::Header {
                    name: "date",
                    value: added.or_else(|| ctx.header("date")).unwrap_or_default(),
                });
            }
        }
        for line in msg.lines() {
            if let Line::Header { name, value } = line {
                if !super::is_header_name(name) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    let shown: String = name.chars().take(64).collect();
                    ctx.reject(
                        400,
                        format!("{UNSIGNABLE_HEADER}: {shown:?} has an invalid name or a value with CR, LF or NUL"),
                    );
                    return Ok(());
                }
            }
        }

        // 3. Sign and set the headers.
        let signature = match (&self.signer, rsa_key) {
            (Signer::Hmac { alg, key, escape }, _) => {
                let b64 = BASE64.encode(key.sign(*alg, &msg));
                if *escape {
                    cavage::query_escape(&b64)
                } else {
                    b64
                }
            }
            (_, Some(key)) => {
                let mut sig = vec![0u8; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), &msg.to_vec(), &mut sig)
                    .map_err(|_| MiddlewareError::new("RSA signing failed"))?;
                BASE64.encode(sig)
            }
            (_, None) => unreachable!("RSA always resolves a key or returns above"),
        };
        let algorithm = self.algorithm.expect("a signer has an algorithm");
        let value = cavage::signature_header(&self.key_id, algorithm, &msg.header_names(), &signature);
        if let Some(date) = added {
            ctx.set_header("Date", date.to_owned());
        }
        ctx.set_header(self.signature_header.as_str(), value);
        Ok(())
    }
}

impl UpstreamRequestSigning {
    /// The RSA key (None for HMAC), or the 500 message when the configuration cannot sign.
    fn resolve_key(&self, ctx: &Context<'_>) -> Result<Option<Arc<RsaKeyPair>>, String> {
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

    /// The path and query the upstream receives for `url`: its path with `listen_path`
    /// stripped (then starting with `/`) and `target_url`'s path joined in front (one slash
    /// between them), `target_url`'s query in front of the query; without those settings,
    /// `url`'s path and query as they are.
    fn request_target<'u>(&self, url: &'u str) -> Cow<'u, str> {
        let url = upstream_target(url);
        if self.listen_path.is_empty() && self.target.is_none() {
            return Cow::Borrowed(url);
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let mut path = Cow::Borrowed(path);
        if !self.listen_path.is_empty() {
            if let Some(rest) = path.strip_prefix(self.listen_path.as_str()) {
                path = Cow::Owned(if rest.starts_with('/') { rest.to_owned() } else { format!("/{rest}") });
            }
        }
        let mut query = Cow::Borrowed(query);
        if let Some(t) = &self.target {
            let sub = path.trim_start_matches('/');
            let base = t.path.trim_end_matches('/');
            path = Cow::Owned(if sub.is_empty() { base.to_owned() } else { format!("{base}/{sub}") });
            if !t.query.is_empty() {
                query = Cow::Owned(if query.is_empty() { t.query.clone() } else { format!("{}&{query}", t.query) });
            }
        }
        let path = if path.is_empty() { "/" } else { &path };
        Cow::Owned(if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") })
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

/// The first private-key PEM block of `pem` (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`),
/// as an RSA signing key. Error messages never contain key material.
fn parse_rsa_pem(pem: &[u8]) -> Result<RsaKeyPair, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the PEM is not text".to_string())?;
    let (label, body) = first_private_key_block(text)?;
    if body.lines().any(|l| l.contains(':')) {
        return Err("encrypted PEM keys (Proc-Type headers) are not supported".into());
    }
    let b64: Zeroizing<String> = Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let der =
        Zeroizing::new(BASE64.decode(b64.as_bytes()).map_err(|_| format!("the {label} block is not valid base64"))?);
    let pkcs8 = label == "PRIVATE KEY";
    let parsed = if pkcs8 { RsaKeyPair::from_pkcs8(&der) } else { RsaKeyPair::from_der(&der) };
    parsed.map_err(|e| match (e.to_string().as_str(), rsa_modulus_bits(&der, pkcs8)) {
        ("WrongAlgorithm", _) => format!("the {label} block holds a key that is not RSA"),
        (_, Some(bits)) if bits < MIN_RSA_BITS => {
            format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")
        }
        _ if pkcs8 => "the PRIVATE KEY block is not a valid PKCS#8 RSA key".to_string(),
        _ => "the RSA PRIVATE KEY block is not a valid PKCS#1 RSA key".to_string(),
    })
}

/// The modulus size in bits of a DER RSA private key (PKCS#1 `RSAPrivateKey`, or PKCS#8
/// `PrivateKeyInfo` around one), read only to say why a key is refused. `None` when the DER
/// is not shaped like one.
fn rsa_modulus_bits(der: &[u8], pkcs8: bool) -> Option<usize> {
    /// One DER TLV: (tag, value, rest).
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, mut b) = b.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || b.len() < n {
                return None;
            }
            let len = b[..n].iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
            b = &b[n..];
            len
        };
        (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
    }
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let (tag, mut body, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    if pkcs8 {
        let (_, _, rest) = tlv(body)?; // version
        let (_, _, rest) = tlv(rest)?; // AlgorithmIdentifier
        let (tag, inner, _) = tlv(rest)?;
        if tag != OCTET_STRING {
            return None;
        }
        return rsa_modulus_bits(inner, false);
    }
    let (_, _, rest) = tlv(body)?; // version
    body = rest;
    let (tag, modulus, _) = tlv(body)?;
    if tag != INTEGER {
        return None;
    }
    let modulus = &modulus[modulus.iter().position(|&b| b != 0)?..];
    Some(modulus.len() * 8 - modulus[0].leading_zeros() as usize)
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

    #[test]
    fn request_targets_are_what_the_upstream_receives() {
        let host = crate::FakeHost::new();
        let mw = |config: serde_json::Value| {
            let config: UpstreamRequestSigningConfig = serde_json::from_value(config).unwrap();
            UpstreamRequestSigning::new(config, &Setup { section: "UpstreamRequestSigning", host: &host }).unwrap()
        };
        let plain = mw(serde_json::json!({}));
        assert_eq!(plain.request_target("/api/users?id=1"), "/api/users?id=1");
        let strip = mw(serde_json::json!({"listen_path": "/api/"}));
        assert_eq!(strip.request_target("/api/users?id=1"), "/users?id=1");
        assert_eq!(strip.request_target("/api/"), "/");
        assert_eq!(strip.request_target("/other/x"), "/other/x", "a path outside the listen path is kept");
        let no_slash = mw(serde_json::json!({"listen_path": "/api"}));
        assert_eq!(no_slash.request_target("/api/users"), "/users");
        let both = mw(serde_json::json!({"listen_path": "/api/", "target_url": "http://up:8080/base/"}));
        assert_eq!(both.request_target("/api/users/7?x=1"), "/base/users/7?x=1");
        assert_eq!(both.request_target("/api/"), "/base", "the gateway joins with no trailing slash");
        let query = mw(serde_json::json!({"target_url": "https://up/v1?k=v"}));
        assert_eq!(query.request_target("/a?b=c"), "/v1/a?k=v&b=c");
        assert_eq!(query.request_target("/"), "/v1?k=v");
        let root = mw(serde_json::json!({"target_url": "http://up"}));
        assert_eq!(root.request_target("/"), "/");
        assert_eq!(root.request_target("/p%2Fq?r"), "/p%2Fq?r", "the escaped path is what goes on the wire");
        for bad in ["ftp://x", "http://", "http://user:pw@host/", "/relative"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert!(UpstreamRequestSigning::new(
            serde_json::from_value(serde_json::json!({"listen_path": "api"})).unwrap(),
            &Setup { section: "UpstreamRequestSigning", host: &host }
        )
        .is_err());
    }

    #[test]
    fn modulus_sizes_are_read_from_der() {
        for (file, pkcs8, bits) in [
            ("test_rsa1024_pkcs1.pem", false, 1024),
            ("test_rsa2048_pkcs1.pem", false, 2048),
            ("test_rsa2048_pkcs8.pem", true, 2048),
        ] {
            let pem = std::fs::read_to_string(format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            let (_, body) = first_private_key_block(&pem).unwrap();
            let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let der = BASE64.decode(b64).unwrap();
            assert_eq!(rsa_modulus_bits(&der, pkcs8), Some(bits), "{file}");
        }
        assert_eq!(rsa_modulus_bits(&[0x30, 0x01], false), None);
        assert_eq!(rsa_modulus_bits(&[], true), None);
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
