//! Reading the `coprocess.Object` wire format without decoding it.
//!
//! [`validate`] checks bytes against the schema exactly as strictly as a prost decode (the
//! differential fuzz target `wire_validate` holds them to that), without allocating. The
//! field readers then walk validated bytes lazily, so a middleware that reads three headers
//! pays for three scans of the request, not for building every map of the Object.

use crate::schema::{kind, mini_request_object as req, object, return_overrides, tag, Kind, Msg, LEN};
use std::fmt;

/// Why bytes are not a valid Object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// One field value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2.
    Len(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
    /// A group (wire types 3..4), skipped whole; only unknown fields may be groups.
    Group,
}

#[inline(always)]
fn varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    if let Some((&b, rest)) = buf.split_first() {
        if b < 0x80 {
            *buf = rest;
            return Ok(u64::from(b));
        }
    }
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(WireError("truncated varint"));
        };
        *buf = rest;
        if i == 9 && b > 1 {
            return Err(WireError("invalid varint"));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError("invalid varint"))
}

#[inline(always)]
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(WireError("field runs past the end of the message"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// Read one tag: (field number, wire type).
#[inline(always)]
fn key(buf: &mut &[u8]) -> Result<(u32, u8), WireError> {
    if let Some((&b, rest)) = buf.split_first() {
        // One-byte tags (fields 1..15) are nearly all of them.
        if (8..0x80).contains(&b) && (b & 7) <= 5 {
            *buf = rest;
            return Ok((u32::from(b >> 3), b & 7));
        }
    }
    let k = varint(buf)?;
    if k > u64::from(u32::MAX) {
        return Err(WireError("invalid key value"));
    }
    let wire = (k & 7) as u8;
    if wire > 5 {
        return Err(WireError("invalid wire type"));
    }
    let field = (k >> 3) as u32;
    if field == 0 {
        return Err(WireError("invalid tag value: 0"));
    }
    Ok((field, wire))
}

/// Skip a group whose start tag was already read, up to its matching end tag.
fn skip_group(buf: &mut &[u8], field: u32, depth: u32) -> Result<(), WireError> {
    if depth == 0 {
        return Err(WireError("recursion limit reached"));
    }
    loop {
        if buf.is_empty() {
            return Err(WireError("unterminated group"));
        }
        let (f, w) = key(buf)?;
        if w == 4 {
            return if f == field { Ok(()) } else { Err(WireError("unexpected end group tag")) };
        }
        value(buf, f, w, depth - 1)?;
    }
}

#[inline]
fn value<'a>(buf: &mut &'a [u8], field: u32, wire: u8, depth: u32) -> Result<Value<'a>, WireError> {
    Ok(match wire {
        0 => Value::Varint(varint(buf)?),
        1 => Value::Fixed64(u64::from_le_bytes(take(buf, 8)?.try_into().expect("8 bytes"))),
        2 => {
            let n = varint(buf)?;
            let n = usize::try_from(n).map_err(|_| WireError("length too large"))?;
            Value::Len(take(buf, n)?)
        }
        3 => {
            skip_group(buf, field, depth)?;
            Value::Group
        }
        4 => return Err(WireError("unexpected end group tag")),
        5 => Value::Fixed32(u32::from_le_bytes(take(buf, 4)?.try_into().expect("4 bytes"))),
        _ => return Err(WireError("invalid wire type")),
    })
}

/// Iterates the fields of one message. Stops at the first malformed field (after
/// [`validate`] there is none).
#[derive(Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The fields of a message's bytes.
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let parsed = key(&mut self.buf).and_then(|(f, w)| value(&mut self.buf, f, w, 100).map(|v| (f, v)));
        match parsed {
            Ok(item) => Some(item),
            Err(_) => {
                self.buf = &[];
                None
            }
        }
    }
}

/// UTF-8 check of a string field; the ASCII test is the fast path for typical header data.
#[inline]
fn check_utf8(b: &[u8]) -> Result<(), WireError> {
    if is_ascii(b) || std::str::from_utf8(b).is_ok() {
        Ok(())
    } else {
        Err(WireError("invalid string value: data is not UTF-8 encoded"))
    }
}

/// Whether every byte is ASCII: eight bytes per step, no early exit, inlined (header names
/// and values are short, where a call into `<[u8]>::is_ascii` costs more than the scan).
#[inline(always)]
fn is_ascii(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    let mut acc = 0u64;
    for c in &mut chunks {
        acc |= u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    for &x in chunks.remainder() {
        acc |= u64::from(x);
    }
    acc & 0x8080_8080_8080_8080 == 0
}

/// A string field's bytes as `&str`.
fn utf8(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError("invalid string value: data is not UTF-8 encoded"))
}

/// Validated string bytes as `&str` ("" if they were not UTF-8, which validation excludes).
pub fn str_of(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// Validate one `map<string, string>` entry and return its key and value (both checked UTF-8).
#[inline]
fn validate_str_entry(buf: &[u8], depth: u32) -> Result<(&[u8], &[u8]), WireError> {
    // Fast path: the canonical encoding `0a <len> key 12 <len> value`, as every encoder
    // writes a non-empty key and value. Anything else (or any error) takes the general path,
    // which reads the same bytes in the same order and so reaches the same verdict.
    let mut b = buf;
    if let Some((&0x0a, rest)) = b.split_first() {
        b = rest;
        if let Ok(k) = varint(&mut b).and_then(|n| take(&mut b, n as usize)) {
            if let Some((&0x12, rest)) = b.split_first() {
                b = rest;
                if let Ok(v) = varint(&mut b).and_then(|n| take(&mut b, n as usize)) {
                    if b.is_empty() {
                        check_utf8(k)?;
                        check_utf8(v)?;
                        return Ok((k, v));
                    }
                }
            }
        }
    }
    validate_str_entry_general(buf, depth)
}

fn validate_str_entry_general(mut buf: &[u8], depth: u32) -> Result<(&[u8], &[u8]), WireError> {
    let (mut k, mut v): (&[u8], &[u8]) = (&[], &[]);
    while !buf.is_empty() {
        let (field, wire) = key(&mut buf)?;
        let val = value(&mut buf, field, wire, depth)?;
        match (field, val) {
            (1 | 2, Value::Len(b)) => {
                check_utf8(b)?;
                if field == 1 {
                    k = b;
                } else {
                    v = b;
                }
            }
            (1 | 2, _) => return Err(WireError("invalid wire type for a known field")),
            _ => {}
        }
    }
    Ok((k, v))
}

/// A `map<string, string>` entry as validated bytes (both UTF-8).
pub type Entry<'a> = (&'a [u8], &'a [u8]);

/// The map entries a dispatch reads most, collected while validating, in wire order (a key
/// sent twice appears twice; the later entry is the map's value). Kept as bytes: they are
/// checked UTF-8 (an ASCII scan for typical data) and turned into `&str` only when read.
#[derive(Debug, Default)]
pub struct Index<'a> {
    /// `Object.request.headers` entries (every request occurrence).
    pub headers: Vec<Entry<'a>>,
    /// `Object.spec` entries.
    pub spec: Vec<Entry<'a>>,
    /// `Object.hook_type` (the last occurrence, as a decode keeps; 0 when absent).
    pub hook_type: i32,
    /// `Object.hook_name` (the last occurrence; "" when absent).
    pub hook_name: &'a str,
    /// How many times `Object.request` occurs, and its last occurrence.
    pub request_count: usize,
    /// The bytes of the last `Object.request` occurrence (empty when absent).
    pub request: &'a [u8],
    /// Whether `Object.session` occurs.
    pub has_session: bool,
    /// `request.return_overrides` as sent: `response_code`, `response_error`, `response_body`
    /// (merged over occurrences: the last of each field).
    pub overrides: (i32, &'a [u8], &'a [u8]),
}

/// Validate a message of type `msg`, collecting the [`Index`] entries met on the way.
fn validate_message<'a>(mut buf: &'a [u8], msg: Msg, depth: u32, index: &mut Index<'a>) -> Result<(), WireError> {
    if depth == 0 {
        return Err(WireError("recursion limit reached"));
    }
    while !buf.is_empty() {
        if let Msg::MiniRequestObject = msg {
            if request_field_fast(&mut buf, depth, index)? {
                continue;
            }
        }
        let (field, wire) = key(&mut buf)?;
        let v = value(&mut buf, field, wire, depth - 1)?;
        let Some(kind) = kind(msg, field) else {
            continue; // unknown fields are skipped, whatever their (valid) wire type
        };
        if let Msg::ReturnOverrides = msg {
            match (field, v) {
                (return_overrides::RESPONSE_CODE, Value::Varint(n)) => index.overrides.0 = n as i32,
                (return_overrides::RESPONSE_ERROR, Value::Len(b)) => index.overrides.1 = b,
                (return_overrides::RESPONSE_BODY, Value::Len(b)) => index.overrides.2 = b,
                _ => {}
            }
        }
        if let Msg::Object = msg {
            match (field, v) {
                (object::HOOK_TYPE, Value::Varint(n)) => index.hook_type = n as i32,
                (object::HOOK_NAME, Value::Len(b)) => index.hook_name = utf8(b)?,
                (object::REQUEST, Value::Len(b)) => {
                    index.request_count += 1;
                    index.request = b;
                }
                (object::SESSION, _) => index.has_session = true,
                _ => {}
            }
        }
        match (kind, v) {
            (Kind::Varint, Value::Varint(_)) | (Kind::Double, Value::Fixed64(_)) | (Kind::Bytes, Value::Len(_)) => {}
            (Kind::RepeatedDouble, Value::Fixed64(_)) => {}
            (Kind::RepeatedDouble, Value::Len(b)) if b.len() % 8 == 0 => {}
            (Kind::RepeatedDouble, Value::Len(_)) => return Err(WireError("invalid packed length")),
            (Kind::Str, Value::Len(b)) => check_utf8(b)?,
            (Kind::StrMap, Value::Len(b)) => match (msg, field) {
                (Msg::MiniRequestObject, req::HEADERS) => index.headers.push(validate_str_entry(b, depth - 1)?),
                (Msg::Object, object::SPEC) => index.spec.push(validate_str_entry(b, depth - 1)?),
                _ => validate_entry(b, None, depth - 1, index)?,
            },
            (Kind::MsgMap(m), Value::Len(b)) => validate_entry(b, Some(m), depth - 1, index)?,
            (Kind::Msg(m), Value::Len(b)) => validate_message(b, m, depth - 1, index)?,
            _ => return Err(WireError("invalid wire type for a known field")),
        }
    }
    Ok(())
}

/// Validate one map entry as a message of its own: field 1 a string key, field 2 a string
/// value (`value` None) or a message `M` (`value` Some(M)); unknown fields skipped.
fn validate_entry<'a>(
    mut buf: &'a [u8],
    value_msg: Option<Msg>,
    depth: u32,
    index: &mut Index<'a>,
) -> Result<(), WireError> {
    if depth == 0 {
        return Err(WireError("recursion limit reached"));
    }
    while !buf.is_empty() {
        let (field, wire) = key(&mut buf)?;
        match (field, value(&mut buf, field, wire, depth - 1)?, value_msg) {
            (1, Value::Len(b), _) | (2, Value::Len(b), None) => check_utf8(b)?,
            (2, Value::Len(b), Some(m)) => validate_message(b, m, depth - 1, index)?,
            (1 | 2, _, _) => return Err(WireError("invalid wire type for a known field")),
            _ => {}
        }
    }
    Ok(())
}

const TAG_HEADERS: u8 = tag(req::HEADERS, LEN);
const TAG_DELETE_HEADERS: u8 = tag(req::DELETE_HEADERS, LEN);
const TAG_BODY: u8 = tag(req::BODY, LEN);
const TAG_URL: u8 = tag(req::URL, LEN);
const TAG_DELETE_PARAMS: u8 = tag(req::DELETE_PARAMS, LEN);
const TAG_METHOD: u8 = tag(req::METHOD, LEN);
const TAG_REQUEST_URI: u8 = tag(req::REQUEST_URI, LEN);
const TAG_SCHEME: u8 = tag(req::SCHEME, LEN);
const TAG_RAW_BODY: u8 = tag(req::RAW_BODY, LEN);
const TAG_RETURN_OVERRIDES: u8 = tag(req::RETURN_OVERRIDES, LEN);

/// The common fields of a `MiniRequestObject`, recognised by their one-byte tag and checked
/// exactly as the general loop of [`validate_message`] checks them (same functions, same
/// depth), without building a [`Value`]. Returns false, consuming nothing, for any other tag.
#[inline(always)]
fn request_field_fast<'a>(buf: &mut &'a [u8], depth: u32, index: &mut Index<'a>) -> Result<bool, WireError> {
    let Some((&tag, rest)) = buf.split_first() else {
        return Ok(false);
    };
    match tag {
        TAG_HEADERS => {
            *buf = rest;
            let entry = len_payload(buf)?;
            index.headers.push(validate_str_entry(entry, depth - 1)?);
        }
        TAG_DELETE_HEADERS | TAG_BODY | TAG_URL | TAG_DELETE_PARAMS | TAG_METHOD | TAG_REQUEST_URI | TAG_SCHEME => {
            *buf = rest;
            check_utf8(len_payload(buf)?)?;
        }
        TAG_RAW_BODY => {
            *buf = rest;
            len_payload(buf)?;
        }
        TAG_RETURN_OVERRIDES => {
            *buf = rest;
            let ro = len_payload(buf)?;
            validate_message(ro, Msg::ReturnOverrides, depth - 1, index)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A length-delimited payload whose tag was just read.
#[inline(always)]
fn len_payload<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    let n = varint(buf)?;
    let n = usize::try_from(n).map_err(|_| WireError("length too large"))?;
    take(buf, n)
}

/// Whether `bytes` decode as a `coprocess.Object`, with the same verdict as prost.
pub fn validate(bytes: &[u8]) -> Result<(), WireError> {
    validate_message(bytes, Msg::Object, 100, &mut Index::default())
}

/// [`validate`], also returning the [`Index`] so reading those maps later costs no second pass.
pub fn validate_indexed(bytes: &[u8]) -> Result<Index<'_>, WireError> {
    let mut index = Index { headers: Vec::with_capacity(32), spec: Vec::with_capacity(8), ..Index::default() };
    validate_message(bytes, Msg::Object, 100, &mut index)?;
    Ok(index)
}

// ---- Readers over validated bytes ----

/// The string in a length-delimited value (validated bytes are UTF-8).
pub fn as_str(v: Value<'_>) -> Option<&str> {
    match v {
        Value::Len(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// The last occurrence of a length-delimited field.
pub fn last_len(buf: &[u8], field: u32) -> Option<&[u8]> {
    Fields::new(buf)
        .filter(|(f, _)| *f == field)
        .filter_map(|(_, v)| if let Value::Len(b) = v { Some(b) } else { None })
        .last()
}

/// The last occurrence of a string field ("" when absent, as prost decodes it).
pub fn last_str(buf: &[u8], field: u32) -> &str {
    last_len(buf, field).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
}

/// The last occurrence of a varint field (0 when absent).
pub fn last_varint(buf: &[u8], field: u32) -> u64 {
    Fields::new(buf)
        .filter(|(f, _)| *f == field)
        .filter_map(|(_, v)| if let Value::Varint(n) = v { Some(n) } else { None })
        .last()
        .unwrap_or(0)
}

/// The key and value of one `map<string, string>` entry.
pub fn map_entry(entry: &[u8]) -> (&str, &str) {
    let (mut k, mut v) = ("", "");
    for (f, val) in Fields::new(entry) {
        match (f, as_str(val)) {
            (1, Some(s)) => k = s,
            (2, Some(s)) => v = s,
            _ => {}
        }
    }
    (k, v)
}

/// The entries of a `map<string, string>` field, in wire order (later entries win).
pub fn map_entries(buf: &[u8], field: u32) -> impl Iterator<Item = (&str, &str)> {
    Fields::new(buf).filter(move |(f, _)| *f == field).filter_map(|(_, v)| {
        if let Value::Len(b) = v {
            Some(map_entry(b))
        } else {
            None
        }
    })
}

/// A map value by exact key (the last entry wins, as in a decoded map).
pub fn map_get<'a>(buf: &'a [u8], field: u32, key: &str) -> Option<&'a str> {
    map_entries(buf, field).filter(|(k, _)| *k == key).map(|(_, v)| v).last()
}

/// A map value matched case-insensitively with the same answer a decoded `BTreeMap` gives to
/// "exact key, else the first key in order that matches ignoring ASCII case".
pub fn map_get_ignore_case<'a>(buf: &'a [u8], field: u32, key: &str) -> Option<&'a str> {
    get_ignore_case(map_entries(buf, field).map(|(k, v)| (k.as_bytes(), v.as_bytes())), key.as_bytes()).map(str_of)
}

/// [`map_get_ignore_case`] over (key, value) pairs in wire order (byte order is `str` order).
pub fn get_ignore_case<'a>(pairs: impl IntoIterator<Item = Entry<'a>>, key: &[u8]) -> Option<&'a [u8]> {
    let mut exact = None;
    let mut best: Option<Entry<'a>> = None;
    for (k, v) in pairs {
        if k.len() != key.len() {
            continue; // most names differ in length: one compare instead of two scans
        }
        if k == key {
            exact = Some(v);
        } else if k.eq_ignore_ascii_case(key) {
            match best {
                Some((bk, _)) if bk < k => {}
                _ => best = Some((k, v)),
            }
        }
    }
    exact.or(best.map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{MiniRequestObject, Object};
    use prost::Message;

    #[test]
    fn agrees_with_prost_on_simple_cases() {
        let mut req = MiniRequestObject { method: "GET".into(), ..Default::default() };
        req.headers.insert("A".into(), "1".into());
        let obj = Object { hook_name: "X".into(), request: Some(req), ..Default::default() };
        let bytes = obj.encode_to_vec();
        assert!(validate(&bytes).is_ok());
        for cut in 0..bytes.len() {
            assert_eq!(validate(&bytes[..cut]).is_ok(), Object::decode(&bytes[..cut]).is_ok(), "cut at {cut}");
        }
        // hook_name with invalid UTF-8.
        let bad = [0x12, 0x01, 0xff];
        assert!(validate(&bad).is_err() && Object::decode(&bad[..]).is_err());
        // Unknown fields of every wire type are skipped.
        let unknown = [0x78, 0x01, 0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x8a, 0x01, 0x00, 0x95, 0x01, 1, 2, 3, 4];
        assert!(validate(&unknown).is_ok() && Object::decode(&unknown[..]).is_ok());
        // A known field with the wrong wire type.
        let wrong = [0x08, 0x00, 0x10, 0x01];
        assert_eq!(validate(&wrong).is_ok(), Object::decode(&wrong[..]).is_ok());
    }

    #[test]
    fn case_insensitive_lookup_matches_btreemap_semantics() {
        let mut req = MiniRequestObject::default();
        for (k, v) in [("date", "1"), ("DATE", "2"), ("Date", "3"), ("x", "4")] {
            req.headers.insert(k.into(), v.into());
        }
        let bytes = req.encode_to_vec();
        for key in ["Date", "date", "DATE", "dAtE", "X", "nope"] {
            let decoded = req
                .headers
                .get(key)
                .or_else(|| req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v));
            assert_eq!(map_get_ignore_case(&bytes, 1, key), decoded.map(String::as_str), "{key}");
        }
    }
}
