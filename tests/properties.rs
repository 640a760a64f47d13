//! Property tests: wire round trips, the append path equals the full path for any edits, and
//! any Object dispatched to the built-ins yields a decodable answer or a clean error code.

use coprocess::proto::{
    AccessDefinition, Header, MiniRequestObject, Object, ResponseObject, ReturnOverrides, SessionState,
};
use coprocess::{ConfigSource, Context, FakeHost, Runtime, Scratch, SessionState as Session, SessionTemplate};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use prost::Message;
use std::sync::Arc;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[A-Za-z0-9-]{1,12}", any::<String>().prop_map(|s| s.chars().take(24).collect()),]
}

fn string_map() -> impl Strategy<Value = std::collections::BTreeMap<String, String>> {
    btree_map(text(), text(), 0..5)
}

fn return_overrides() -> impl Strategy<Value = ReturnOverrides> {
    (prop_oneof![Just(-1), Just(0), 100..600i32], text(), string_map(), any::<bool>(), text()).prop_map(
        |(response_code, response_error, headers, override_error, response_body)| ReturnOverrides {
            response_code,
            response_error,
            headers,
            override_error,
            response_body,
        },
    )
}

fn request() -> impl Strategy<Value = MiniRequestObject> {
    (
        (string_map(), string_map(), vec(text(), 0..3), text(), text()),
        (string_map(), string_map(), vec(text(), 0..3), option::of(return_overrides())),
        (text(), text(), text(), vec(any::<u8>(), 0..32)),
    )
        .prop_map(
            |(
                (headers, set_headers, delete_headers, body, url),
                (params, add_params, delete_params, ro),
                (method, request_uri, scheme, raw_body),
            )| {
                MiniRequestObject {
                    headers,
                    set_headers,
                    delete_headers,
                    body,
                    url,
                    params,
                    add_params,
                    extended_params: Default::default(),
                    delete_params,
                    return_overrides: ro,
                    method,
                    request_uri,
                    scheme,
                    raw_body,
                }
            },
        )
}

fn session() -> impl Strategy<Value = SessionState> {
    (any::<i64>(), -1e9..1e9f64, any::<i64>(), text(), vec(text(), 0..3), string_map(), any::<bool>(), text()).prop_map(
        |(expires, rate, quota_max, org_id, tags, metadata, hmac_enabled, alias)| {
            let mut s = SessionState {
                expires,
                rate,
                quota_max,
                org_id,
                tags,
                metadata,
                hmac_enabled,
                alias,
                ..Default::default()
            };
            s.access_rights.insert(
                "api".into(),
                AccessDefinition { api_id: "api".into(), versions: vec!["Default".into()], ..Default::default() },
            );
            s
        },
    )
}

fn response() -> impl Strategy<Value = ResponseObject> {
    (100..600i32, vec(any::<u8>(), 0..16), string_map(), vec((text(), vec(text(), 0..3)), 0..3)).prop_map(
        |(status_code, raw_body, headers, mv)| ResponseObject {
            status_code,
            raw_body,
            body: String::new(),
            headers,
            multivalue_headers: mv.into_iter().map(|(key, values)| Header { key, values }).collect(),
        },
    )
}

fn object() -> impl Strategy<Value = Object> {
    (0..6i32, text(), option::of(request()), option::of(session()), string_map(), string_map(), option::of(response()))
        .prop_map(|(hook_type, hook_name, request, session, metadata, spec, response)| Object {
            hook_type,
            hook_name,
            request,
            session,
            metadata,
            spec,
            response,
        })
}

#[derive(Debug, Clone)]
enum Op {
    SetHeader(String, String),
    DeleteHeader(String),
    AddParam(String, String),
    DeleteParam(String),
    Url(String),
    Method(String),
    Reject(i32, String),
    Respond(i32, String),
    Authenticate(f64, String),
    AuthenticateWith { rate: f64, tag: String, secret: String, meta: (String, String), token: String },
    Metadata(String, String),
    ResponseStatus(i32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (text(), text()).prop_map(|(k, v)| Op::SetHeader(k, v)),
        text().prop_map(Op::DeleteHeader),
        (text(), text()).prop_map(|(k, v)| Op::AddParam(k, v)),
        text().prop_map(Op::DeleteParam),
        text().prop_map(Op::Url),
        text().prop_map(Op::Method),
        (prop_oneof![Just(0), 100..600i32], text()).prop_map(|(c, m)| Op::Reject(c, m)),
        (prop_oneof![Just(0), 100..600i32], text()).prop_map(|(c, m)| Op::Respond(c, m)),
        (0.0..1e6f64, text()).prop_map(|(r, t)| Op::Authenticate(r, t)),
        (0.0..1e6f64, text(), text(), (text(), text()), text())
            .prop_map(|(rate, tag, secret, meta, token)| { Op::AuthenticateWith { rate, tag, secret, meta, token } }),
        (text(), text()).prop_map(|(k, v)| Op::Metadata(k, v)),
        (100..600i32).prop_map(Op::ResponseStatus),
    ]
}

fn apply(ctx: &mut Context<'_>, ops: &[Op]) {
    for op in ops.iter().cloned() {
        match op {
            Op::SetHeader(k, v) => ctx.set_header(k, v),
            Op::DeleteHeader(k) => ctx.delete_header(k),
            Op::AddParam(k, v) => ctx.add_param(k, v),
            Op::DeleteParam(k) => ctx.delete_param(k),
            Op::Url(u) => ctx.set_url(u),
            Op::Method(m) => ctx.set_method(m),
            Op::Reject(c, m) => ctx.reject(c, m),
            Op::Respond(c, b) => ctx.respond(c, b, vec![("X-R".into(), "1".into())]),
            Op::Authenticate(rate, t) => ctx.authenticate(Session { rate, ..Default::default() }, t),
            Op::AuthenticateWith { rate, tag, secret, meta, token } => {
                let template = SessionTemplate::new(&Session { rate, tags: vec!["t".into()], ..Default::default() });
                let patch =
                    template.patch().hmac_enabled(true).hmac_secret(&secret).metadata(&meta.0, &meta.1).tag(&tag);
                ctx.authenticate_with(patch, token)
            }
            Op::Metadata(k, v) => ctx.set_metadata(k, v),
            Op::ResponseStatus(s) => ctx.response_mut().status_code = s,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn decode_encode_round_trips(obj in object()) {
        let bytes = obj.encode_to_vec();
        prop_assert_eq!(Object::decode(&bytes[..]).unwrap(), obj);
    }

    #[test]
    fn append_path_equals_full_path(obj in object(), ops in vec(op(), 0..8)) {
        let host = FakeHost::new();
        let bytes = obj.encode_to_vec();
        let (s1, s2) = (Scratch::new(), Scratch::new());
        let mut fast = Context::from_bytes(&bytes, &s1, &host).unwrap();
        apply(&mut fast, &ops);
        let fast = fast.finish().into_vec(&bytes);
        let mut full = Context::from_bytes(&bytes, &s2, &host).unwrap();
        apply(&mut full, &ops);
        let full = full.finish_reencoded();
        prop_assert_eq!(Object::decode(&fast[..]).unwrap(), Object::decode(&full[..]).unwrap());
    }

    #[test]
    fn lazy_reads_equal_decoded_reads(obj in object(), names in vec(text(), 0..4), split in any::<bool>()) {
        let host = FakeHost::new();
        let mut bytes = obj.encode_to_vec();
        if split {
            // The same Object with a second, empty request occurrence appended: protobuf merges
            // it, so every read must be unchanged (the context falls back to decoding).
            bytes.extend_from_slice(&[0x1a, 0x00]);
        }
        let scratch = Scratch::new();
        let view = Context::from_bytes(&bytes, &scratch, &host).unwrap();
        let mut expected = obj.clone();
        if split { expected.request.get_or_insert_with(Default::default); }
        // The reads of the decoded Object, written out independently of the crate's readers.
        let req = expected.request.clone().unwrap_or_default();
        prop_assert_eq!(view.hook_type_raw(), expected.hook_type);
        prop_assert_eq!(view.hook_name(), expected.hook_name.as_str());
        prop_assert_eq!(view.method(), req.method.as_str());
        prop_assert_eq!(view.url(), req.url.as_str());
        prop_assert_eq!(view.request_uri(), req.request_uri.as_str());
        prop_assert_eq!(view.scheme(), req.scheme.as_str());
        let body: &[u8] = if req.raw_body.is_empty() { req.body.as_bytes() } else { &req.raw_body };
        prop_assert_eq!(view.body(), body);
        prop_assert_eq!(view.has_session(), expected.session.is_some());
        let pairs: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prop_assert_eq!(view.header_pairs(), pairs);
        prop_assert_eq!(view.api().api_id, expected.spec.get("APIID").map_or("", String::as_str));
        let mut probe: Vec<String> = names.clone();
        probe.extend(req.headers.keys().cloned());
        probe.extend(req.headers.keys().map(|k| k.to_ascii_uppercase()));
        probe.extend(req.params.keys().cloned());
        probe.extend(expected.spec.keys().cloned());
        probe.extend(expected.metadata.keys().cloned());
        for n in &probe {
            // Exact name first, else the first name in map order equal ignoring ASCII case.
            let header = req.headers.get(n.as_str())
                .or_else(|| req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v))
                .map(String::as_str);
            prop_assert_eq!(view.header(n), header, "header {:?}", n);
            prop_assert_eq!(view.param(n), req.params.get(n.as_str()).map(String::as_str));
            prop_assert_eq!(view.spec(n), expected.spec.get(n.as_str()).map(String::as_str));
            prop_assert_eq!(view.metadata(n), expected.metadata.get(n.as_str()).map(String::as_str));
        }
        prop_assert_eq!(view.object(), &expected);
    }

    #[test]
    fn dispatching_any_object_to_the_builtins_never_panics(obj in object(), which in 0..3usize, config in prop_oneof![
        Just(""), Just("{}"), Just("{"), Just(r#"{"InjectHeaders": {"add": {"X": "1"}, "remove": ["Y"]}}"#),
        Just(r#"{"StaticTokenAuth": {"tokens": {"t": {"rate": 1}}, "reject_code": 401}}"#),
    ]) {
        let rt = Runtime::new(coprocess::builtins::registry(), Arc::new(FakeHost::new()), ConfigSource::Fixed(Default::default()));
        let mut obj = obj;
        obj.hook_name = ["InjectHeaders", "StaticTokenAuth", "InjectHeaders:x"][which].into();
        if !config.is_empty() {
            obj.spec.insert("config_data".into(), config.into());
        }
        match rt.dispatch(&obj.encode_to_vec()) {
            Ok(answer) => { Object::decode(&answer[..]).expect("answers decode"); }
            Err(e) => prop_assert!(e.code.as_int() < 0 && !e.message.is_empty()),
        }
    }

    #[test]
    fn garbage_bytes_are_rejected_cleanly(bytes in vec(any::<u8>(), 0..256)) {
        let rt = Runtime::new(coprocess::builtins::registry(), Arc::new(FakeHost::new()), ConfigSource::Fixed(Default::default()));
        if let Err(e) = rt.dispatch(&bytes) {
            prop_assert!(e.code.as_int() < 0);
        }
        if let Err(e) = rt.dispatch_event(&bytes) {
            prop_assert!(e.code.as_int() < 0);
        }
    }
}
