//! Parsing of the draft-cavage HTTP-signature `Authorization` header as
//! [`HMACSignatureAuth`](super::hmac_auth) receives it:
//!
//! ```text
//! Signature keyId="<id>",algorithm="<alg>",signature="<sig>"[,headers="<h1> <h2>"]
//! ```
//!
//! The grammar accepted, strictly:
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
//! The parser borrows from its input, allocates nothing and runs in linear time whatever the
//! input. Its errors describe the problem without quoting the input.

use std::fmt;

/// The parameters of a `Signature` header, borrowed from the header value. A parameter that
/// was not sent is `None`; one sent empty is `Some("")`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureParams<'a> {
    /// `keyId`.
    pub key_id: Option<&'a str>,
    /// `algorithm`.
    pub algorithm: Option<&'a str>,
    /// `signature` (still URL-percent-encoded, as sent).
    pub signature: Option<&'a str>,
    /// `headers`: the space-separated list of signed header names.
    pub headers: Option<&'a str>,
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

/// Parse an `Authorization` header value of the `Signature` scheme.
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
        let slot = if name.eq_ignore_ascii_case("keyId") {
            &mut out.key_id
        } else if name.eq_ignore_ascii_case("algorithm") {
            &mut out.algorithm
        } else if name.eq_ignore_ascii_case("signature") {
            &mut out.signature
        } else if name.eq_ignore_ascii_case("headers") {
            &mut out.headers
        } else {
            return Err(ParseError::UnknownParameter);
        };
        if slot.is_some() {
            return Err(ParseError::DuplicateParameter);
        }
        *slot = Some(val);
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

/// Parse an HTTP date (RFC 9110 section 5.6.7) into unix seconds. Accepted: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`; also with a one-digit day, `UTC`/`UT`/`Z` or a numeric
/// `+hhmm`/`-hhmm` zone), the obsolete RFC 850 form (`Sunday, 06-Nov-94 08:49:37 GMT`; two-digit
/// years below 70 are 20xx) and asctime (`Sun Nov  6 08:49:37 1994`). Weekday names must be
/// valid but are not checked against the date. Anything else is `None`.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim_matches(|c| c == ' ' || c == '\t');
    if !s.is_ascii() || s.len() > 64 {
        return None;
    }
    imf_fixdate(s).or_else(|| rfc850_date(s)).or_else(|| asctime_date(s))
}

const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn short_weekday(s: &str) -> bool {
    WEEKDAYS.iter().any(|d| d[..3].eq_ignore_ascii_case(s))
}

fn month(s: &str) -> Option<u32> {
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(s)).map(|i| i as u32 + 1)
}

fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `HH:MM:SS` as seconds of the day.
fn time_of_day(s: &str) -> Option<i64> {
    let mut it = s.split(':');
    let (h, m, sec) = (digits(it.next()?, 2, 2)?, digits(it.next()?, 2, 2)?, digits(it.next()?, 2, 2)?);
    if it.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // A leap second (60) counts as the last second of the minute.
    Some(i64::from(h * 3600 + m * 60 + sec.min(59)))
}

/// Days from 1970-01-01 to the given proleptic Gregorian date, validating it.
fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day == 0 || day > month_len[month as usize - 1] {
        return None;
    }
    // Count from 0000-03-01 so the leap day ends the year, in 400-year eras of 146097 days.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = i64::from((month + 9) % 12); // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

fn timestamp(year: i64, month: u32, day: u32, time: &str) -> Option<i64> {
    Some(days_from_civil(year, month, day)? * 86_400 + time_of_day(time)?)
}

fn zone_offset(z: &str) -> Option<i64> {
    if ["GMT", "UTC", "UT", "Z"].iter().any(|g| g.eq_ignore_ascii_case(z)) {
        return Some(0);
    }
    let sign = match z.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hhmm = digits(&z[1..], 4, 4)?;
    let (h, m) = (hhmm / 100, hhmm % 100);
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * i64::from(h * 3600 + m * 60))
}

fn imf_fixdate(s: &str) -> Option<i64> {
    let (weekday, rest) = s.split_once(", ")?;
    if !short_weekday(weekday) {
        return None;
    }
    let mut it = rest.split(' ');
    let day = digits(it.next()?, 1, 2)?;
    let month = month(it.next()?)?;
    let year = digits(it.next()?, 4, 4)?;
    let time = it.next()?;
    let offset = zone_offset(it.next()?)?;
    if it.next().is_some() {
        return None;
    }
    Some(timestamp(i64::from(year), month, day, time)? - offset)
}

fn rfc850_date(s: &str) -> Option<i64> {
    let (weekday, rest) = s.split_once(", ")?;
    if !WEEKDAYS.iter().any(|d| d.eq_ignore_ascii_case(weekday)) {
        return None;
    }
    let mut it = rest.split(' ');
    let mut date = it.next()?.split('-');
    let day = digits(date.next()?, 2, 2)?;
    let month = month(date.next()?)?;
    let yy = digits(date.next()?, 2, 2)?;
    let time = it.next()?;
    if date.next().is_some() || !it.next()?.eq_ignore_ascii_case("GMT") || it.next().is_some() {
        return None;
    }
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    timestamp(i64::from(year), month, day, time)
}

fn asctime_date(s: &str) -> Option<i64> {
    let mut it = s.split_ascii_whitespace();
    if !short_weekday(it.next()?) {
        return None;
    }
    let month = month(it.next()?)?;
    let day = digits(it.next()?, 1, 2)?;
    let time = it.next()?;
    let year = digits(it.next()?, 4, 4)?;
    if it.next().is_some() {
        return None;
    }
    timestamp(i64::from(year), month, day, time)
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
        assert_eq!(p.key_id, Some("k1"));
        assert_eq!(p.algorithm, Some("hmac-sha256"));
        assert_eq!(p.signature, Some("abc%3D"));
        assert_eq!(p.headers, None);

        let p = ok("signature KEYID=\"k\", Algorithm=\"a\",\t SIGNATURE=\"s\",  headers=\"date (request-target)\"");
        assert_eq!((p.key_id, p.algorithm, p.signature), (Some("k"), Some("a"), Some("s")));
        assert_eq!(p.headers, Some("date (request-target)"));

        // Order does not matter, scheme may be followed by several spaces, outer OWS ignored.
        let p = ok(" \tSignature   headers=\"x\",signature=\"s\",keyId=\"k\",algorithm=\"a\" ");
        assert_eq!(p.headers, Some("x"));
        // Backslash is literal; commas, '=' and spaces inside quotes are data.
        let p = ok(r#"Signature keyId="dom\user, =x",algorithm="a",signature="s""#);
        assert_eq!(p.key_id, Some("dom\\user, =x"));
        // Empty values parse (the middleware treats them as missing).
        let p = ok(r#"Signature keyId="",algorithm="",signature="""#);
        assert_eq!(p.key_id, Some(""));
        // Missing fields are not a parse error either.
        assert_eq!(ok(r#"Signature keyId="k""#).algorithm, None);
        // Unicode inside a value is kept.
        assert_eq!(ok("Signature keyId=\"ключ-🔑\"").key_id, Some("ключ-🔑"));
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
        assert_eq!(ok(&v).key_id.map(str::len), Some(1 << 20));
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
        assert_eq!(ok(&format!("Signature keyId=\"{printable}\"")).key_id, Some(printable.as_str()));
    }

    #[test]
    fn tchar_table_is_rfc9110() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), want, "{b:#04x}");
        }
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

    #[test]
    fn http_dates() {
        // Expected values from `date -u -d "<date>" +%s` (GNU coreutils).
        let table: &[(&str, Option<i64>)] = &[
            ("Fri, 03 May 2024 12:00:42 GMT", Some(1_714_737_642)),
            ("Fri, 3 May 2024 12:00:42 GMT", Some(1_714_737_642)),
            ("fri, 03 may 2024 12:00:42 gmt", Some(1_714_737_642)),
            ("Fri, 03 May 2024 12:00:42 UTC", Some(1_714_737_642)),
            ("Fri, 03 May 2024 14:00:42 +0200", Some(1_714_737_642)),
            ("Fri, 03 May 2024 07:30:42 -0430", Some(1_714_737_642)),
            ("  Fri, 03 May 2024 12:00:42 GMT\t", Some(1_714_737_642)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
            ("Sun Nov  6 08:49:37 1994", Some(784_111_777)),
            ("Tue, 29 Feb 2000 23:59:59 GMT", Some(951_868_799)),
            ("Mon, 01 Mar 2100 00:00:00 GMT", Some(4_107_542_400)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Wed, 31 Dec 1969 23:59:59 GMT", Some(-1)),
            ("Fri, 03 May 2024 12:00:60 GMT", Some(1_714_737_659)),
            ("", None),
            ("1714737642", None),
            ("2024-05-03T12:00:42Z", None),
            ("Fri, 03 May 2024 12:00:42", None),
            ("Fri, 03 May 2024 12:00:42 GMT extra", None),
            ("Fri,  03 May 2024 12:00:42 GMT", None),
            ("Fri 03 May 2024 12:00:42 GMT", None),
            ("Frx, 03 May 2024 12:00:42 GMT", None),
            ("Fri, 32 May 2024 12:00:42 GMT", None),
            ("Fri, 00 May 2024 12:00:42 GMT", None),
            ("Thu, 29 Feb 2001 12:00:42 GMT", None),
            ("Mon, 29 Feb 2100 00:00:00 GMT", None),
            ("Fri, 03 Mai 2024 12:00:42 GMT", None),
            ("Fri, 03 May 24 12:00:42 GMT", None),
            ("Fri, 03 May 2024 24:00:00 GMT", None),
            ("Fri, 03 May 2024 12:60:00 GMT", None),
            ("Fri, 03 May 2024 12:00:61 GMT", None),
            ("Fri, 03 May 2024 12:0:42 GMT", None),
            ("Fri, 03 May 2024 12:00:42:00 GMT", None),
            ("Fri, 03 May 2024 +1:00:42 GMT", None),
            ("Fri, 03 May 2024 12:00:42 PST", None),
            ("Fri, 03 May 2024 12:00:42 +2400", None),
            ("Fri, 03 May 2024 12:00:42 +02", None),
            ("Fri, 03 May 2024 12:00:42 GMT\0", None),
            ("Fri, 03 Мау 2024 12:00:42 GMT", None),
            ("Sunday, 06-Nov-1994 08:49:37 GMT", None),
            ("Sunday, 06-Nov-94 08:49:37 UTC", None),
            ("Sun Nov 6 08:49:37", None),
        ];
        for (input, want) in table {
            assert_eq!(parse_http_date(input), *want, "{input:?}");
        }
        assert_eq!(parse_http_date(&"Fri, 03 May 2024 12:00:42 GMT ".repeat(10_000)), None);
    }
}
