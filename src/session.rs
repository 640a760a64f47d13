//! Sessions answered many times: a template encoded once, plus a small per-request patch.
//!
//! An auth middleware answers most requests with the same configured session and a few
//! per-request fields (a secret, a timestamp, an expiry). [`SessionTemplate`] encodes the
//! configured part once; [`SessionTemplate::patch`] starts a [`SessionPatch`] from a copy of
//! those bytes, and each setter appends one encoded field. [`Context::authenticate_with`]
//! answers the result as the `session` field: the session the gateway decodes is the template
//! with the set fields merged over it, exactly as protobuf merges fields that occur again
//! (the full decode/re-encode path decodes the same bytes, so both paths agree).
//!
//! [`Context::authenticate_with`]: crate::Context::authenticate_with

use crate::proto::SessionState;
use crate::schema::session_state as S;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use std::fmt;

/// A session template encoded once (when a middleware is configured) and answered many
/// times without being cloned or re-encoded.
#[derive(Clone, PartialEq)]
pub struct SessionTemplate {
    encoded: Box<[u8]>,
}

impl SessionTemplate {
    /// Encode `session` once.
    pub fn new(session: &SessionState) -> Self {
        SessionTemplate { encoded: session.encode_to_vec().into() }
    }

    /// The template as a decoded session.
    pub fn session(&self) -> SessionState {
        SessionState::decode(&self.encoded[..]).expect("a template is a valid SessionState encoding")
    }

    /// The template's encoding.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// A patch starting from this template: its setters change the per-request fields.
    pub fn patch(&self) -> SessionPatch {
        let mut buf = Vec::with_capacity(self.encoded.len() + 96);
        buf.extend_from_slice(&self.encoded);
        SessionPatch { buf }
    }
}

impl Default for SessionTemplate {
    fn default() -> Self {
        SessionTemplate::new(&SessionState::default())
    }
}

/// A session as encoded bytes: a [`SessionTemplate`]'s (from [`SessionTemplate::patch`]) or an
/// empty session's ([`SessionPatch::new`]), with per-request fields set over it.
///
/// Each setter appends its field's encoding at once. Merging follows protobuf: a scalar or
/// string set here replaces the template's value, even when set to zero or "";
/// [`SessionPatch::metadata`] adds or replaces one entry of the `metadata` map;
/// [`SessionPatch::tag`] appends to `tags`; [`SessionPatch::merge`] merges a whole session the
/// same way. Setting a field twice keeps the later value.
#[derive(Clone, Default, PartialEq)]
pub struct SessionPatch {
    buf: Vec<u8>,
}

// Debug shows sizes only: the bytes may hold `hmac_secret` and other secrets.
impl fmt::Debug for SessionTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTemplate").field("encoded_len", &self.encoded.len()).finish_non_exhaustive()
    }
}

impl fmt::Debug for SessionPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionPatch").field("encoded_len", &self.buf.len()).finish_non_exhaustive()
    }
}

macro_rules! setters {
    ($( $(#[$doc:meta])* $name:ident: $ty:ident = $tag:path; )*) => {
        $( $(#[$doc])* pub fn $name(mut self, value: setters!(@arg $ty)) -> Self {
            setters!(@enc $ty, self.buf, $tag, value);
            self
        } )*
    };
    (@arg str) => { &str };
    (@arg i64) => { i64 };
    (@arg bool) => { bool };
    (@enc str, $buf:expr, $tag:path, $v:ident) => { put_str(&mut $buf, $tag, $v) };
    (@enc i64, $buf:expr, $tag:path, $v:ident) => { put_varint(&mut $buf, $tag, $v as u64) };
    (@enc bool, $buf:expr, $tag:path, $v:ident) => { put_varint(&mut $buf, $tag, u64::from($v)) };
}

impl SessionPatch {
    /// A patch over an empty session.
    pub fn new() -> Self {
        SessionPatch { buf: Vec::new() }
    }

    setters! {
        /// `last_check`.
        last_check: i64 = S::LAST_CHECK;
        /// `expires`.
        expires: i64 = S::EXPIRES;
        /// `quota_max`.
        quota_max: i64 = S::QUOTA_MAX;
        /// `quota_remaining`.
        quota_remaining: i64 = S::QUOTA_REMAINING;
        /// `org_id`.
        org_id: str = S::ORG_ID;
        /// `hmac_enabled`.
        hmac_enabled: bool = S::HMAC_ENABLED;
        /// `hmac_secret`.
        hmac_secret: str = S::HMAC_SECRET;
        /// `is_inactive`.
        is_inactive: bool = S::IS_INACTIVE;
        /// `data_expires`.
        data_expires: i64 = S::DATA_EXPIRES;
        /// `alias`.
        alias: str = S::ALIAS;
        /// `last_updated`.
        last_updated: str = S::LAST_UPDATED;
        /// `id_extractor_deadline`.
        id_extractor_deadline: i64 = S::ID_EXTRACTOR_DEADLINE;
        /// `session_lifetime`.
        session_lifetime: i64 = S::SESSION_LIFETIME;
        /// `key_id`.
        key_id: str = S::KEY_ID;
    }

    /// Add or replace `metadata[key]`.
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        let inner = str_len(1, key) + str_len(2, value);
        room(&mut self.buf, inner + 8);
        encode_key(S::METADATA, WireType::LengthDelimited, &mut self.buf);
        encode_varint(inner as u64, &mut self.buf);
        put_str(&mut self.buf, 1, key);
        put_str(&mut self.buf, 2, value);
        self
    }

    /// Append `tag` to `tags`.
    pub fn tag(mut self, tag: &str) -> Self {
        put_str(&mut self.buf, S::TAGS, tag);
        self
    }

    /// Merge every non-default field of `session` (as protobuf merges its encoding).
    pub fn merge(mut self, session: &SessionState) -> Self {
        session.encode_raw(&mut self.buf);
        self
    }

    /// The encoding so far (a `SessionState`'s fields).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The session these bytes decode to.
    pub fn to_session(&self) -> SessionState {
        SessionState::decode(&self.buf[..]).expect("a patch is a valid SessionState encoding")
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

fn str_len(tag: u32, s: &str) -> usize {
    prost::encoding::key_len(tag) + prost::encoding::encoded_len_varint(s.len() as u64) + s.len()
}

/// Room for `n` more bytes; the first write reserves enough for a typical patch at once.
fn room(buf: &mut Vec<u8>, n: usize) {
    if buf.capacity() - buf.len() < n {
        buf.reserve(n.max(96));
    }
}

fn put_str(buf: &mut Vec<u8>, tag: u32, s: &str) {
    room(buf, str_len(tag, s));
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(s.len() as u64, buf);
    buf.extend_from_slice(s.as_bytes());
}

fn put_varint(buf: &mut Vec<u8>, tag: u32, v: u64) {
    room(buf, 13);
    encode_key(tag, WireType::Varint, buf);
    encode_varint(v, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::AccessDefinition;

    fn merged(template: &SessionState, set: impl FnOnce(SessionPatch) -> SessionPatch) -> SessionState {
        let patch = set(SessionTemplate::new(template).patch());
        // Independently: the template decoded, then the appended bytes merged into it.
        let tail = &patch.as_bytes()[SessionTemplate::new(template).encoded().len()..];
        let mut s = template.clone();
        s.merge(tail).unwrap();
        assert_eq!(patch.to_session(), s);
        s
    }

    #[test]
    fn setters_replace_and_maps_and_lists_merge() {
        let mut template = SessionState {
            rate: 10.0,
            quota_max: 5,
            hmac_secret: "old".into(),
            tags: vec!["a".into()],
            org_id: "org".into(),
            ..Default::default()
        };
        template.metadata.insert("k".into(), "1".into());
        template.access_rights.insert("api".into(), AccessDefinition { api_id: "api".into(), ..Default::default() });
        let s = merged(&template, |p| {
            p.hmac_enabled(true)
                .hmac_secret("new")
                .last_updated("1700000000")
                .quota_max(-1)
                .org_id("")
                .id_extractor_deadline(i64::MAX)
                .metadata("k", "2")
                .metadata("j", "3")
                .tag("b")
                .key_id("first")
                .key_id("second")
        });
        let mut expected = template.clone();
        expected.hmac_enabled = true;
        expected.hmac_secret = "new".into();
        expected.last_updated = "1700000000".into();
        expected.quota_max = -1;
        expected.org_id = String::new();
        expected.id_extractor_deadline = i64::MAX;
        expected.metadata.insert("k".into(), "2".into());
        expected.metadata.insert("j".into(), "3".into());
        expected.tags.push("b".into());
        expected.key_id = "second".into();
        assert_eq!(s, expected);
    }

    #[test]
    fn debug_output_hides_the_bytes() {
        let t = SessionTemplate::new(&SessionState { hmac_secret: "s3cr3t-t".into(), ..Default::default() });
        let p = t.patch().hmac_secret("s3cr3t-p");
        for text in [format!("{t:?}"), format!("{p:?}")] {
            assert!(!text.contains("s3cr3t") && !text.contains("115, 51"), "{text}");
            assert!(text.contains("encoded_len"), "{text}");
        }
    }

    #[test]
    fn merge_matches_protobuf_merge_of_a_whole_session() {
        let template = SessionState { rate: 1.0, per: 2.0, tags: vec!["x".into()], ..Default::default() };
        let other = SessionState { per: 3.0, alias: "al".into(), tags: vec!["y".into()], ..Default::default() };
        let mut expected = template.clone();
        expected.merge(&other.encode_to_vec()[..]).unwrap();
        assert_eq!(merged(&template, |p| p.merge(&other)), expected);
        assert_eq!(merged(&template, |p| p), template);
        assert_eq!(SessionPatch::new().to_session(), SessionState::default());
        assert_eq!(SessionTemplate::new(&template).session(), template);
    }
}
