//! The write side of a dispatch: the edits a middleware records and the answer built from them.
//!
//! Edits are recorded, not applied in place. When every edit is *additive* (it adds map
//! entries or list items, or sets a value that was unset) the answer is the input bytes with
//! the encoded edits appended: protobuf merges a repeated embedded message into the first,
//! appends repeated fields and lets later map entries and scalars win, so the host decodes
//! exactly the Object the full path would build. Edits that remove or rewrite existing data
//! (replacing a sent session, clearing a value, `Context::object_mut`) take the full path:
//! decode, apply, re-encode. docs/abi.md ("How answers are built") states the contract.

use crate::proto::{MiniRequestObject, Object, SessionState};
use crate::schema::object;
use crate::view::ObjectView;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use std::borrow::Cow;

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

/// A session set by a middleware: decoded, or already encoded (a `SessionPatch`).
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

    /// Append this session as `Object.session`.
    fn encode_field(&self, out: &mut Vec<u8>) {
        match self {
            SessionEdit::Whole(s) => {
                out.reserve(prost::encoding::message::encoded_len(object::SESSION, &**s));
                prost::encoding::message::encode(object::SESSION, &**s, out)
            }
            SessionEdit::Encoded(b) => {
                out.reserve(b.len() + 6);
                encode_key(object::SESSION, WireType::LengthDelimited, out);
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
            request_edit => request_edit.apply_to_request(obj.request.get_or_insert_with(Default::default)),
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
    fn is_additive(&self, view: &ObjectView<'_>) -> bool {
        match self {
            Edit::SetHeader(..)
            | Edit::DeleteHeader(_)
            | Edit::AddParam(..)
            | Edit::DeleteParam(_)
            | Edit::Metadata(..) => true,
            Edit::SetUrl(u) => !u.is_empty() || view.url().is_empty(),
            Edit::SetMethod(m) => !m.is_empty() || view.method().is_empty(),
            Edit::Override { code, error, body, .. } => {
                let (c, e, b) = view.original_overrides();
                (*code != 0 || c == 0) && (!error.is_empty() || e.is_empty()) && (!body.is_empty() || b.is_empty())
            }
            Edit::Session(_) => !view.has_session(),
        }
    }
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
            Edit::Metadata(k, v) => encode_map_entry(object::METADATA, &k, &v, out),
            request_edit => request_edit.apply_to_request(request.get_or_insert_with(Default::default)),
        }
    }
    if let Some(s) = &session {
        s.encode_field(out);
    }
    if let Some(r) = &request {
        out.reserve(prost::encoding::message::encoded_len(object::REQUEST, r));
        prost::encoding::message::encode(object::REQUEST, r, out);
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

/// A serialised answer: the input bytes followed by appended edits (the additive path, the
/// input not copied yet), or a whole new encoding (the full path). The caller holds the input
/// and copies the answer once, into the buffer it hands the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The input, unchanged, followed by these encoded edits (empty when nothing changed).
    Appended(Vec<u8>),
    /// A fresh encoding of the resulting Object.
    Encoded(Vec<u8>),
}

impl Answer {
    /// The answer's length in bytes, for an answer to `input`.
    pub fn len(&self, input: &[u8]) -> usize {
        match self {
            Answer::Appended(tail) => input.len() + tail.len(),
            Answer::Encoded(v) => v.len(),
        }
    }

    /// The answer to `input` as two consecutive parts (the second is empty for a fresh
    /// encoding).
    pub fn parts<'s>(&'s self, input: &'s [u8]) -> (&'s [u8], &'s [u8]) {
        match self {
            Answer::Appended(tail) => (input, tail),
            Answer::Encoded(v) => (v, &[]),
        }
    }

    /// The answer to `input` as one buffer.
    pub fn into_vec(self, input: &[u8]) -> Vec<u8> {
        match self {
            Answer::Appended(tail) => {
                let mut v = Vec::with_capacity(input.len() + tail.len());
                v.extend_from_slice(input);
                v.extend_from_slice(&tail);
                v
            }
            Answer::Encoded(v) => v,
        }
    }
}

/// The edits recorded during one dispatch.
#[derive(Default)]
pub(crate) struct Edits {
    list: Vec<Edit>,
    /// The whole Object, once a middleware asked for it mutably (the full path).
    working: Option<Box<Object>>,
}

impl Edits {
    pub(crate) fn record(&mut self, edit: Edit) {
        match &mut self.working {
            Some(obj) => edit.apply(obj),
            None => self.list.push(edit),
        }
    }

    /// The whole Object as sent, with every edit so far applied; from now on the answer is a
    /// fresh encoding of it.
    pub(crate) fn object_mut(&mut self, view: &ObjectView<'_>) -> &mut Object {
        if self.working.is_none() {
            let mut obj = Box::new(view.object().clone());
            for e in self.list.drain(..) {
                e.apply(&mut obj);
            }
            self.working = Some(obj);
        }
        self.working.as_mut().expect("just set")
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.working.is_none() && self.list.is_empty()
    }

    /// The answer: appended when every edit is additive, else a fresh encoding.
    pub(crate) fn finish(self, view: &ObjectView<'_>) -> Answer {
        if self.working.is_none() && self.list.iter().all(|e| e.is_additive(view)) {
            let mut tail = Vec::new();
            if !self.list.is_empty() {
                tail.reserve(256);
                encode_delta(self.list, &mut tail);
            }
            return Answer::Appended(tail);
        }
        Answer::Encoded(self.into_object(view).encode_to_vec())
    }

    /// The resulting Object, decoded: the edits applied to a copy of what was sent.
    pub(crate) fn into_object(self, view: &ObjectView<'_>) -> Object {
        if let Some(obj) = self.working {
            return *obj;
        }
        let mut obj = view.object().clone();
        for e in self.list {
            e.apply(&mut obj);
        }
        obj
    }
}
