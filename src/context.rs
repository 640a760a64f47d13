//! What a middleware sees and does: a read view of the gateway's Object ([`ObjectView`], which
//! `Context` dereferences to) plus the recorded edits and the host callbacks.
//!
//! Reads always show the Object as the gateway sent it. Edits are recorded, not applied in
//! place, so the answer can be the input bytes with the encoded edits appended (see
//! `answer`); [`Context::object_mut`] gives the whole Object mutably when a middleware needs it
//! (the answer is then a fresh encoding). [`Context::finish`] is the one way to the answer.

use crate::answer::{Answer, Edit, Edits, SessionEdit};
use crate::host::{Host, LogLevel, Store};
use crate::proto::{Header, Object, ResponseObject, SessionState};
use crate::session::SessionPatch;
#[cfg(doc)]
use crate::session::SessionTemplate;
use crate::view::{ObjectView, Scratch};
use crate::wire::WireError;
use prost::Message;
use std::borrow::Cow;

/// The per-call context handed to a middleware: read access to the Object (through
/// [`ObjectView`]'s methods), the edit recorder and the host callbacks.
pub struct Context<'a> {
    view: ObjectView<'a>,
    host: &'a dyn Host,
    edits: Edits,
}

impl<'a> std::ops::Deref for Context<'a> {
    type Target = ObjectView<'a>;

    fn deref(&self) -> &ObjectView<'a> {
        &self.view
    }
}

impl<'a> Context<'a> {
    /// A context over serialised Object bytes, validated here as strictly as a full decode
    /// but read lazily. `scratch` holds what the view decodes on demand.
    pub fn from_bytes(bytes: &'a [u8], scratch: &'a Scratch, host: &'a dyn Host) -> Result<Self, WireError> {
        Ok(Context { view: ObjectView::new(bytes, scratch)?, host, edits: Edits::default() })
    }

    /// The read view of the Object as the gateway sent it.
    pub fn view(&self) -> &ObjectView<'a> {
        &self.view
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

    // ---- Edits ----

    fn record(&mut self, edit: Edit) {
        self.edits.record(edit);
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
    /// the answer is a fresh encoding of it (the full path).
    pub fn object_mut(&mut self) -> &mut Object {
        self.edits.object_mut(&self.view)
    }

    /// The upstream response, mutably (full path); created when absent.
    pub fn response_mut(&mut self) -> &mut ResponseObject {
        self.object_mut().response.get_or_insert_with(Default::default)
    }

    /// Set a response header (Response hooks): every value of `name` (matched
    /// case-insensitively) is replaced by `value`, in `response.headers` and
    /// `response.multivalue_headers` alike, so the gateway, which rebuilds the response's
    /// headers from `multivalue_headers`, sends exactly this (docs/abi.md, Response hooks).
    pub fn set_response_header(&mut self, name: &str, value: &str) {
        let resp = self.response_headers_mut();
        resp.headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
        resp.headers.insert(name.to_owned(), value.to_owned());
        resp.multivalue_headers.retain(|h| !h.key.eq_ignore_ascii_case(name));
        resp.multivalue_headers.push(Header { key: name.to_owned(), values: vec![value.to_owned()] });
    }

    /// Add a value to a response header (Response hooks), keeping its other values (a second
    /// `Set-Cookie`, say); `response.headers` keeps the first value.
    pub fn add_response_header(&mut self, name: &str, value: &str) {
        let resp = self.response_headers_mut();
        match resp.multivalue_headers.iter_mut().find(|h| h.key.eq_ignore_ascii_case(name)) {
            Some(h) => h.values.push(value.to_owned()),
            None => resp.multivalue_headers.push(Header { key: name.to_owned(), values: vec![value.to_owned()] }),
        }
        if !resp.headers.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            resp.headers.insert(name.to_owned(), value.to_owned());
        }
    }

    /// Remove a response header with all its values (Response hooks), from
    /// `response.headers` and `response.multivalue_headers`.
    pub fn delete_response_header(&mut self, name: &str) {
        let resp = self.response_headers_mut();
        resp.headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
        resp.multivalue_headers.retain(|h| !h.key.eq_ignore_ascii_case(name));
    }

    /// The response for a header edit, with `multivalue_headers` holding the whole header set
    /// (filled from `headers` when the host sent only those).
    fn response_headers_mut(&mut self) -> &mut ResponseObject {
        let resp = self.response_mut();
        if resp.multivalue_headers.is_empty() && !resp.headers.is_empty() {
            resp.multivalue_headers =
                resp.headers.iter().map(|(k, v)| Header { key: k.clone(), values: vec![v.clone()] }).collect();
        }
        resp
    }

    /// Whether the middleware changed anything.
    pub fn is_modified(&self) -> bool {
        !self.edits.is_empty()
    }

    /// The answer: the input followed by the encoded edits when every edit is additive (an
    /// unchanged Object is answered as sent), otherwise a fresh encoding of the result.
    pub fn finish(self) -> Answer {
        self.edits.finish(&self.view)
    }

    /// The answer always as a fresh encoding of the result (the full path), for tests that
    /// compare both paths.
    #[doc(hidden)]
    pub fn finish_reencoded(self) -> Vec<u8> {
        self.edits.into_object(&self.view).encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;
    use crate::proto::{HookType, MiniRequestObject, ReturnOverrides};
    use std::collections::BTreeMap;

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

    /// The same edits answered by `finish` and by the full path: (finish's, full, appended?).
    fn both_paths(input: &Object, f: impl Fn(&mut Context)) -> (Object, Object, bool) {
        let host = FakeHost::new();
        let bytes = input.encode_to_vec();
        let (s1, s2) = (Scratch::new(), Scratch::new());
        let mut a = Context::from_bytes(&bytes, &s1, &host).unwrap();
        f(&mut a);
        let answer = a.finish();
        let appended = matches!(&answer, Answer::Appended(tail) if !tail.is_empty());
        let mut b = Context::from_bytes(&bytes, &s2, &host).unwrap();
        f(&mut b);
        let full = b.finish_reencoded();
        (Object::decode(&answer.into_vec(&bytes)[..]).unwrap(), Object::decode(&full[..]).unwrap(), appended)
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
        let bytes = sample().encode_to_vec();
        let host = FakeHost::new();
        let scratch = Scratch::new();
        let ctx = Context::from_bytes(&bytes, &scratch, &host).unwrap();
        assert!(!ctx.is_modified());
        assert_eq!(ctx.finish(), Answer::Appended(Vec::new()));
    }

    #[test]
    fn response_header_edits_keep_both_views_consistent() {
        use crate::proto::ResponseObject;
        let mut resp = ResponseObject { status_code: 200, ..Default::default() };
        for (k, v) in [("Server", "nginx"), ("Set-Cookie", "a=1"), ("X-Frame-Options", "ALLOW")] {
            resp.headers.insert(k.into(), v.into());
        }
        let mut with_multi = resp.clone();
        with_multi.multivalue_headers = vec![
            Header { key: "Server".into(), values: vec!["nginx".into()] },
            Header { key: "Set-Cookie".into(), values: vec!["a=1".into(), "b=2".into()] },
            Header { key: "X-Frame-Options".into(), values: vec!["ALLOW".into()] },
        ];
        for (sent, cookies) in [(with_multi, vec!["a=1", "b=2", "c=3"]), (resp, vec!["a=1", "c=3"])] {
            let obj = Object { response: Some(sent), ..sample() };
            let bytes = obj.encode_to_vec();
            let host = FakeHost::new();
            let scratch = Scratch::new();
            let mut ctx = Context::from_bytes(&bytes, &scratch, &host).unwrap();
            ctx.delete_response_header("server");
            ctx.set_response_header("x-frame-options", "DENY");
            ctx.add_response_header("set-cookie", "c=3");
            ctx.add_response_header("X-New", "1");
            let out = Object::decode(&ctx.finish().into_vec(&bytes)[..]).unwrap().response.unwrap();
            // What the gateway sends: the multivalue set, each header with all its values.
            let multi: BTreeMap<String, Vec<String>> =
                out.multivalue_headers.iter().map(|h| (h.key.to_ascii_lowercase(), h.values.clone())).collect();
            assert_eq!(multi.keys().collect::<Vec<_>>(), ["set-cookie", "x-frame-options", "x-new"]);
            assert_eq!(multi["set-cookie"], cookies);
            assert_eq!(multi["x-frame-options"], ["DENY"]);
            // headers agrees: the first value of each.
            let firsts: BTreeMap<String, String> =
                out.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
            let expected: BTreeMap<String, String> = multi.iter().map(|(k, v)| (k.clone(), v[0].clone())).collect();
            assert_eq!(firsts, expected);
        }
    }

    #[test]
    fn object_mut_keeps_earlier_edits() {
        let bytes = sample().encode_to_vec();
        let host = FakeHost::new();
        let scratch = Scratch::new();
        let mut ctx = Context::from_bytes(&bytes, &scratch, &host).unwrap();
        ctx.set_header("A", "1");
        ctx.response_mut().status_code = 201;
        ctx.set_header("B", "2");
        let out = Object::decode(&ctx.finish().into_vec(&bytes)[..]).unwrap();
        let req = out.request.unwrap();
        assert_eq!(req.set_headers["A"], "1");
        assert_eq!(req.set_headers["B"], "2");
        assert_eq!(out.response.unwrap().status_code, 201);
    }
}
