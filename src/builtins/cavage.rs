//! draft-cavage HTTP signatures, shared by HMACSignatureAuth (verifying) and
//! UpstreamRequestSigning (signing): the algorithm table, keyed HMAC state, the signing string,
//! the `Signature` header parser, percent-decoding and Go's query escaping.
//!
//! The strict header grammar ([`parse`]):
//! - the scheme `Signature` (ASCII case-insensitive) followed by one or more spaces;
//! - one or more `name="value"` parameters separated by `,`, with optional spaces or tabs
//!   after each comma (nowhere else: not around `=`, not before a comma);
//! - parameter names are `keyId`, `algorithm`, `signature` and `headers`, matched ASCII
//!   case-insensitively; any other name, or a name given twice, is malformed;
//! - a value is everything between two double quotes; there are no escapes (a backslash is
//!   an ordinary character, so a value cannot contain `"`);
//! - a control character other than tab (NUL, CR, LF, DEL, ...) anywhere makes the header
//!   malformed;
//! - leading and trailing spaces/tabs around the whole header value are ignored; a trailing
//!   comma, or anything after the last parameter, is malformed.
//!
//! The lenient grammar ([`parse_lenient`]) accepts what clients of the gateway's own HMAC
//! verifier send (see [`parse_lenient`]).
//!
//! The parsers borrow from their input, allocate only to unescape, and run in linear time
//! whatever the input. Their errors describe the problem without quoting the input.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

// ---- Algorithms ----

/// The HMAC algorithms of the draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HmacAlgorithm {
    /// `hmac-sha1`
    Sha1,
    /// `hmac-sha256`
    Sha256,
    /// `hmac-sha384`
    Sha384,
    /// `hmac-sha512`
    Sha512,
}

impl HmacAlgorithm {
    /// Every HMAC algorithm.
    pub const ALL: [HmacAlgorithm; 4] =
        [HmacAlgorithm::Sha1, HmacAlgorithm::Sha256, HmacAlgorithm::Sha384, HmacAlgorithm::Sha512];

    /// A dense index (0..4), for per-algorithm tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The draft-cavage name.
    pub fn name(self) -> &'static str {
        Algorithm::Hmac(self).name()
    }
}

/// A signature algorithm of the draft, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// `hmac-sha1`, `hmac-sha256`, `hmac-sha384`, `hmac-sha512`.
    Hmac(HmacAlgorithm),
    /// `rsa-sha256`: RSASSA-PKCS1-v1_5 over SHA-256.
    RsaSha256,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Hmac(HmacAlgorithm::Sha1),
        Algorithm::Hmac(HmacAlgorithm::Sha256),
        Algorithm::Hmac(HmacAlgorithm::Sha384),
        Algorithm::Hmac(HmacAlgorithm::Sha512),
        Algorithm::RsaSha256,
    ];

    /// The draft-cavage name (lower case).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hmac(HmacAlgorithm::Sha1) => "hmac-sha1",
            Algorithm::Hmac(HmacAlgorithm::Sha256) => "hmac-sha256",
            Algorithm::Hmac(HmacAlgorithm::Sha384) => "hmac-sha384",
            Algorithm::Hmac(HmacAlgorithm::Sha512) => "hmac-sha512",
            Algorithm::RsaSha256 => "rsa-sha256",
        }
    }

    /// The algorithm named `name` (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }
}

// ---- Keyed HMAC ----

/// A secret with its keyed HMAC states, each made once (on first use, or up front with
/// [`KeyedSecret::prepare`]) and cloned per message, so a request never re-runs the key
/// schedule. The secret's bytes are the key (not base64-decoded).
pub struct KeyedSecret {
    secret: String,
    sha1: OnceLock<Hmac<Sha1>>,
    sha256: OnceLock<Hmac<Sha256>>,
    sha384: OnceLock<Hmac<Sha384>>,
    sha512: OnceLock<Hmac<Sha512>>,
}

/// An HMAC tag (at most 64 bytes).
pub type Tag = SmallVec<[u8; 64]>;

impl KeyedSecret {
    /// A secret, keyed lazily.
    pub fn new(secret: String) -> Self {
        KeyedSecret {
            secret,
            sha1: OnceLock::new(),
            sha256: OnceLock::new(),
            sha384: OnceLock::new(),
            sha512: OnceLock::new(),
        }
    }

    /// The secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Key the state of `alg` now.
    pub fn prepare(&self, alg: HmacAlgorithm) {
        let key = self.secret.as_bytes();
        match alg {
            HmacAlgorithm::Sha1 => drop(keyed(&self.sha1, key)),
            HmacAlgorithm::Sha256 => drop(keyed(&self.sha256, key)),
            HmacAlgorithm::Sha384 => drop(keyed(&self.sha384, key)),
            HmacAlgorithm::Sha512 => drop(keyed(&self.sha512, key)),
        }
    }

    /// Whether the state of `alg` is keyed already.
    pub fn is_prepared(&self, alg: HmacAlgorithm) -> bool {
        match alg {
            HmacAlgorithm::Sha1 => self.sha1.get().is_some(),
            HmacAlgorithm::Sha256 => self.sha256.get().is_some(),
            HmacAlgorithm::Sha384 => self.sha384.get().is_some(),
            HmacAlgorithm::Sha512 => self.sha512.get().is_some(),
        }
    }

    /// The HMAC of `msg`.
    pub fn sign(&self, alg: HmacAlgorithm, msg: &SigningString<'_>) -> Tag {
        let key = self.secret.as_bytes();
        match alg {
            HmacAlgorithm::Sha1 => tag_with(keyed(&self.sha1, key), msg),
            HmacAlgorithm::Sha256 => tag_with(keyed(&self.sha256, key), msg),
            HmacAlgorithm::Sha384 => tag_with(keyed(&self.sha384, key), msg),
            HmacAlgorithm::Sha512 => tag_with(keyed(&self.sha512, key), msg),
        }
    }

    /// Whether `provided` is the HMAC of `msg`, compared in constant time.
    pub fn verify(&self, alg: HmacAlgorithm, msg: &SigningString<'_>, provided: &[u8]) -> bool {
        bool::from(self.sign(alg, msg).as_slice().ct_eq(provided))
    }
}

fn keyed<'c, M: Mac + KeyInit>(cell: &'c OnceLock<M>, key: &[u8]) -> &'c M {
    cell.get_or_init(|| <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length"))
}

fn tag_with<M: Mac + Clone>(state: &M, msg: &SigningString<'_>) -> Tag {
    let mut mac = state.clone();
    msg.feed(|part| mac.update(part));
    SmallVec::from_slice(&mac.finalize().into_bytes())
}

// ---- The signing string ----

/// One line of the signing string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `name: value` (the name is lower-cased when fed; the value as given).
    Header {
        /// The header name.
        name: &'a str,
        /// Its value, trimmed by the caller as its grammar says.
        value: &'a str,
    },
    /// `(request-target): <lower-case method> <target>`.
    RequestTarget {
        /// The method (lower-cased when fed).
        method: &'a str,
        /// The path and query (or whatever the caller's convention is), as bytes: a decoded
        /// path need not be UTF-8.
        target: &'a [u8],
    },
}

/// The `(request-target)` pseudo-header name.
pub const REQUEST_TARGET: &str = "(request-target)";

/// The signing string: lines joined by `\n`, no trailing newline. Fed to a MAC or a signer in
/// pieces, without being assembled.
#[derive(Debug, Clone, Default)]
pub struct SigningString<'a> {
    lines: SmallVec<[Line<'a>; 8]>,
}

impl<'a> SigningString<'a> {
    /// An empty signing string.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a line.
    pub fn push(&mut self, line: Line<'a>) {
        self.lines.push(line);
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there is no line.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines.
    pub fn lines(&self) -> &[Line<'a>] {
        &self.lines
    }

    /// Feed the bytes of the signing string to `update`, in pieces.
    pub fn feed(&self, mut update: impl FnMut(&[u8])) {
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
                Line::RequestTarget { method, target } => {
                    update(b"(request-target): ");
                    update_lower(&mut update, method);
                    update(b" ");
                    update(target);
                }
            }
        }
    }

    /// The signing string as bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * self.lines.len());
        self.feed(|p| out.extend_from_slice(p));
        out
    }

    /// The `headers` parameter: the line names, lower-cased, joined by spaces.
    pub fn header_names(&self) -> String {
        let mut out = String::with_capacity(16 * self.lines.len());
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            match line {
                Line::Header { name, .. } => {
                    let start = out.len();
                    out.push_str(name);
                    out[start..].make_ascii_lowercase();
                }
                Line::RequestTarget { .. } => out.push_str(REQUEST_TARGET),
            }
        }
        out
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

/// The value of a signature header: `Signature keyId="..",algorithm="..",headers="..",signature=".."`.
pub fn signature_header(key_id: &str, algorithm: Algorithm, headers: &str, signature: &str) -> String {
    format!(
        "Signature keyId=\"{key_id}\",algorithm=\"{}\",headers=\"{headers}\",signature=\"{signature}\"",
        algorithm.name()
    )
}

// ---- Parsing the Signature header ----

/// The parameters of a `Signature` header, borrowed from the header value (a quoted value with
/// escapes, which only [`parse_lenient`] accepts, is unescaped into an owned string). A
/// parameter that was not sent is `None`; one sent empty is `Some("")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureParams<'a> {
    /// `keyId`.
    pub key_id: Option<Cow<'a, str>>,
    /// `algorithm`.
    pub algorithm: Option<Cow<'a, str>>,
    /// `signature` (still URL-percent-encoded, as sent).
    pub signature: Option<Cow<'a, str>>,
    /// `headers`: the space-separated list of signed header names.
    pub headers: Option<Cow<'a, str>>,
}

impl<'a> SignatureParams<'a> {
    /// The slot of a parameter name (ASCII case-insensitive), `None` for any other name.
    fn slot(&mut self, name: &str) -> Option<&mut Option<Cow<'a, str>>> {
        Some(if name.eq_ignore_ascii_case("keyId") {
            &mut self.key_id
        } else if name.eq_ignore_ascii_case("algorithm") {
            &mut self.algorithm
        } else if name.eq_ignore_ascii_case("signature") {
            &mut self.signature
        } else if name.eq_ignore_ascii_case("headers") {
            &mut self.headers
        } else {
            return None;
        })
    }
}

/// Why a `Signature` header did not parse. The text never quotes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The value does not start with the `Signature` scheme and a space.
    NotSignatureScheme,
    /// No parameter follows the scheme.
    NoParameters,
    /// A parameter name is empty or contains a character that is not a token character.
    BadName,
    /// A parameter name is not one of keyId, algorithm, signature, headers.
    UnknownParameter,
    /// A parameter was given twice.
    DuplicateParameter,
    /// A parameter name is not followed by `=`.
    ExpectedEquals,
    /// A parameter value does not start with `"`.
    ExpectedQuote,
    /// A quoted value has no closing `"`.
    Unterminated,
    /// A control character (NUL, CR, LF, DEL, ...) appears in the header.
    ControlCharacter,
    /// Something other than `,` follows a parameter.
    ExpectedComma,
    /// The header ends with a comma.
    TrailingComma,
    /// A quoted value has an escape other than `\"` and `\\` (lenient grammar).
    BadEscape,
}

impl ParseError {
    /// A short description (never quoting the input).
    pub fn as_str(self) -> &'static str {
        match self {
            ParseError::NotSignatureScheme => "Authorization is not a Signature header",
            ParseError::NoParameters => "Signature header has no parameters",
            ParseError::BadName => "invalid parameter name",
            ParseError::UnknownParameter => "unknown parameter",
            ParseError::DuplicateParameter => "duplicate parameter",
            ParseError::ExpectedEquals => "parameter name not followed by '='",
            ParseError::ExpectedQuote => "parameter value not quoted",
            ParseError::Unterminated => "unterminated quoted value",
            ParseError::ControlCharacter => "control character in header",
            ParseError::ExpectedComma => "expected ',' between parameters",
            ParseError::TrailingComma => "trailing ','",
            ParseError::BadEscape => "unsupported escape in a quoted value",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ParseError {}

const SCHEME: &str = "Signature";

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 `tchar`, as a table (this runs for every byte of every parameter name).
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    t
};

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// A control character other than horizontal tab.
fn is_ctl(b: u8) -> bool {
    (b < 0x20) & (b != b'\t') | (b == 0x7f)
}

/// Parse an `Authorization` header value of the `Signature` scheme, strictly (the grammar in
/// the module documentation).
pub fn parse(value: &str) -> Result<SignatureParams<'_>, ParseError> {
    let bytes = value.as_bytes();
    // A branch-free fold (rather than `any`) lets the compiler vectorise this scan.
    if bytes.iter().fold(false, |seen, &b| seen | is_ctl(b)) {
        return Err(ParseError::ControlCharacter);
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let bytes = value.as_bytes();
    if bytes.len() <= SCHEME.len()
        || !bytes[..SCHEME.len()].eq_ignore_ascii_case(SCHEME.as_bytes())
        || bytes[SCHEME.len()] != b' '
    {
        return Err(ParseError::NotSignatureScheme);
    }
    let mut i = SCHEME.len();
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    if i == bytes.len() {
        return Err(ParseError::NoParameters);
    }
    let mut out = SignatureParams::default();
    loop {
        // name
        let start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        if i == start {
            return Err(ParseError::BadName);
        }
        let name = &value[start..i];
        if i == bytes.len() || bytes[i] != b'=' {
            // A non-ASCII byte right after token characters is part of a bad name.
            return Err(if i < bytes.len() && bytes[i] >= 0x80 {
                ParseError::BadName
            } else {
                ParseError::ExpectedEquals
            });
        }
        i += 1;
        if i == bytes.len() || bytes[i] != b'"' {
            return Err(ParseError::ExpectedQuote);
        }
        i += 1;
        let vstart = i;
        match memchr::memchr(b'"', &bytes[i..]) {
            Some(n) => i += n,
            None => return Err(ParseError::Unterminated),
        }
        // Both ends are ASCII quotes, so these are char boundaries.
        let val = &value[vstart..i];
        i += 1;
        let slot = out.slot(name).ok_or(ParseError::UnknownParameter)?;
        if slot.is_some() {
            return Err(ParseError::DuplicateParameter);
        }
        *slot = Some(Cow::Borrowed(val));
        // separator
        if i == bytes.len() {
            return Ok(out);
        }
        if bytes[i] != b',' {
            return Err(ParseError::ExpectedComma);
        }
        i += 1;
        while i < bytes.len() && is_ows(bytes[i]) {
            i += 1;
        }
        if i == bytes.len() {
            return Err(ParseError::TrailingComma);
        }
    }
}

/// Parse an `Authorization` header value as the gateway's own HMAC verifier reads it, for
/// clients written against that verifier:
/// - the `Signature` scheme is optional (`Signature`/`signature`, then spaces);
/// - parameters are separated by `,` (empty ones between commas are ignored), with optional
///   spaces or tabs around names, `=`, values and commas;
/// - names are `keyId`, `algorithm`, `signature`, `headers` (ASCII case-insensitive); any other
///   name is malformed; a name given again replaces the earlier value;
/// - a value is quoted (`"..."`, with `\"` and `\\` as the only escapes) or bare (up to the next
///   comma, trimmed);
/// - a control character other than tab anywhere makes the header malformed.
pub fn parse_lenient(value: &str) -> Result<SignatureParams<'_>, ParseError> {
    let bytes = value.as_bytes();
    if bytes.iter().fold(false, |seen, &b| seen | is_ctl(b)) {
        return Err(ParseError::ControlCharacter);
    }
    let mut rest = value.trim_matches(|c| c == ' ' || c == '\t');
    for scheme in ["Signature", "signature"] {
        if let Some(after) = rest.strip_prefix(scheme) {
            if after.is_empty() || after.starts_with([' ', '\t']) {
                rest = after;
                break;
            }
        }
    }
    let mut out = SignatureParams::default();
    let mut any = false;
    loop {
        rest = ows(rest);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            continue;
        }
        if rest.is_empty() {
            return if any { Ok(out) } else { Err(ParseError::NoParameters) };
        }
        let name_len = rest.bytes().take_while(|&b| is_tchar(b)).count();
        if name_len == 0 {
            return Err(ParseError::BadName);
        }
        let (name, after) = rest.split_at(name_len);
        let after = ows(after).strip_prefix('=').ok_or(ParseError::ExpectedEquals)?;
        let after = ows(after);
        let (val, after) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (Cow::Borrowed(after[..end].trim_end_matches([' ', '\t'])), &after[end..])
            }
        };
        *out.slot(name).ok_or(ParseError::UnknownParameter)? = Some(val);
        any = true;
        rest = ows(after);
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err(ParseError::ExpectedComma);
        }
    }
}

/// `s` without leading spaces and tabs.
fn ows(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// The value of a quoted string whose opening quote was consumed, and what follows it.
fn unquote(s: &str) -> Result<(Cow<'_, str>, &str), ParseError> {
    let bytes = s.as_bytes();
    let end = memchr::memchr2(b'"', b'\\', bytes).ok_or(ParseError::Unterminated)?;
    if bytes[end] == b'"' {
        return Ok((Cow::Borrowed(&s[..end]), &s[end + 1..]));
    }
    let mut owned = String::with_capacity(s.len());
    let mut i = 0;
    loop {
        let Some(n) = memchr::memchr2(b'"', b'\\', &bytes[i..]) else {
            return Err(ParseError::Unterminated);
        };
        owned.push_str(&s[i..i + n]);
        i += n;
        if bytes[i] == b'"' {
            return Ok((Cow::Owned(owned), &s[i + 1..]));
        }
        match bytes.get(i + 1) {
            Some(&c @ (b'"' | b'\\')) => owned.push(c as char),
            Some(_) => return Err(ParseError::BadEscape),
            None => return Err(ParseError::Unterminated),
        }
        i += 2;
    }
}

/// Percent-decode `input` into `out` (`%XX`, hex digits of either case; every other byte,
/// `+` included, stands for itself). Returns the decoded length, or `None` when an escape is
/// malformed or the result does not fit in `out`.
pub fn percent_decode_into(input: &str, out: &mut [u8]) -> Option<usize> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut rest = input.as_bytes();
    let mut n = 0;
    loop {
        // Copy the run up to the next escape at once.
        let run = memchr::memchr(b'%', rest).unwrap_or(rest.len());
        out.get_mut(n..n + run)?.copy_from_slice(&rest[..run]);
        n += run;
        let Some((_, escape)) = rest[run..].split_first() else {
            return Some(n);
        };
        let ([hi, lo], tail) = escape.split_first_chunk::<2>()?;
        *out.get_mut(n)? = (hex(*hi)? << 4) | hex(*lo)?;
        n += 1;
        rest = tail;
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

/// Base64 (standard alphabet, padding optional) into `out`; `None` when invalid or too long.
pub fn base64_decode_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
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

    fn ok(v: &str) -> SignatureParams<'_> {
        parse(v).unwrap_or_else(|e| panic!("{v:?}: {e}"))
    }

    #[test]
    fn well_formed_headers_parse() {
        let p = ok(r#"Signature keyId="k1",algorithm="hmac-sha256",signature="abc%3D""#);
        assert_eq!(p.key_id.as_deref(), Some("k1"));
        assert_eq!(p.algorithm.as_deref(), Some("hmac-sha256"));
        assert_eq!(p.signature.as_deref(), Some("abc%3D"));
        assert_eq!(p.headers.as_deref(), None);

        let p = ok("signature KEYID=\"k\", Algorithm=\"a\",\t SIGNATURE=\"s\",  headers=\"date (request-target)\"");
        assert_eq!(
            (p.key_id.as_deref(), p.algorithm.as_deref(), p.signature.as_deref()),
            (Some("k"), Some("a"), Some("s"))
        );
        assert_eq!(p.headers.as_deref(), Some("date (request-target)"));

        // Order does not matter, scheme may be followed by several spaces, outer OWS ignored.
        let p = ok(" \tSignature   headers=\"x\",signature=\"s\",keyId=\"k\",algorithm=\"a\" ");
        assert_eq!(p.headers.as_deref(), Some("x"));
        // Backslash is literal; commas, '=' and spaces inside quotes are data.
        let p = ok(r#"Signature keyId="dom\user, =x",algorithm="a",signature="s""#);
        assert_eq!(p.key_id.as_deref(), Some("dom\\user, =x"));
        // Empty values parse (the middleware treats them as missing).
        let p = ok(r#"Signature keyId="",algorithm="",signature="""#);
        assert_eq!(p.key_id.as_deref(), Some(""));
        // Missing fields are not a parse error either.
        assert_eq!(ok(r#"Signature keyId="k""#).algorithm.as_deref(), None);
        // Unicode inside a value is kept.
        assert_eq!(ok("Signature keyId=\"ключ-🔑\"").key_id.as_deref(), Some("ключ-🔑"));
    }

    #[test]
    fn hostile_headers_are_malformed() {
        use ParseError::*;
        let table: &[(&str, ParseError)] = &[
            ("", NotSignatureScheme),
            ("Signature", NotSignatureScheme),
            ("Signature ", NotSignatureScheme), // trimmed to "Signature"
            ("Signature  \t", NotSignatureScheme),
            ("Signaturex keyId=\"k\"", NotSignatureScheme),
            ("Bearer keyId=\"k\"", NotSignatureScheme),
            ("keyId=\"k\",algorithm=\"a\",signature=\"s\"", NotSignatureScheme),
            ("Signature\tkeyId=\"k\"", NotSignatureScheme),
            ("Signature ,keyId=\"k\"", BadName),
            ("Signature keyId=\"k\",", TrailingComma),
            ("Signature keyId=\"k\", ", TrailingComma),
            ("Signature keyId=\"k\",,algorithm=\"a\"", BadName),
            ("Signature keyId=\"k\" ,algorithm=\"a\"", ExpectedComma),
            ("Signature keyId=\"k\"algorithm=\"a\"", ExpectedComma),
            ("Signature keyId = \"k\"", ExpectedEquals),
            ("Signature keyId= \"k\"", ExpectedQuote),
            ("Signature keyId", ExpectedEquals),
            ("Signature keyId=", ExpectedQuote),
            ("Signature keyId=k", ExpectedQuote),
            ("Signature keyId='k'", ExpectedQuote),
            ("Signature keyId=\"k", Unterminated),
            ("Signature keyId=\"", Unterminated),
            ("Signature keyId=\"k\",signature=\"abc", Unterminated),
            ("Signature keyId=\"a\\\"b\"", ExpectedComma), // no escapes: value ends at the first quote
            ("Signature keyId=\"k\",keyid=\"k\"", DuplicateParameter),
            ("Signature signature=\"a\",SIGNATURE=\"a\"", DuplicateParameter),
            ("Signature headers=\"\",headers=\"date\"", DuplicateParameter),
            ("Signature keyId=\"k\",created=\"1\"", UnknownParameter),
            ("Signature keyId=\"k\",expires=\"1\"", UnknownParameter),
            ("Signature key_id=\"k\"", UnknownParameter),
            ("Signature kéyId=\"k\"", BadName),
            ("Signature ключ=\"k\"", BadName),
            ("Signature keyId=\"k\0\"", ControlCharacter),
            ("Signature keyId=\"k\"\0", ControlCharacter),
            ("\0Signature keyId=\"k\"", ControlCharacter),
            ("Signature keyId=\"k\r\nX-Injected: 1\"", ControlCharacter),
            ("Signature keyId=\"k\x7f\"", ControlCharacter),
            ("Signature keyId=\"k\x1b[31m\"", ControlCharacter),
        ];
        for (input, want) in table {
            assert_eq!(parse(input), Err(*want), "{input:?}");
        }
    }

    #[test]
    fn errors_do_not_quote_the_input() {
        let secretish = "Signature keyId=\"TOPSECRET\",bogus=\"TOPSECRET\"";
        let e = parse(secretish).unwrap_err();
        assert_eq!(e, ParseError::UnknownParameter);
        assert!(!e.to_string().contains("TOPSECRET"));
    }

    #[test]
    fn very_long_and_binary_headers_finish_quickly() {
        // 1 MiB of junk in a value: parses (linear scan), the value is kept whole.
        let big = "A".repeat(1 << 20);
        let v = format!("Signature keyId=\"{big}\",algorithm=\"hmac-sha256\",signature=\"s\"");
        assert_eq!(ok(&v).key_id.as_deref().map(str::len), Some(1 << 20));
        // 100k parameters: the first duplicate stops the scan.
        let many = format!("Signature {}", vec!["keyId=\"k\""; 100_000].join(","));
        assert_eq!(parse(&many), Err(ParseError::DuplicateParameter));
        // 1 MiB of commas and quotes.
        let junk = format!("Signature {}", ",\"".repeat(1 << 19));
        assert_eq!(parse(&junk), Err(ParseError::BadName));
        let unterminated = format!("Signature keyId=\"{}", "x".repeat(1 << 20));
        assert_eq!(parse(&unterminated), Err(ParseError::Unterminated));
        // Every byte value 0..=255 (as Latin-1 chars, so valid UTF-8) in a value.
        let all: String = (0u8..=255).map(char::from).filter(|c| *c != '"').collect();
        assert_eq!(parse(&format!("Signature keyId=\"{all}\"")), Err(ParseError::ControlCharacter));
        let printable: String = (0x20u8..=0xff).filter(|&b| b != b'"' && b != 0x7f).map(char::from).collect();
        assert_eq!(ok(&format!("Signature keyId=\"{printable}\"")).key_id.as_deref(), Some(printable.as_str()));
    }

    #[test]
    fn tchar_table_is_rfc9110() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), want, "{b:#04x}");
        }
    }

    #[test]
    fn lenient_headers_parse_as_the_gateway_verifier_reads_them() {
        let p = parse_lenient(r#"keyId = "k1" , algorithm= "hmac-sha256",signature ="abc%3D""#).unwrap();
        assert_eq!(p.key_id.as_deref(), Some("k1"));
        assert_eq!(p.algorithm.as_deref(), Some("hmac-sha256"));
        assert_eq!(p.signature.as_deref(), Some("abc%3D"));
        let p = parse_lenient(r#"Signature keyId="a",keyId="b",,headers="date (request-target)","#).unwrap();
        assert_eq!(p.key_id.as_deref(), Some("b"), "a later duplicate wins");
        assert_eq!(p.headers.as_deref(), Some("date (request-target)"));
        let p = parse_lenient(r#"signature keyId=bare-token ,algorithm="q\"u\\o""#).unwrap();
        assert_eq!(p.key_id.as_deref(), Some("bare-token"));
        assert_eq!(p.algorithm.as_deref(), Some("q\"u\\o"));
        assert!(matches!(p.algorithm, Some(Cow::Owned(_))));
        use ParseError::*;
        for (input, want) in [
            ("", NoParameters),
            ("Signature", NoParameters),
            (",,", NoParameters),
            ("keyId", ExpectedEquals),
            ("keyId=\"k", Unterminated),
            ("keyId=\"k\\", Unterminated),
            ("keyId=\"a\\nb\"", BadEscape),
            ("keyId=\"k\" x", ExpectedComma),
            ("created=\"1\"", UnknownParameter),
            ("=\"1\"", BadName),
            ("keyId=\"k\r\n\"", ControlCharacter),
        ] {
            assert_eq!(parse_lenient(input), Err(want), "{input:?}");
        }
        // Linear on hostile input.
        let many = vec!["keyId=\"k\""; 100_000].join(",");
        assert_eq!(parse_lenient(&many).unwrap().key_id.as_deref(), Some("k"));
        let escapes = format!("keyId=\"{}\"", "\\\\".repeat(1 << 18));
        assert_eq!(parse_lenient(&escapes).unwrap().key_id.map(|k| k.len()), Some(1 << 18));
    }

    #[test]
    fn query_escape_is_gos() {
        // Go: url.QueryEscape("a+b/c=d e~-_.ü") == "a%2Bb%2Fc%3Dd+e~-_.%C3%BC"
        assert_eq!(query_escape("a+b/c=d e~-_.ü"), "a%2Bb%2Fc%3Dd+e~-_.%C3%BC");
    }

    #[test]
    fn signing_strings_and_header_names() {
        let mut s = SigningString::new();
        s.push(Line::RequestTarget { method: "PaTCH", target: b"/a/b?c=d%20e" });
        s.push(Line::Header { name: "DATE", value: "Fri, 03 May 2024 12:00:42 GMT" });
        s.push(Line::Header { name: "X-Custom", value: "" });
        assert_eq!(
            s.to_vec(),
            b"(request-target): patch /a/b?c=d%20e\ndate: Fri, 03 May 2024 12:00:42 GMT\nx-custom: "
        );
        assert_eq!(s.header_names(), "(request-target) date x-custom");
        let long = format!("X-{}", "AbC".repeat(50));
        let mut s = SigningString::new();
        s.push(Line::Header { name: &long, value: "1" });
        assert_eq!(s.to_vec(), format!("{}: 1", long.to_lowercase()).into_bytes());
        assert_eq!(
            signature_header("k", Algorithm::RsaSha256, "date", "c2ln"),
            r#"Signature keyId="k",algorithm="rsa-sha256",headers="date",signature="c2ln""#
        );
    }

    #[test]
    fn keyed_state_matches_fresh_keying() {
        // A state keyed once and cloned gives the same tags as keying anew every time, for
        // short keys and keys longer than the hash block (which HMAC hashes first).
        for secret in ["k".to_owned(), "s".repeat(64), "L".repeat(200)] {
            let keyed = KeyedSecret::new(secret.clone());
            let mut msg = SigningString::new();
            msg.push(Line::Header { name: "date", value: "x" });
            let mut fresh = <Hmac<Sha384> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
            fresh.update(b"date: x");
            let tag = fresh.finalize().into_bytes();
            for _ in 0..3 {
                assert!(keyed.verify(HmacAlgorithm::Sha384, &msg, &tag));
            }
            assert!(!keyed.verify(HmacAlgorithm::Sha384, &msg, &tag[..47]));
            assert!(!keyed.verify(HmacAlgorithm::Sha512, &msg, &tag));
            assert!(keyed.is_prepared(HmacAlgorithm::Sha384) && !keyed.is_prepared(HmacAlgorithm::Sha1));
        }
    }

    #[test]
    fn algorithm_names() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(&a.name().to_ascii_uppercase()), Some(a));
        }
        assert_eq!(Algorithm::from_name("hmac-md5"), None);
        assert_eq!(HmacAlgorithm::Sha512.name(), "hmac-sha512");
    }

    #[test]
    fn percent_decoding() {
        let mut buf = [0u8; 16];
        let mut dec = |s: &str| percent_decode_into(s, &mut buf).map(|n| buf[..n].to_vec());
        assert_eq!(dec("ab%2Bc%3D%3d").as_deref(), Some(&b"ab+c=="[..]));
        assert_eq!(dec("a+b/c=").as_deref(), Some(&b"a+b/c="[..]), "unencoded passes through, '+' is not a space");
        assert_eq!(dec("%2f%2F").as_deref(), Some(&b"//"[..]));
        assert_eq!(dec(""), Some(vec![]));
        assert_eq!(dec("%"), None);
        assert_eq!(dec("%2"), None);
        assert_eq!(dec("%zz"), None);
        assert_eq!(dec("%+1"), None);
        assert_eq!(dec(&"a".repeat(17)), None, "does not fit");
        assert_eq!(dec(&"%41".repeat(16)).map(|v| v.len()), Some(16));
    }
}
