//! What a middleware sees and does: a read view of the gateway's Object plus recorded edits.
//!
//! Reads always show the Object as the gateway sent it. Edits are recorded, not applied in
//! place, so the runtime can answer an *additive* set of edits by copying the input bytes and
//! appending the encoded edits (protobuf merges them), and take the full decode/re-encode path
//! only for edits that remove or rewrite existing data. [`Context::object_mut`] gives the whole
//! Object mutably when a middleware needs it (always the full path).

use crate::host::{Host, LogLevel, Store};
use crate::proto::{HookType, MiniRequestObject, Object, ResponseObject, SessionState};
use crate::session::SessionPatch;
#[cfg(doc)]
use crate::session::SessionTemplate;
use crate::wire::{self, WireError};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;

/// One recorded change to the Object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Edit {
    SetHeader(String, String),
    DeleteHeader(String),
    AddParam(String, String),
    DeleteParam(String),
    SetUrl(String),
    SetMethod(String),
    Override { code: i32, error: String, body: String, headers: Vec<(String, String)> },
    Session(SessionEdit),
    Metadata(Cow<'static, str>, String),
}

/// A session set by a middleware: decoded, or already encoded (a [`SessionPatch`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SessionEdit {
    Whole(Box<SessionState>),
    Encoded(Vec<u8>),
}

impl SessionEdit {
    fn into_session(self) -> SessionState {
        match self {
            SessionEdit::Whole(s) => *s,
            SessionEdit::Encoded(b) => SessionState::decode(&b[..]).expect("a patch is a valid SessionState encoding"),
        }
    }

    /// Append this session as `Object.session` (field 4).
    fn encode_field(&self, out: &mut Vec<u8>) {
        match self {
            SessionEdit::Whole(s) => {
                out.reserve(prost::encoding::message::encoded_len(OBJ_SESSION, &**s));
                prost::encoding::message::encode(OBJ_SESSION, &**s, out)
            }
            SessionEdit::Encoded(b) => {
                out.reserve(b.len() + 6);
                encode_key(OBJ_SESSION, WireType::LengthDelimited, out);
                encode_varint(b.len() as u64, out);
                out.extend_from_slice(b);
            }
        }
    }
}

impl Edit {
    /// Apply to a decoded Object (the full path).
    fn apply(self, obj: &mut Object) {
        match self {
            Edit::Session(s) => obj.session = Some(s.into_session()),
            Edit::Metadata(k, v) => {
                obj.metadata.insert(k.into_owned(), v);
            }
            request_edit => request_edit.apply_to_request(request(obj)),
        }
    }

    /// Apply an edit of `request` (any edit but Session and Metadata).
    fn apply_to_request(self, r: &mut MiniRequestObject) {
        match self {
            Edit::SetHeader(k, v) => {
                r.set_headers.insert(k, v);
            }
            Edit::DeleteHeader(k) => r.delete_headers.push(k),
            Edit::AddParam(k, v) => {
                r.add_params.insert(k, v);
            }
            Edit::DeleteParam(k) => r.delete_params.push(k),
            Edit::SetUrl(u) => r.url = u,
            Edit::SetMethod(m) => r.method = m,
            Edit::Override { code, error, body, headers } => {
                let ro = r.return_overrides.get_or_insert_with(Default::default);
                ro.response_code = code;
                ro.response_error = error;
                ro.response_body = body;
                ro.headers.extend(headers);
            }
            Edit::Session(_) | Edit::Metadata(..) => unreachable!("not an edit of the request"),
        }
    }

    /// Whether appending this edit's encoding to the original gives the same Object as
    /// applying it: true unless it must clear a value (proto3 does not encode defaults) or
    /// replace a message that protobuf would merge into instead.
    fn is_additive(&self, ctx: &Context<'_>) -> bool {
        match self {
            Edit::SetHeader(..)
            | Edit::DeleteHeader(_)
            | Edit::AddParam(..)
            | Edit::DeleteParam(_)
            | Edit::Metadata(..) => true,
            Edit::SetUrl(u) => !u.is_empty() || ctx.url().is_empty(),
            Edit::SetMethod(m) => !m.is_empty() || ctx.method().is_empty(),
            Edit::Override { code, error, body, .. } => {
                let (c, e, b) = ctx.original_overrides();
                (*code != 0 || c == 0) && (!error.is_empty() || e.is_empty()) && (!body.is_empty() || b.is_empty())
            }
            Edit::Session(_) => !ctx.has_session(),
        }
    }
}

fn request(obj: &mut Object) -> &mut MiniRequestObject {
    obj.request.get_or_insert_with(Default::default)
}

/// Append the encoding of `edits` to `out`, so that `input ++ out` decodes to the input with
/// the edits applied. Caller checked every edit is additive. Request edits are gathered into
/// one `request` message (later scalars replace earlier ones there exactly as applying them
/// does); only the last session edit counts (a session edit replaces); metadata entries go in
/// order (a later entry wins, as an insert does).
fn encode_delta(edits: Vec<Edit>, out: &mut Vec<u8>) {
    let mut request: Option<MiniRequestObject> = None;
    let mut session: Option<SessionEdit> = None;
    for e in edits {
        match e {
            Edit::Session(s) => session = Some(s),
            // Entries of different fields may come in any order; these keep theirs.
            Edit::Metadata(k, v) => encode_map_entry(OBJ_METADATA, &k, &v, out),
            request_edit => request_edit.apply_to_request(request.get_or_insert_with(Default::default)),
        }
    }
    if let Some(s) = &session {
        s.encode_field(out);
    }
    if let Some(r) = &request {
        out.reserve(prost::encoding::message::encoded_len(OBJ_REQUEST, r));
        prost::encoding::message::encode(OBJ_REQUEST, r, out);
    }
}

/// Append one `map<string, string>` entry of field `tag` (key and value always written).
fn encode_map_entry(tag: u32, k: &str, v: &str, out: &mut Vec<u8>) {
    let inner = 2 + encoded_len_varint(k.len() as u64) + k.len() + encoded_len_varint(v.len() as u64) + v.len();
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(inner as u64, out);
    for (field, s) in [(1, k), (2, v)] {
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
}

/// A serialised answer, as the runtime builds it: the input bytes followed by appended edits
/// (the additive path, with nothing copied yet), or a whole new encoding (the full path).
/// The ABI boundary copies it once, into the buffer it hands the host.
#[derive(Debug)]
pub enum Answer<'i> {
    /// The input, unchanged, followed by `tail` (empty when nothing changed).
    Appended {
        /// The input bytes.
        input: &'i [u8],
        /// The encoded edits.
        tail: Vec<u8>,
    },
    /// A fresh encoding of the resulting Object.
    Encoded(Vec<u8>),
}

impl Answer<'_> {
    /// The answer's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Answer::Appended { input, tail } => input.len() + tail.len(),
            Answer::Encoded(v) => v.len(),
        }
    }

    /// Whether the answer is empty (an empty Object).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer as two consecutive parts (the second is empty for a fresh encoding).
    pub fn parts(&self) -> (&[u8], &[u8]) {
        match self {
            Answer::Appended { input, tail } => (input, tail),
            Answer::Encoded(v) => (v, &[]),
        }
    }

    /// The answer as one owned buffer.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Answer::Appended { input, tail } => {
                let mut v = Vec::with_capacity(input.len() + tail.len());
                v.extend_from_slice(input);
                v.extend_from_slice(&tail);
                v
            }
            Answer::Encoded(v) => v,
        }
    }
}

/// The API the current request belongs to, from the Object's `spec`.
#[derive(Debug, Clone, Copy)]
pub struct ApiIdentity<'a> {
    /// `spec["APIID"]`, or "" when the gateway did not send it.
    pub api_id: &'a str,
    /// `spec["OrgID"]`, or "".
    pub org_id: &'a str,
}

/// Where a context reads the Object from.
enum Source<'a> {
    /// An Object decoded up front (in-process callers, tests, or bytes whose request occurs
    /// more than once and would need merging).
    Decoded(&'a Object),
    /// Validated wire bytes read lazily; `request` is the one occurrence of field 3. The full
    /// Object is decoded into `lazy` only when asked for.
    Bytes { bytes: &'a [u8], request: &'a [u8], lazy: &'a OnceCell<Object> },
}

/// The per-call context handed to a middleware: read access to the Object, the edit
/// recorder, the API identity and the host callbacks.
pub struct Context<'a> {
    source: Source<'a>,
    /// The request headers in wire order, indexed while validating (bytes source; empty
    /// otherwise).
    header_index: Vec<wire::Entry<'a>>,
    /// The `spec` entries in wire order (bytes source; empty otherwise).
    spec_index: Vec<wire::Entry<'a>>,
    hook_name: &'a str,
    hook_type: i32,
    has_session: bool,
    /// `request.return_overrides` (code, error, body) as sent (bytes source).
    overrides: (i32, &'a [u8], &'a [u8]),
    host: &'a dyn Host,
    edits: Vec<Edit>,
    working: Option<Box<Object>>,
}

const OBJ_REQUEST: u32 = 3;
const OBJ_SESSION: u32 = 4;
const OBJ_METADATA: u32 = 5;
const REQ_BODY: u32 = 4;
const REQ_URL: u32 = 5;
const REQ_PARAMS: u32 = 6;
const REQ_METHOD: u32 = 11;
const REQ_REQUEST_URI: u32 = 12;
const REQ_SCHEME: u32 = 13;
const REQ_RAW_BODY: u32 = 14;

impl<'a> Context<'a> {
    /// A context over a decoded Object. In-process callers and tests use this; the runtime
    /// uses [`Context::from_bytes`].
    pub fn new(input: &'a Object, host: &'a dyn Host) -> Self {
        Context {
            source: Source::Decoded(input),
            header_index: Vec::new(),
            spec_index: Vec::new(),
            hook_name: &input.hook_name,
            hook_type: input.hook_type,
            has_session: input.session.is_some(),
            overrides: (0, &[], &[]),
            host,
            edits: Vec::new(),
            working: None,
        }
    }

    /// A context over serialised Object bytes, validated here as strictly as a full decode
    /// but read lazily. `lazy` receives the decoded Object if anything asks for it whole.
    pub fn from_bytes(bytes: &'a [u8], lazy: &'a OnceCell<Object>, host: &'a dyn Host) -> Result<Self, WireError> {
        let index = wire::validate_indexed(bytes)?;
        let (hook_name, hook_type, has_session) = (index.hook_name, index.hook_type, index.has_session);
        if index.request_count > 1 {
            // Repeated request messages merge; reading them lazily would mean merging by hand.
            let decoded = lazy.get_or_init(|| Object::decode(bytes).expect("validated bytes decode"));
            return Ok(Context::new(decoded, host));
        }
        Ok(Context {
            source: Source::Bytes { bytes, request: index.request, lazy },
            header_index: index.headers,
            spec_index: index.spec,
            hook_name,
            hook_type,
            has_session,
            overrides: index.overrides,
            host,
            edits: Vec::new(),
            working: None,
        })
    }

    // ---- Reads (the Object as the gateway sent it) ----

    /// The hook type of this call (`Unknown` for a value outside the enum).
    pub fn hook_type(&self) -> HookType {
        HookType::try_from(self.hook_type_raw()).unwrap_or(HookType::Unknown)
    }

    /// The hook type as sent, including values outside the enum.
    pub fn hook_type_raw(&self) -> i32 {
        self.hook_type
    }

    /// The hook name (`Name` or `Name:instance`).
    pub fn hook_name(&self) -> &'a str {
        self.hook_name
    }

    /// The API's identity (`spec["APIID"]`, `spec["OrgID"]`).
    pub fn api(&self) -> ApiIdentity<'a> {
        ApiIdentity { api_id: self.spec("APIID").unwrap_or(""), org_id: self.spec("OrgID").unwrap_or("") }
    }

    /// A value of the Object's `spec` map as its (UTF-8) bytes, without the `&str` check a
    /// long value (`config_data`) would cost.
    pub(crate) fn spec_bytes(&self, key: &str) -> Option<&'a [u8]> {
        match self.source {
            Source::Decoded(o) => o.spec.get(key).map(String::as_bytes),
            Source::Bytes { .. } => self.spec_index.iter().rev().find(|(k, _)| *k == key.as_bytes()).map(|(_, v)| *v),
        }
    }

    /// A value of the Object's `spec` map.
    pub fn spec(&self, key: &str) -> Option<&'a str> {
        match self.source {
            Source::Decoded(o) => o.spec.get(key).map(String::as_str),
            Source::Bytes { .. } => {
                self.spec_index.iter().rev().find(|(k, _)| *k == key.as_bytes()).map(|(_, v)| wire::str_of(v))
            }
        }
    }

    /// The host callbacks (events, logging, store).
    pub fn host(&self) -> &'a dyn Host {
        self.host
    }

    /// The host's store, with the store contract applied (see [`Store`]).
    pub fn store(&self) -> Store<'a> {
        Store::new(self.host)
    }

    /// Log through the host's `CoProcessLog`.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.host.log(level, message)
    }

    /// A string field of the request.
    fn req_str(&self, field: u32, get: fn(&MiniRequestObject) -> &str) -> &'a str {
        match self.source {
            Source::Decoded(o) => o.request.as_ref().map_or("", get),
            Source::Bytes { request, .. } => wire::last_str(request, field),
        }
    }

    /// A request header from `request.headers`, matched case-insensitively (an exact match
    /// wins; otherwise the first matching name in byte order).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        match self.source {
            Source::Decoded(o) => {
                let headers = &o.request.as_ref()?.headers;
                if let Some(v) = headers.get(name) {
                    return Some(v);
                }
                headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
            }
            Source::Bytes { .. } => {
                wire::get_ignore_case(self.header_index.iter().copied(), name.as_bytes()).map(wire::str_of)
            }
        }
    }

    /// All request headers as the gateway sent them (`request.headers`). Decodes the Object.
    pub fn headers(&self) -> &'a BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.object().request.as_ref().map_or(&EMPTY, |r| &r.headers)
    }

    /// Every request header as (name, value) in the order a decoded `request.headers` map
    /// iterates them (sorted by name; of a name sent twice, the later value), without decoding
    /// the Object.
    pub fn header_pairs(&self) -> Vec<(&'a str, &'a str)> {
        match self.source {
            Source::Decoded(o) => o
                .request
                .as_ref()
                .map_or_else(Vec::new, |r| r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()),
            Source::Bytes { .. } => {
                let mut pairs: Vec<(&str, &str)> =
                    self.header_index.iter().map(|(k, v)| (wire::str_of(k), wire::str_of(v))).collect();
                // Stable: equal names keep wire order, so the last of them is the map's value.
                pairs.sort_by(|a, b| a.0.cmp(b.0));
                pairs.dedup_by(|later, earlier| {
                    let same = later.0 == earlier.0;
                    if same {
                        earlier.1 = later.1;
                    }
                    same
                });
                pairs
            }
        }
    }

    /// A query parameter from `request.params`.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        match self.source {
            Source::Decoded(o) => o.request.as_ref()?.params.get(name).map(String::as_str),
            Source::Bytes { request, .. } => wire::map_get(request, REQ_PARAMS, name),
        }
    }

    /// The request method (`request.method`).
    pub fn method(&self) -> &'a str {
        self.req_str(REQ_METHOD, |r| &r.method)
    }

    /// The URL going upstream, path and query (`request.url`).
    pub fn url(&self) -> &'a str {
        self.req_str(REQ_URL, |r| &r.url)
    }

    /// The path and query as the client sent them (`request.request_uri`).
    pub fn request_uri(&self) -> &'a str {
        self.req_str(REQ_REQUEST_URI, |r| &r.request_uri)
    }

    /// The scheme (`request.scheme`).
    pub fn scheme(&self) -> &'a str {
        self.req_str(REQ_SCHEME, |r| &r.scheme)
    }

    /// The request body (`request.raw_body`, or `request.body` when raw_body is empty).
    pub fn body(&self) -> &'a [u8] {
        match self.source {
            Source::Decoded(o) => match o.request.as_ref() {
                Some(r) if !r.raw_body.is_empty() => &r.raw_body,
                Some(r) => r.body.as_bytes(),
                None => &[],
            },
            Source::Bytes { request, .. } => match wire::last_len(request, REQ_RAW_BODY) {
                Some(raw) if !raw.is_empty() => raw,
                _ => wire::last_str(request, REQ_BODY).as_bytes(),
            },
        }
    }

    /// Whether the gateway sent a session (PostKeyAuth, Post and Response hooks).
    pub fn has_session(&self) -> bool {
        self.has_session
    }

    /// The session (sent for PostKeyAuth, Post and Response hooks). Decodes the Object.
    pub fn session(&self) -> Option<&'a SessionState> {
        if !self.has_session() {
            return None;
        }
        self.object().session.as_ref()
    }

    /// A value of the Object's `metadata` map.
    pub fn metadata(&self, key: &str) -> Option<&'a str> {
        match self.source {
            Source::Decoded(o) => o.metadata.get(key).map(String::as_str),
            Source::Bytes { bytes, .. } => wire::map_get(bytes, OBJ_METADATA, key),
        }
    }

    /// The upstream response (Response hooks only). Decodes the Object.
    pub fn response(&self) -> Option<&'a ResponseObject> {
        self.object().response.as_ref()
    }

    /// The whole Object as the gateway sent it (decoded on first use).
    pub fn object(&self) -> &'a Object {
        match self.source {
            Source::Decoded(o) => o,
            Source::Bytes { bytes, lazy, .. } => {
                lazy.get_or_init(|| Object::decode(bytes).expect("validated bytes decode"))
            }
        }
    }

    /// `(response_code, response_error, response_body)` of the request's return overrides as
    /// sent (merged over every occurrence).
    fn original_overrides(&self) -> (i32, &'a str, &'a str) {
        match self.source {
            Source::Decoded(o) => o
                .request
                .as_ref()
                .and_then(|r| r.return_overrides.as_ref())
                .map_or((0, "", ""), |ro| (ro.response_code, ro.response_error.as_str(), ro.response_body.as_str())),
            Source::Bytes { .. } => {
                let (code, error, body) = self.overrides;
                (code, wire::str_of(error), wire::str_of(body))
            }
        }
    }

    // ---- Edits ----

    fn record(&mut self, edit: Edit) {
        match &mut self.working {
            Some(obj) => edit.apply(obj),
            None => self.edits.push(edit),
        }
    }

    /// Set a request header going upstream (`request.set_headers`).
    pub fn set_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.record(Edit::SetHeader(name.into(), value.into()));
    }

    /// Remove a request header before it goes upstream (`request.delete_headers`).
    pub fn delete_header(&mut self, name: impl Into<String>) {
        self.record(Edit::DeleteHeader(name.into()));
    }

    /// Add a query parameter (`request.add_params`).
    pub fn add_param(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.record(Edit::AddParam(name.into(), value.into()));
    }

    /// Remove a query parameter (`request.delete_params`).
    pub fn delete_param(&mut self, name: impl Into<String>) {
        self.record(Edit::DeleteParam(name.into()));
    }

    /// Rewrite the URL going upstream (`request.url`).
    pub fn set_url(&mut self, url: impl Into<String>) {
        self.record(Edit::SetUrl(url.into()));
    }

    /// Rewrite the method going upstream (`request.method`).
    pub fn set_method(&mut self, method: impl Into<String>) {
        self.record(Edit::SetMethod(method.into()));
    }

    /// Reject the request: the gateway answers `code` (>= 400) with `message` as the error
    /// body. Not a failure of the middleware: `Dispatch` still returns 0.
    pub fn reject(&mut self, code: i32, message: impl Into<String>) {
        self.reject_with_headers(code, message, Vec::new());
    }

    /// Reject with extra response headers.
    pub fn reject_with_headers(&mut self, code: i32, message: impl Into<String>, headers: Vec<(String, String)>) {
        self.record(Edit::Override { code, error: message.into(), body: String::new(), headers });
    }

    /// Answer the client directly with `code` and `body` (any code; 1..399 makes the gateway
    /// answer without calling upstream).
    pub fn respond(&mut self, code: i32, body: impl Into<String>, headers: Vec<(String, String)>) {
        let body = body.into();
        self.record(Edit::Override { code, error: body.clone(), body, headers });
    }

    /// Authenticate (CustomKeyCheck): set the session and `metadata["token"]`.
    pub fn authenticate(&mut self, session: SessionState, token: impl Into<String>) {
        self.record(Edit::Session(SessionEdit::Whole(Box::new(session))));
        self.record(Edit::Metadata(Cow::Borrowed("token"), token.into()));
    }

    /// Authenticate (CustomKeyCheck) with an encoded session, usually a
    /// [`SessionTemplate::patch`] with per-request fields set, and `metadata["token"]` =
    /// `token`. Same result as [`Context::authenticate`] with [`SessionPatch::to_session`],
    /// without cloning or re-encoding a whole session per request.
    pub fn authenticate_with(&mut self, session: SessionPatch, token: impl Into<String>) {
        self.record(Edit::Session(SessionEdit::Encoded(session.into_bytes())));
        self.record(Edit::Metadata(Cow::Borrowed("token"), token.into()));
    }

    /// Replace the session.
    pub fn set_session(&mut self, session: SessionState) {
        self.record(Edit::Session(SessionEdit::Whole(Box::new(session))));
    }

    /// Set a value of the Object's `metadata` map.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.record(Edit::Metadata(Cow::Owned(key.into()), value.into()));
    }

    /// The whole Object, mutably, with every edit recorded so far applied. After this call
    /// the answer is always built by re-encoding the Object (the full path).
    pub fn object_mut(&mut self) -> &mut Object {
        if self.working.is_none() {
            let mut obj = Box::new(self.object().clone());
            for e in self.edits.drain(..) {
                e.apply(&mut obj);
            }
            self.working = Some(obj);
        }
        self.working.as_mut().expect("just set")
    }

    /// The upstream response, mutably (full path); created when absent.
    pub fn response_mut(&mut self) -> &mut ResponseObject {
        self.object_mut().response.get_or_insert_with(Default::default)
    }

    /// Whether the middleware changed anything.
    pub fn is_modified(&self) -> bool {
        self.working.is_some() || !self.edits.is_empty()
    }

    /// The answer as serialised bytes. `input_bytes` must be the encoding `self.object()` was
    /// decoded from. Additive edits are appended to a copy of the input; anything else is
    /// applied to a copy of the Object and re-encoded.
    pub fn into_answer(self, input_bytes: &[u8]) -> Vec<u8> {
        self.answer(input_bytes, true)
    }

    /// Like [`Context::into_answer`], but with the choice of path forced to the full
    /// decode/re-encode (`allow_append = false`); used by tests comparing both paths.
    pub fn answer(self, input_bytes: &[u8], allow_append: bool) -> Vec<u8> {
        self.answer_parts(input_bytes, allow_append).into_vec()
    }

    /// The answer without copying the input: on the additive path the input followed by the
    /// encoded edits, otherwise a fresh encoding (`allow_append = false` forces the latter).
    pub fn answer_parts<'i>(self, input_bytes: &'i [u8], allow_append: bool) -> Answer<'i> {
        if let Some(obj) = self.working {
            return Answer::Encoded(obj.encode_to_vec());
        }
        if allow_append && self.edits.iter().all(|e| e.is_additive(&self)) {
            let mut tail = Vec::new();
            if !self.edits.is_empty() {
                tail.reserve(256);
                encode_delta(self.edits, &mut tail);
            }
            return Answer::Appended { input: input_bytes, tail };
        }
        let mut obj = self.object().clone();
        for e in self.edits {
            e.apply(&mut obj);
        }
        Answer::Encoded(obj.encode_to_vec())
    }

    /// The resulting Object (decoded form of the answer), for tests and in-process callers.
    pub fn into_object(self) -> Object {
        if let Some(obj) = self.working {
            return *obj;
        }
        let mut obj = self.object().clone();
        for e in self.edits {
            e.apply(&mut obj);
        }
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;
    use crate::proto::ReturnOverrides;

    fn sample() -> Object {
        let mut req = MiniRequestObject {
            method: "GET".into(),
            url: "/a?b=1".into(),
            request_uri: "/a?b=1".into(),
            return_overrides: Some(ReturnOverrides { response_code: -1, ..Default::default() }),
            ..Default::default()
        };
        req.headers.insert("Authorization".into(), "x".into());
        req.set_headers.insert("Existing".into(), "1".into());
        let mut obj =
            Object { hook_name: "H".into(), hook_type: HookType::Pre as i32, request: Some(req), ..Default::default() };
        obj.spec.insert("APIID".into(), "api1".into());
        obj
    }

    fn both_paths(input: &Object, f: impl Fn(&mut Context)) -> (Object, Object, bool) {
        let host = FakeHost::new();
        let bytes = input.encode_to_vec();
        let mut a = Context::new(input, &host);
        f(&mut a);
        let appended = a.answer(&bytes, true);
        let mut b = Context::new(input, &host);
        f(&mut b);
        let full = b.answer(&bytes, false);
        let was_append = appended.starts_with(&bytes) && appended.len() > bytes.len();
        (Object::decode(&appended[..]).unwrap(), Object::decode(&full[..]).unwrap(), was_append)
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let obj = sample();
        let host = FakeHost::new();
        let ctx = Context::new(&obj, &host);
        assert_eq!(ctx.header("authorization"), Some("x"));
        assert_eq!(ctx.header("AUTHORIZATION"), Some("x"));
        assert_eq!(ctx.header("Date"), None);
        assert_eq!(ctx.api().api_id, "api1");
    }

    #[test]
    fn additive_edits_append_and_match_full_path() {
        let (a, f, appended) = both_paths(&sample(), |c| {
            c.set_header("X-New", "v");
            c.set_header("Existing", "2");
            c.delete_header("Authorization");
            c.add_param("p", "q");
            c.delete_param("b");
            c.set_url("/rewritten");
            c.set_method("POST");
            c.set_metadata("k", "v");
            c.authenticate(SessionState { rate: 10.0, ..Default::default() }, "tok");
            c.reject(401, "no");
        });
        assert!(appended, "these edits are additive");
        assert_eq!(a, f);
        let req = a.request.unwrap();
        assert_eq!(req.set_headers["Existing"], "2");
        assert_eq!(req.delete_headers, vec!["Authorization"]);
        assert_eq!(req.return_overrides.unwrap().response_code, 401);
        assert_eq!(a.metadata["token"], "tok");
    }

    #[test]
    fn rewriting_edits_take_the_full_path() {
        let mut input = sample();
        input.session = Some(SessionState { rate: 5.0, quota_max: 7, ..Default::default() });
        let (a, f, appended) = both_paths(&input, |c| c.set_session(SessionState { rate: 1.0, ..Default::default() }));
        assert!(!appended, "replacing a session cannot be appended");
        assert_eq!(a, f);
        assert_eq!(a.session.unwrap().quota_max, 0, "session replaced, not merged");

        let (a, f, appended) = both_paths(&sample(), |c| c.set_url(""));
        assert!(!appended);
        assert_eq!(a, f);
        assert_eq!(a.request.unwrap().url, "");
    }

    #[test]
    fn no_edits_return_the_input_bytes() {
        let input = sample();
        let host = FakeHost::new();
        let bytes = input.encode_to_vec();
        let ctx = Context::new(&input, &host);
        assert!(!ctx.is_modified());
        assert_eq!(ctx.into_answer(&bytes), bytes);
    }

    #[test]
    fn repeated_header_entries_read_like_the_decoded_map() {
        // One request whose headers map repeats "A": the later entry is the map's value.
        let mut first = MiniRequestObject::default();
        first.headers.insert("A".into(), "1".into());
        let mut second = MiniRequestObject::default();
        second.headers.insert("A".into(), "2".into());
        second.headers.insert("B".into(), "3".into());
        let mut request = first.encode_to_vec();
        request.extend(second.encode_to_vec());
        let mut bytes = vec![0x1a, request.len() as u8];
        bytes.extend(request);
        let host = FakeHost::new();
        let lazy = OnceCell::new();
        let ctx = Context::from_bytes(&bytes, &lazy, &host).unwrap();
        let decoded = Object::decode(&bytes[..]).unwrap();
        let expected = Context::new(&decoded, &host);
        assert_eq!(ctx.header("a"), Some("2"));
        assert_eq!(ctx.header_pairs(), vec![("A", "2"), ("B", "3")]);
        assert_eq!(ctx.header_pairs(), expected.header_pairs());
    }

    #[test]
    fn object_mut_keeps_earlier_edits() {
        let input = sample();
        let host = FakeHost::new();
        let mut ctx = Context::new(&input, &host);
        ctx.set_header("A", "1");
        ctx.response_mut().status_code = 201;
        ctx.set_header("B", "2");
        let out = Object::decode(&ctx.into_answer(&input.encode_to_vec())[..]).unwrap();
        let req = out.request.unwrap();
        assert_eq!(req.set_headers["A"], "1");
        assert_eq!(req.set_headers["B"], "2");
        assert_eq!(out.response.unwrap().status_code, 201);
    }
}
