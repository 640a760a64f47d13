//! Every built-in at every hook it serves, over the corpus of Objects built as the gateway
//! builds them (tests/fixtures/objects, written by the Go gateway model: `make fixtures`).
//!
//! Each Object is dispatched as it was recorded (its own hook and configuration), then
//! re-targeted at each built-in and hook type with a configuration of the test's, and every
//! answer is checked: it decodes, the additive answer equals the fully re-encoded one, a
//! rejection is one plain message (the gateway's error template renders it as
//! `{"error": "<message>"}`, so a JSON document in it would be JSON inside a JSON string), and
//! each built-in did its own job.

use coprocess::proto::{HookType, Object};
use coprocess::{Context, FakeHost, Runtime, Scratch};
use prost::Message;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

fn corpus() -> Vec<(String, Object)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objects");
    let index: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert!(index.len() >= 30, "the corpus has {} Objects", index.len());
    index
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap();
            let bytes = std::fs::read(dir.join(file)).unwrap();
            (file.to_owned(), Object::decode(&bytes[..]).unwrap_or_else(|e| panic!("{file}: {e}")))
        })
        .collect()
}

fn runtime() -> (Runtime, FakeHost) {
    let host = FakeHost::new();
    let rt = Runtime::new(
        coprocess::builtins::registry(),
        Arc::new(host.clone()),
        coprocess::ConfigSource::Fixed(Default::default()),
    );
    (rt, host)
}

/// Dispatch and check what every answer must be; returns the decoded answer.
fn checked_dispatch(rt: &Runtime, obj: &Object, what: &str) -> Result<Object, coprocess::Error> {
    let bytes = obj.encode_to_vec();
    let answer = rt.dispatch(&bytes)?;
    let out = Object::decode(&answer[..]).unwrap_or_else(|e| panic!("{what}: the answer does not decode: {e}"));
    if let Some(ro) = out.request.as_ref().and_then(|r| r.return_overrides.as_ref()) {
        if ro.response_code >= 400 && !ro.override_error {
            let msg = &ro.response_error;
            assert!(!msg.is_empty(), "{what}: a rejection without a message");
            assert!(serde_json::from_str::<Value>(msg).is_err(), "{what}: JSON in a rejection message: {msg}");
        }
    }
    Ok(out)
}

/// The same edits answered on the additive path and re-encoded whole decode alike.
fn both_paths_agree(obj: &Object, edit: impl Fn(&mut Context<'_>), what: &str) {
    let bytes = obj.encode_to_vec();
    let host = FakeHost::new();
    let (s1, s2) = (Scratch::new(), Scratch::new());
    let mut a = Context::from_bytes(&bytes, &s1, &host).unwrap();
    edit(&mut a);
    let appended = Object::decode(&a.finish().into_vec(&bytes)[..]).unwrap();
    let mut b = Context::from_bytes(&bytes, &s2, &host).unwrap();
    edit(&mut b);
    let full = Object::decode(&b.finish_reencoded()[..]).unwrap();
    assert_eq!(appended, full, "{what}");
}

/// `obj` as the gateway would send it to hook `name` of type `hook`: no session and metadata for
/// Pre and CustomKeyCheck hooks.
fn retarget(obj: &Object, hook: HookType, name: &str, section: Value) -> Object {
    let mut o = obj.clone();
    if matches!(hook, HookType::Pre | HookType::CustomKeyCheck) {
        o.session = None;
        o.metadata.clear();
    }
    o.hook_type = hook as i32;
    o.hook_name = name.into();
    o.spec.insert("config_data".into(), json!({ name: section }).to_string());
    o
}

fn set_header<'a>(out: &'a Object, name: &str) -> Option<&'a str> {
    out.request.as_ref()?.set_headers.get(name).map(String::as_str)
}

fn code(out: &Object) -> i32 {
    out.request.as_ref().and_then(|r| r.return_overrides.as_ref()).map_or(0, |ro| ro.response_code)
}

#[test]
fn recorded_objects_dispatch_as_the_gateway_sent_them() {
    let (rt, _) = runtime();
    for (file, obj) in corpus() {
        let out = checked_dispatch(&rt, &obj, &file).unwrap_or_else(|e| panic!("{file}: {e}"));
        match obj.hook_name.split(':').next().unwrap() {
            "UpstreamRequestSigning" => {
                let sig = out
                    .request
                    .as_ref()
                    .unwrap()
                    .set_headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("signature"));
                assert!(sig.is_some_and(|(_, v)| v.starts_with("Signature keyId=")), "{file}: signed");
            }
            "HMACSignatureAuth" if file.contains("unsigned") => assert_eq!(code(&out), 400, "{file}"),
            "HMACSignatureAuth" | "StaticTokenAuth" if !file.contains("bad") => {
                assert!(out.session.is_some() && out.metadata.contains_key("token"), "{file}: authenticated")
            }
            _ => {}
        }
    }
}

#[test]
fn every_builtin_at_every_hook_it_serves() {
    let (rt, _) = runtime();
    let request_hooks = [HookType::Pre, HookType::PostKeyAuth, HookType::Post, HookType::CustomKeyCheck];
    let mut ran = 0;
    for (file, obj) in corpus() {
        let is_response = obj.response.is_some();
        // InjectHeaders: every hook type.
        let hooks: &[HookType] = if is_response { &[HookType::Response] } else { &request_hooks };
        for &hook in hooks {
            let what = format!("{file} InjectHeaders at {hook:?}");
            let cfg = json!({"add": {"X-Corpus": "1"}, "remove": ["Cookie", "Set-Cookie"]});
            let out = checked_dispatch(&rt, &retarget(&obj, hook, "InjectHeaders", cfg), &what).unwrap();
            if hook == HookType::Response {
                let r = out.response.unwrap();
                assert_eq!(r.headers.get("X-Corpus").map(String::as_str), Some("1"), "{what}");
                assert!(r.multivalue_headers.iter().any(|h| h.key == "X-Corpus" && h.values == ["1"]), "{what}");
                assert!(!r.multivalue_headers.iter().any(|h| h.key.eq_ignore_ascii_case("set-cookie")), "{what}");
            } else {
                assert_eq!(set_header(&out, "X-Corpus"), Some("1"), "{what}");
            }
            ran += 1;
        }
        if is_response {
            continue;
        }
        // StaticTokenAuth and HMACSignatureAuth: CustomKeyCheck. The corpus's requests carry no
        // token or signature of these configurations: refused without a session.
        let what = format!("{file} StaticTokenAuth");
        let out = checked_dispatch(
            &rt,
            &retarget(
                &obj,
                HookType::CustomKeyCheck,
                "StaticTokenAuth",
                json!({"header": "X-Corpus-Token", "tokens": {"t": {}}, "reject_code": 401}),
            ),
            &what,
        )
        .unwrap();
        assert!(out.session.is_none() && code(&out) == 401, "{what}");
        for compat in ["default", "tyk"] {
            let what = format!("{file} HMACSignatureAuth compat {compat}");
            let cfg = json!({"keys": {"corpus-key": "corpus-secret"}, "store_prefix": "", "compat": compat});
            let out = checked_dispatch(&rt, &retarget(&obj, HookType::CustomKeyCheck, "HMACSignatureAuth", cfg), &what)
                .unwrap();
            let signed_for_us =
                obj.request.as_ref().unwrap().headers.get("Authorization").is_some_and(|a| a.contains("corpus-key"));
            if !signed_for_us {
                assert!(out.session.is_none() && [400, 401].contains(&code(&out)), "{what}: {}", code(&out));
            }
        }
        // UpstreamRequestSigning: Pre, PostKeyAuth, Post.
        for hook in [HookType::Pre, HookType::PostKeyAuth, HookType::Post] {
            let what = format!("{file} UpstreamRequestSigning at {hook:?}");
            let cfg = json!({"algorithm": "hmac-sha256", "keyId": "corpus", "secret": "s", "listen_path": "/", "target_url": "http://upstream/base"});
            let out = checked_dispatch(&rt, &retarget(&obj, hook, "UpstreamRequestSigning", cfg), &what).unwrap();
            let sig = set_header(&out, "Authorization").unwrap_or_else(|| panic!("{what}: no signature"));
            assert!(
                sig.starts_with(r#"Signature keyId="corpus",algorithm="hmac-sha256",headers="(request-target) "#),
                "{what}: {sig}"
            );
            for hop in ["host", "connection", "x-forwarded-for", "keep-alive"] {
                assert!(!sig.split('"').nth(5).unwrap().split(' ').any(|h| h == hop), "{what}: {hop} signed");
            }
            ran += 1;
        }
        // ReqHubMerchant: Pre, CustomKeyCheck, PostKeyAuth. No ReqHub headers for this
        // configuration: headers_missing, as one plain message.
        for hook in [HookType::Pre, HookType::CustomKeyCheck, HookType::PostKeyAuth] {
            let what = format!("{file} ReqHubMerchant at {hook:?}");
            let cfg = json!({"mode": "local", "api": "corpus", "clients": {}});
            let out = checked_dispatch(&rt, &retarget(&obj, hook, "ReqHubMerchant", cfg), &what).unwrap();
            let has_client_headers =
                obj.request.as_ref().unwrap().headers.keys().any(|k| k.eq_ignore_ascii_case("ClientToken"));
            let ro = out.request.as_ref().unwrap().return_overrides.as_ref().unwrap();
            if !has_client_headers {
                assert!(
                    ro.response_code == 403 && ro.response_error.starts_with("headers_missing: "),
                    "{what}: {ro:?}"
                );
            } else {
                assert!([403, -1].contains(&ro.response_code), "{what}");
            }
            ran += 1;
        }
        // Additive and full answers agree on every Object for a mix of edits.
        both_paths_agree(
            &obj,
            |c| {
                c.set_header("X-A", "1");
                c.delete_header("Cookie");
                c.add_param("p", "q");
                c.set_metadata("m", "v");
                c.reject(403, "no");
            },
            &file,
        );
    }
    assert!(ran > 200, "{ran} built-in dispatches over the corpus");
}
