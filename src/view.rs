//! The read side of a dispatch: the gateway's Object as validated wire bytes, read lazily.
//!
//! [`ObjectView::new`] validates the bytes as strictly as a prost decode (wire types, lengths,
//! UTF-8 of every string) in one allocation-free pass that also indexes the request headers and
//! `spec`. Reads then walk the validated bytes; the Object is decoded whole only when a reader
//! asks for it whole ([`ObjectView::object`], [`ObjectView::headers`], [`ObjectView::session`],
//! [`ObjectView::response`]). There is one representation: every read goes through the bytes.

use crate::proto::{HookType, Object, ResponseObject, SessionState};
use crate::schema::{mini_request_object as req, object};
use crate::wire::{self, WireError};
use prost::Message;
use std::cell::OnceCell;
use std::collections::BTreeMap;

/// The API the current request belongs to, from the Object's `spec`.
#[derive(Debug, Clone, Copy)]
pub struct ApiIdentity<'a> {
    /// `spec["APIID"]`, or "" when the gateway did not send it.
    pub api_id: &'a str,
    /// `spec["OrgID"]`, or "".
    pub org_id: &'a str,
}

/// What a view may need besides the input bytes: the Object decoded on demand, and a canonical
/// re-encoding for input whose `request` occurs more than once (protobuf merges repeated
/// occurrences; reading the merged form lazily would mean merging by hand). Owned by the caller
/// so the view can borrow from it.
#[derive(Default)]
pub struct Scratch {
    decoded: OnceCell<Object>,
    canonical: OnceCell<Vec<u8>>,
}

impl Scratch {
    /// Empty scratch space.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A read view of a serialised `coprocess.Object`.
pub struct ObjectView<'a> {
    /// The bytes the host sent (answers are built on these).
    input: &'a [u8],
    /// The bytes read: `input`, or its canonical re-encoding (same Object).
    bytes: &'a [u8],
    /// The one occurrence of `Object.request` in `bytes`.
    request: &'a [u8],
    /// The request headers in wire order.
    header_index: Vec<wire::Entry<'a>>,
    /// The `spec` entries in wire order.
    spec_index: Vec<wire::Entry<'a>>,
    hook_name: &'a str,
    hook_type: i32,
    has_session: bool,
    /// `request.return_overrides` (code, error, body) as sent.
    overrides: (i32, &'a [u8], &'a [u8]),
    decoded: &'a OnceCell<Object>,
}

impl<'a> ObjectView<'a> {
    /// Validate `input` and index it; `scratch` receives the decoded Object if anything asks
    /// for it whole.
    pub fn new(input: &'a [u8], scratch: &'a Scratch) -> Result<Self, WireError> {
        let index = wire::validate_indexed(input)?;
        if index.request_count <= 1 {
            return Ok(Self::indexed(input, input, index, &scratch.decoded));
        }
        let decoded = scratch.decoded.get_or_init(|| Object::decode(input).expect("validated bytes decode"));
        let canonical = scratch.canonical.get_or_init(|| decoded.encode_to_vec());
        let index = wire::validate_indexed(canonical).expect("a fresh encoding is valid");
        Ok(Self::indexed(input, canonical, index, &scratch.decoded))
    }

    fn indexed(input: &'a [u8], bytes: &'a [u8], index: wire::Index<'a>, decoded: &'a OnceCell<Object>) -> Self {
        ObjectView {
            input,
            bytes,
            request: index.request,
            header_index: index.headers,
            spec_index: index.spec,
            hook_name: index.hook_name,
            hook_type: index.hook_type,
            has_session: index.has_session,
            overrides: index.overrides,
            decoded,
        }
    }

    /// The bytes the host sent.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// The hook type of this call (`Unknown` for a value outside the enum).
    pub fn hook_type(&self) -> HookType {
        HookType::try_from(self.hook_type).unwrap_or(HookType::Unknown)
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
        self.spec_index.iter().rev().find(|(k, _)| *k == key.as_bytes()).map(|(_, v)| *v)
    }

    /// A value of the Object's `spec` map.
    pub fn spec(&self, key: &str) -> Option<&'a str> {
        self.spec_bytes(key).map(wire::str_of)
    }

    /// A request header from `request.headers`, matched case-insensitively (an exact match
    /// wins; otherwise the first matching name in byte order).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        wire::get_ignore_case(self.header_index.iter().copied(), name.as_bytes()).map(wire::str_of)
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

    /// A query parameter from `request.params`.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        wire::map_get(self.request, req::PARAMS, name)
    }

    /// The request method (`request.method`).
    pub fn method(&self) -> &'a str {
        wire::last_str(self.request, req::METHOD)
    }

    /// The request URL (`request.url`). Under the gateway it is the inbound path and query,
    /// listen path included (docs/gateway-model.md).
    pub fn url(&self) -> &'a str {
        wire::last_str(self.request, req::URL)
    }

    /// The path and query as the client sent them (`request.request_uri`).
    pub fn request_uri(&self) -> &'a str {
        wire::last_str(self.request, req::REQUEST_URI)
    }

    /// The scheme (`request.scheme`).
    pub fn scheme(&self) -> &'a str {
        wire::last_str(self.request, req::SCHEME)
    }

    /// The request body (`request.raw_body`, or `request.body` when raw_body is empty).
    pub fn body(&self) -> &'a [u8] {
        match wire::last_len(self.request, req::RAW_BODY) {
            Some(raw) if !raw.is_empty() => raw,
            _ => wire::last_str(self.request, req::BODY).as_bytes(),
        }
    }

    /// Whether the gateway sent a session.
    pub fn has_session(&self) -> bool {
        self.has_session
    }

    /// The session, when the gateway sent one. Decodes the Object.
    pub fn session(&self) -> Option<&'a SessionState> {
        if !self.has_session {
            return None;
        }
        self.object().session.as_ref()
    }

    /// A value of the Object's `metadata` map.
    pub fn metadata(&self, key: &str) -> Option<&'a str> {
        wire::map_get(self.bytes, object::METADATA, key)
    }

    /// The upstream response (Response hooks only). Decodes the Object.
    pub fn response(&self) -> Option<&'a ResponseObject> {
        self.object().response.as_ref()
    }

    /// The whole Object as the gateway sent it (decoded on first use).
    pub fn object(&self) -> &'a Object {
        self.decoded.get_or_init(|| Object::decode(self.bytes).expect("validated bytes decode"))
    }

    /// `(response_code, response_error, response_body)` of the request's return overrides as
    /// sent (merged over every occurrence).
    pub(crate) fn original_overrides(&self) -> (i32, &'a str, &'a str) {
        let (code, error, body) = self.overrides;
        (code, wire::str_of(error), wire::str_of(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::MiniRequestObject;

    #[test]
    fn repeated_request_messages_read_like_the_decoded_object() {
        // Two occurrences of `request` whose headers map repeats "A": they merge, the later
        // entry is the map's value.
        let mut first = MiniRequestObject { method: "GET".into(), ..Default::default() };
        first.headers.insert("A".into(), "1".into());
        let mut second = MiniRequestObject { url: "/u".into(), ..Default::default() };
        second.headers.insert("A".into(), "2".into());
        second.headers.insert("B".into(), "3".into());
        let mut bytes = Vec::new();
        for r in [&first, &second] {
            prost::encoding::message::encode(object::REQUEST, r, &mut bytes);
        }
        let scratch = Scratch::new();
        let view = ObjectView::new(&bytes, &scratch).unwrap();
        assert_eq!(view.header("a"), Some("2"));
        assert_eq!(view.header_pairs(), vec![("A", "2"), ("B", "3")]);
        assert_eq!((view.method(), view.url()), ("GET", "/u"));
        assert_eq!(view.input(), &bytes[..], "answers are built on the bytes as sent");
        let decoded = Object::decode(&bytes[..]).unwrap();
        assert_eq!(view.object(), &decoded);
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let mut req = MiniRequestObject::default();
        req.headers.insert("Authorization".into(), "x".into());
        let mut obj = Object { request: Some(req), ..Default::default() };
        obj.spec.insert("APIID".into(), "api1".into());
        let bytes = obj.encode_to_vec();
        let scratch = Scratch::new();
        let view = ObjectView::new(&bytes, &scratch).unwrap();
        assert_eq!(view.header("authorization"), Some("x"));
        assert_eq!(view.header("AUTHORIZATION"), Some("x"));
        assert_eq!(view.header("Date"), None);
        assert_eq!(view.api().api_id, "api1");
    }
}
