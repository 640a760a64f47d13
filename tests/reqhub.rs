//! ReqHubMerchant through the real dispatcher (serialised Objects in and out) with a FakeHost:
//! the token formula against an independent computation, local mode (every denial it can
//! produce, replays, stale timestamps), and remote mode against a verifier this test starts on
//! 127.0.0.1 that checks the merchant token itself.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use coprocess::builtins::reqhub::client::{self, SignedHeaders};
use coprocess::builtins::reqhub::{codes, UNAVAILABLE_EVENT};
use coprocess::proto::{MiniRequestObject, ReturnOverrides};
use coprocess::{Code, ConfigSource, FakeHost, HookType, Object, Runtime, SessionState};
use hmac::{Hmac, Mac};
use prost::Message;
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// The token formula, known answer.

/// Computed independently of this crate:
/// python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(('priv-key-1'+'1714737642000'+'AAECAwQFBgcICQoLDA0ODxAREhM='+'/v1/items?id=7').encode(), b'pub-key-1', hashlib.sha256).digest()).decode())"
/// → nT461QJJ0PHEkUytQdUIVlNn/X9hMdliCGP0Z9OYc9U=   (the nonce is the base64 of bytes 0..19)
const KAT_TOKEN: &str = "nT461QJJ0PHEkUytQdUIVlNn/X9hMdliCGP0Z9OYc9U=";

#[test]
fn token_formula_matches_an_independent_computation() {
    let nonce: [u8; 20] = std::array::from_fn(|i| i as u8);
    assert_eq!(client::encode_nonce(&nonce), "AAECAwQFBgcICQoLDA0ODxAREhM=");
    assert_eq!(
        client::token("pub-key-1", "priv-key-1", "1714737642000", "AAECAwQFBgcICQoLDA0ODxAREhM=", "/v1/items?id=7"),
        KAT_TOKEN
    );
    let headers = client::client_headers("pub-key-1", "priv-key-1", "/v1/items?id=7", 1714737642000, &nonce);
    assert_eq!(
        headers,
        [
            ("ClientToken", KAT_TOKEN.to_owned()),
            ("ClientKey", "pub-key-1".to_owned()),
            ("ClientTimestamp", "1714737642000".to_owned()),
            ("ClientNonce", "AAECAwQFBgcICQoLDA0ODxAREhM=".to_owned()),
            ("ClientUrl", "/v1/items?id=7".to_owned()),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Helpers.

const URI: &str = "/v1/items?id=7";

fn runtime() -> (Runtime, Arc<FakeHost>) {
    let host = Arc::new(FakeHost::new());
    let rt = Runtime::new(coprocess::builtins::registry(), host.clone(), ConfigSource::Fixed(Default::default()));
    (rt, host)
}

fn object(hook: HookType, hook_name: &str, config_data: &str, headers: &[(&str, &str)]) -> Object {
    let mut req = MiniRequestObject {
        method: "GET".into(),
        url: URI.into(),
        request_uri: URI.into(),
        return_overrides: Some(ReturnOverrides { response_code: -1, ..Default::default() }),
        ..Default::default()
    };
    for (k, v) in headers {
        req.headers.insert((*k).into(), (*v).into());
    }
    let mut obj =
        Object { hook_type: hook as i32, hook_name: hook_name.into(), request: Some(req), ..Default::default() };
    obj.spec.insert("APIID".into(), "api-7".into());
    obj.spec.insert("OrgID".into(), "org-1".into());
    obj.spec.insert("config_data".into(), config_data.into());
    obj
}

/// Dispatch through the byte path, as the C ABI does.
fn dispatch(rt: &Runtime, obj: &Object) -> Object {
    let answer = rt.dispatch(&obj.encode_to_vec()).expect("dispatch succeeds (a denial is not a failure)");
    Object::decode(&answer[..]).expect("answer decodes")
}

fn overrides(obj: &Object) -> ReturnOverrides {
    obj.request.as_ref().unwrap().return_overrides.clone().unwrap_or_default()
}

/// (status, code, message) of a denial; panics when the request was not denied. The denial is
/// rendered by the gateway's error template, so `response_error` is plain text,
/// `<code>: <message>`, never a JSON document, and no override header is set.
fn denial(obj: &Object) -> (i32, String, String) {
    let ro = overrides(obj);
    assert!(ro.response_code >= 400, "not denied: {ro:?}");
    assert!(!ro.override_error, "a denial goes through the gateway's error template");
    assert!(ro.headers.is_empty(), "no override headers: {:?}", ro.headers);
    assert!(serde_json::from_str::<Value>(&ro.response_error).is_err(), "not JSON: {}", ro.response_error);
    let (code, message) = ro.response_error.split_once(": ").expect("<code>: <message>");
    (ro.response_code, code.to_owned(), message.to_owned())
}

fn assert_denied(obj: &Object, code: &str) -> String {
    let (status, got, message) = denial(obj);
    assert_eq!((status, got.as_str()), (403, code), "message: {message}");
    assert!(!message.is_empty());
    message
}

fn assert_passed(obj: &Object) {
    assert_eq!(overrides(obj).response_code, -1, "denied: {:?}", overrides(obj).response_error);
}

fn pairs(h: &SignedHeaders) -> Vec<(&'static str, String)> {
    h.client_pairs().iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn as_refs<'a>(p: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    p.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

// ---------------------------------------------------------------------------------------
// Local mode.

const LOCAL: &str = r#"{"ReqHubMerchant": {"mode": "local", "api": "prod-1",
  "clients": {"client-pub-A": {"private_key": "client-priv-A", "api": "prod-1"},
              "client-pub-B": {"private_key": "client-priv-B", "api": "prod-2"}},
  "session": {"rate": 50, "per": 1, "quota_max": -1, "tags": ["reqhub"]}}}"#;

fn signed_a(ts: u64) -> SignedHeaders {
    SignedHeaders::sign("client-pub-A", "client-priv-A", URI, ts, &client::random_nonce().unwrap())
}

fn local(rt: &Runtime, hook: HookType, headers: &[(&str, &str)]) -> Object {
    dispatch(rt, &object(hook, "ReqHubMerchant", LOCAL, headers))
}

#[test]
fn local_valid_request_passes_and_records_its_nonce() {
    let (rt, host) = runtime();
    let h = signed_a(client::unix_millis());
    let out = local(&rt, HookType::Pre, &as_refs(&pairs(&h)));
    assert_passed(&out);
    let result: Value = serde_json::from_str(&out.metadata["reqhub"]).unwrap();
    assert_eq!(result, serde_json::json!({"mode": "local", "client_key": "client-pub-A", "api": "prod-1"}));
    assert!(out.session.is_none(), "Pre sets no session");
    let stores = host.stores.lock().clone();
    assert_eq!(
        stores,
        vec![(format!("reqhub-nonce-client-pub-A:{}", h.nonce), h.timestamp.clone(), 300)],
        "key, value, TTL = window in s"
    );
}

#[test]
fn local_custom_key_check_sets_session_and_token() {
    let (rt, _) = runtime();
    let out = local(&rt, HookType::CustomKeyCheck, &as_refs(&pairs(&signed_a(client::unix_millis()))));
    assert_passed(&out);
    let s = out.session.expect("session");
    assert_eq!((s.rate, s.per, s.quota_max, s.tags.clone()), (50.0, 1.0, -1, vec!["reqhub".to_owned()]));
    assert_eq!(out.metadata["token"], "client-pub-A");

    // A denial as CustomKeyCheck leaves no session.
    let out = local(&rt, HookType::CustomKeyCheck, &[]);
    assert_denied(&out, codes::HEADERS_MISSING);
    assert!(out.session.is_none() && !out.metadata.contains_key("token"));
}

#[test]
fn custom_key_check_sets_the_id_extractor_deadline_when_configured() {
    let (rt, _) = runtime();
    let config = LOCAL.replace(r#""mode": "local","#, r#""mode": "local", "id_extractor_ttl_s": 60,"#);
    let before = client::unix_millis() / 1000;
    let obj =
        object(HookType::CustomKeyCheck, "ReqHubMerchant", &config, &as_refs(&pairs(&signed_a(client::unix_millis()))));
    let s = dispatch(&rt, &obj).session.expect("session");
    let after = client::unix_millis() / 1000;
    assert!((before + 60..=after + 60).contains(&(s.id_extractor_deadline as u64)), "{}", s.id_extractor_deadline);
    // Without the setting the template's value stays (0 here).
    let out = local(&rt, HookType::CustomKeyCheck, &as_refs(&pairs(&signed_a(client::unix_millis()))));
    assert_eq!(out.session.unwrap().id_extractor_deadline, 0);
}

#[test]
fn local_post_key_auth_behaves_as_pre() {
    let (rt, _) = runtime();
    let mut obj =
        object(HookType::PostKeyAuth, "ReqHubMerchant", LOCAL, &as_refs(&pairs(&signed_a(client::unix_millis()))));
    obj.session = Some(SessionState { rate: 7.0, ..Default::default() });
    obj.metadata.insert("token".into(), "gateway-key".into());
    let out = dispatch(&rt, &obj);
    assert_passed(&out);
    assert_eq!(out.session.unwrap().rate, 7.0, "session untouched");
    assert_eq!(out.metadata["token"], "gateway-key");
    assert!(out.metadata.contains_key("reqhub"));
}

#[test]
fn header_names_are_case_insensitive() {
    let (rt, _) = runtime();
    let h = signed_a(client::unix_millis());
    let lower: Vec<(String, String)> = pairs(&h).into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let refs: Vec<(&str, &str)> = lower.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_passed(&local(&rt, HookType::Pre, &refs));
}

#[test]
fn local_headers_missing_names_each_missing_header() {
    let (rt, host) = runtime();
    let all = pairs(&signed_a(client::unix_millis()));
    for skip in 0..all.len() {
        let mut some = as_refs(&all);
        let (name, _) = some.remove(skip);
        let message = assert_denied(&local(&rt, HookType::Pre, &some), codes::HEADERS_MISSING);
        assert!(message.starts_with(&format!("Missing ReqHub header: {name}.")), "{message}");
        // An empty value counts as missing.
        let mut empty = as_refs(&all);
        empty[skip].1 = "";
        assert_denied(&local(&rt, HookType::Pre, &empty), codes::HEADERS_MISSING);
    }
    let message = assert_denied(&local(&rt, HookType::Pre, &[]), codes::HEADERS_MISSING);
    assert!(
        message.starts_with("Missing ReqHub headers: ClientToken, ClientKey, ClientTimestamp, ClientNonce, ClientUrl."),
        "{message}"
    );
    // Control characters are refused before anything else looks at the value.
    let mut bad = as_refs(&all);
    bad[1].1 = "client-pub-A\r\nX-Injected: 1";
    let message = assert_denied(&local(&rt, HookType::Pre, &bad), codes::HEADERS_MISSING);
    assert!(message.contains("ClientKey"), "{message}");
    assert!(host.stores.lock().is_empty(), "nothing stored for denied requests");
}

#[test]
fn local_url_mismatch() {
    let (rt, _) = runtime();
    let ts = client::unix_millis();
    for url in ["/v1/items", "/v1/items?id=8", "/V1/items?id=7", "https://host/v1/items?id=7", "/v1/items?id=7 "] {
        let h = SignedHeaders::sign("client-pub-A", "client-priv-A", url, ts, &client::random_nonce().unwrap());
        assert_denied(&local(&rt, HookType::Pre, &as_refs(&pairs(&h))), codes::URL_MISMATCH);
    }
}

#[test]
fn local_client_not_found_product_mismatch_and_bad_signature() {
    let (rt, host) = runtime();
    let ts = client::unix_millis();
    let nonce = client::random_nonce().unwrap();

    let unknown = SignedHeaders::sign("client-pub-Z", "client-priv-A", URI, ts, &nonce);
    assert_denied(&local(&rt, HookType::Pre, &as_refs(&pairs(&unknown))), codes::CLIENT_NOT_FOUND);

    let other_product = SignedHeaders::sign("client-pub-B", "client-priv-B", URI, ts, &nonce);
    assert_denied(&local(&rt, HookType::Pre, &as_refs(&pairs(&other_product))), codes::PRODUCT_MISMATCH);

    let wrong_key = SignedHeaders::sign("client-pub-A", "client-priv-B", URI, ts, &nonce);
    let message =
        assert_denied(&local(&rt, HookType::Pre, &as_refs(&pairs(&wrong_key))), codes::CLIENT_SIGNATURE_INVALID);
    assert!(!message.contains("client-priv"), "no secret in the message: {message}");

    // Token valid for other values than the ones sent: each part is bound.
    let good = signed_a(ts);
    let mut p = pairs(&good);
    p[2].1 = (ts - 1).to_string(); // timestamp changed after signing
    assert_denied(&local(&rt, HookType::Pre, &as_refs(&p)), codes::CLIENT_SIGNATURE_INVALID);
    let mut p = pairs(&good);
    p[3].1 = client::random_nonce().unwrap(); // nonce changed after signing
    assert_denied(&local(&rt, HookType::Pre, &as_refs(&p)), codes::CLIENT_SIGNATURE_INVALID);
    let mut p = pairs(&good);
    let mut raw = STANDARD.decode(&p[0].1).unwrap();
    raw[31] ^= 1;
    p[0].1 = STANDARD.encode(raw); // one bit of the MAC flipped
    assert_denied(&local(&rt, HookType::Pre, &as_refs(&p)), codes::CLIENT_SIGNATURE_INVALID);
    let mut p = pairs(&good);
    p[0].1 = "not base64 at all".into();
    assert_denied(&local(&rt, HookType::Pre, &as_refs(&p)), codes::CLIENT_SIGNATURE_INVALID);

    assert!(host.stores.lock().is_empty(), "unauthentic requests never reach the store");
    assert!(host.logs.lock().iter().all(|l| !l.message.contains("client-priv")));
}

#[test]
fn local_replayed_nonce_is_denied_on_this_and_other_nodes() {
    let (rt, host) = runtime();
    let h = pairs(&signed_a(client::unix_millis()));
    assert_passed(&local(&rt, HookType::Pre, &as_refs(&h)));
    let message = assert_denied(&local(&rt, HookType::Pre, &as_refs(&h)), codes::MERCHANT_SIGNATURE_INVALID);
    assert!(message.contains("already used"), "{message}");

    // Another node already saw this nonce: it is in the shared store.
    let other = signed_a(client::unix_millis());
    host.store.set(&format!("reqhub-nonce-client-pub-A:{}", other.nonce), &other.timestamp, 300);
    assert_denied(&local(&rt, HookType::Pre, &as_refs(&pairs(&other))), codes::MERCHANT_SIGNATURE_INVALID);

    // The same nonce from another client is that client's own business (keyed by ClientKey).
    let (rt2, host2) = runtime();
    let config = LOCAL.replace(r#""api": "prod-2""#, r#""api": "prod-1""#);
    let b = SignedHeaders::sign("client-pub-B", "client-priv-B", URI, client::unix_millis(), &other.nonce);
    host2.store.set(&format!("reqhub-nonce-client-pub-A:{}", other.nonce), "1", 300);
    assert_passed(&dispatch(&rt2, &object(HookType::Pre, "ReqHubMerchant", &config, &as_refs(&pairs(&b)))));
}

#[test]
fn local_store_outage_fails_closed_and_recovers() {
    let (rt, host) = runtime();
    host.store_unavailable.store(true, std::sync::atomic::Ordering::Relaxed);
    let h = pairs(&signed_a(client::unix_millis()));
    for _ in 0..3 {
        let out = local(&rt, HookType::Pre, &as_refs(&h));
        let (status, code, message) = denial(&out);
        assert_eq!((status, code.as_str()), (503, codes::VERIFICATION_UNAVAILABLE), "{message}");
    }
    assert!(host.stores.lock().is_empty(), "nothing stored during the outage");
    let events = host.events.lock().clone();
    assert_eq!(events.len(), 3);
    let payload: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(events[0].0, "ReqHubVerificationUnavailable");
    assert_eq!((payload["mode"].as_str(), payload["client_key"].as_str()), (Some("local"), Some("client-pub-A")));
    assert!(payload["reason"].as_str().unwrap().contains("unavailable"), "{payload}");
    assert!(host
        .logs
        .lock()
        .iter()
        .any(|l| l.level == coprocess::LogLevel::Warning && l.message.contains("unavailable")));

    // The store is back: the same request (its nonce was never recorded) passes once.
    host.store_unavailable.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_passed(&local(&rt, HookType::Pre, &as_refs(&h)));
    assert_denied(&local(&rt, HookType::Pre, &as_refs(&h)), codes::MERCHANT_SIGNATURE_INVALID);
}

#[test]
fn local_stale_future_and_malformed_timestamps_are_denied() {
    let (rt, host) = runtime();
    let now = client::unix_millis();
    for ts in [now - 300_000 - 5_000, now + 300_000 + 5_000, now - 86_400_000] {
        let message = assert_denied(
            &local(&rt, HookType::Pre, &as_refs(&pairs(&signed_a(ts)))),
            codes::MERCHANT_SIGNATURE_INVALID,
        );
        assert!(message.contains("window"), "{message}");
    }
    // Just inside the window, both ways.
    assert_passed(&local(&rt, HookType::Pre, &as_refs(&pairs(&signed_a(now - 290_000)))));
    assert_passed(&local(&rt, HookType::Pre, &as_refs(&pairs(&signed_a(now + 60_000)))));
    // A timestamp ahead of the clock keeps its nonce for as long as it stays acceptable.
    let ttl = host.stores.lock().last().unwrap().2;
    assert!((359..=361).contains(&ttl), "ttl {ttl}");

    let nonce = client::random_nonce().unwrap();
    for ts in ["171473764200", "17147376420000", "17147376420x0", "-714737642000", "1.71473764e12"] {
        let token = client::token("client-pub-A", "client-priv-A", ts, &nonce, URI);
        let h = [
            ("ClientToken", token.as_str()),
            ("ClientKey", "client-pub-A"),
            ("ClientTimestamp", ts),
            ("ClientNonce", &nonce),
            ("ClientUrl", URI),
        ];
        let message = assert_denied(&local(&rt, HookType::Pre, &h), codes::MERCHANT_SIGNATURE_INVALID);
        assert!(message.contains("13 digits"), "{message}");
    }
}

#[test]
fn local_malformed_nonce_is_denied() {
    let (rt, _) = runtime();
    let now = client::unix_millis();
    for nonce in
        ["abc", "AAECAwQFBgcICQoLDA0ODxAREg==", "AAECAwQFBgcICQoLDA0ODxAREhMU", "AAECAwQFBgcICQoLDA0ODxAREhM=="]
    {
        let h = SignedHeaders::sign("client-pub-A", "client-priv-A", URI, now, nonce);
        let message =
            assert_denied(&local(&rt, HookType::Pre, &as_refs(&pairs(&h))), codes::MERCHANT_SIGNATURE_INVALID);
        assert!(message.contains("20 random bytes"), "{nonce}: {message}");
    }
}

#[test]
fn local_window_and_prefix_are_configurable() {
    let (rt, host) = runtime();
    let config = r#"{"ReqHubMerchant:strict": {"mode": "local", "api": "prod-1", "window_ms": 2500, "nonce_prefix": "n/",
        "result_header": "X-ReqHub", "clients": {"client-pub-A": {"private_key": "client-priv-A", "api": "prod-1"}}}}"#;
    let now = client::unix_millis();
    let h = signed_a(now - 1000);
    let out = dispatch(&rt, &object(HookType::Pre, "ReqHubMerchant:strict", config, &as_refs(&pairs(&h))));
    assert_passed(&out);
    assert_eq!(
        out.request.as_ref().unwrap().set_headers["X-ReqHub"],
        out.metadata["reqhub"],
        "result header for the upstream"
    );
    assert_eq!(
        host.stores.lock()[0],
        (format!("n/client-pub-A:{}", h.nonce), h.timestamp.clone(), 3),
        "2.5 s rounds up to 3"
    );
    let old = signed_a(now - 10_000);
    assert_denied(
        &dispatch(&rt, &object(HookType::Pre, "ReqHubMerchant:strict", config, &as_refs(&pairs(&old)))),
        codes::MERCHANT_SIGNATURE_INVALID,
    );
}

#[test]
fn invalid_configuration_is_a_config_error() {
    let (rt, _) = runtime();
    for config in [
        r#"{"ReqHubMerchant": {"mode": "local"}}"#,
        r#"{"ReqHubMerchant": {"mode": "local", "api": "p", "clients": {"c": {"private_key": "k", "api": "p", "plan": 1}}}}"#,
        r#"{"ReqHubMerchant": {"mode": "remote", "public_key": "p", "private_key": "s", "verify_url": "gopher://x/"}}"#,
        r#"{"ReqHubMerchant": {"public_key": "p"}}"#,
        r#"{"ReqHubMerchant": {"mode": "local", "api": "p", "clients": {"c": {"private_key": "top-secret-key", "api": ["p"]}}}}"#,
    ] {
        let err = rt.dispatch(&object(HookType::Pre, "ReqHubMerchant", config, &[]).encode_to_vec()).unwrap_err();
        assert_eq!(err.code, Code::Config, "{config}: {err:?}");
        assert!(!err.message.contains("top-secret-key"), "{}", err.message);
    }
    // No section at all: the default (remote) configuration lacks the merchant keys.
    let mut obj = object(HookType::Pre, "ReqHubMerchant", "", &[]);
    obj.spec.remove("config_data");
    assert_eq!(rt.dispatch(&obj.encode_to_vec()).unwrap_err().code, Code::Config);
    // Hooks other than Pre, CustomKeyCheck and PostKeyAuth are refused.
    for hook in [HookType::Post, HookType::Response] {
        let err = rt.dispatch(&object(hook, "ReqHubMerchant", LOCAL, &[]).encode_to_vec()).unwrap_err();
        assert_eq!(err.code, Code::NotFound);
    }
}

#[test]
fn local_verification_is_safe_under_concurrency() {
    let (rt, host) = runtime();
    let rt = Arc::new(rt);
    let shared = pairs(&signed_a(client::unix_millis()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (rt, shared) = (rt.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut passed = 0;
                for _ in 0..25 {
                    let own = pairs(&signed_a(client::unix_millis()));
                    let out = local(&rt, HookType::Pre, &as_refs(&own));
                    assert_passed(&out);
                    passed += 1;
                }
                let replay = local(&rt, HookType::Pre, &as_refs(&shared));
                (passed, overrides(&replay).response_code == -1)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().map(|r| r.0).sum::<i32>(), 100);
    // The shared request raced on the same store: at least one passes; the get-then-set race
    // (documented) may let more than one through, but never zero.
    assert!(results.iter().any(|r| r.1));
    assert!(host.stores.lock().len() >= 101);
}

// ---------------------------------------------------------------------------------------
// Remote mode: a verifier on 127.0.0.1 that checks the merchant token itself.

const MERCHANT_PUB: &str = "merchant-pub";
const MERCHANT_PRIV: &str = "merchant-priv";
/// Private key of every client the test verifier knows.
const CLIENT_PRIV: &str = "client-priv";

/// One request as the verifier received it: header names as sent, values.
type Received = Vec<(String, String)>;

struct Verifier {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Verifier {
    /// Serve at most `max` connections (bounded), each with one request.
    fn start(max: usize) -> Verifier {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let seen_nonces = Arc::new(Mutex::new(Vec::<String>::new()));
            let mut workers = Vec::new();
            for stream in listener.incoming().take(max) {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (r, n) = (r.clone(), seen_nonces.clone());
                workers.push(std::thread::spawn(move || serve(stream, &r, &n)));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        Verifier { port, received, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/req", self.port)
    }

    fn config(&self, extra: &str) -> String {
        format!(
            r#"{{"ReqHubMerchant": {{"public_key": "{MERCHANT_PUB}", "private_key": "{MERCHANT_PRIV}", "verify_url": "{}", "timeout_ms": 5000,
                "session": {{"rate": 9, "per": 1}} {extra}}}}}"#,
            self.url()
        )
    }

    fn requests(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake accept()
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, received: &Mutex<Vec<Received>>, seen_nonces: &Mutex<Vec<String>>) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return, // the wake-up connection, or a client that gave up
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 65536 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_owned();
    let headers: Received = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
        .collect();
    received.lock().unwrap().push(headers.clone());
    let get = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let (status, body): (u16, String) = if request_line != "POST /req HTTP/1.1" {
        (404, r#"{"error":"not_found"}"#.into())
    } else {
        decide(&get, seen_nonces)
    };
    if status == 0 {
        return; // drop the connection without an answer
    }
    let reason = match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        502 => "Bad Gateway",
        _ => "Other",
    };
    let content_type = if body.starts_with('{') { "application/json" } else { "text/html" };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nLocation: /elsewhere\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
}

fn reqhub_error(code: &str) -> (u16, String) {
    (400, format!(r#"{{"error":"{code}","message":"from the test verifier"}}"#))
}

/// Independent HMAC-SHA256 token check (the hmac crate directly, not the crate under test).
fn token_ok(public: &str, private: &str, ts: &str, nonce: &str, url: &str, token: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(format!("{private}{ts}{nonce}{url}").as_bytes()).unwrap();
    mac.update(public.as_bytes());
    STANDARD.decode(token).is_ok_and(|t| mac.verify_slice(&t).is_ok())
}

/// What ReqHub would answer, from the ten headers; client keys script special answers.
fn decide(get: &dyn Fn(&str) -> Option<String>, seen_nonces: &Mutex<Vec<String>>) -> (u16, String) {
    const NAMES: [&str; 10] = [
        "ClientToken",
        "ClientKey",
        "ClientTimestamp",
        "ClientNonce",
        "ClientUrl",
        "MerchantToken",
        "MerchantKey",
        "MerchantTimestamp",
        "MerchantNonce",
        "MerchantUrl",
    ];
    let Some(v) = NAMES.iter().map(|n| get(n)).collect::<Option<Vec<String>>>() else {
        return reqhub_error("headers_missing");
    };
    let [c_token, c_key, c_ts, c_nonce, c_url, m_token, m_key, m_ts, m_nonce, m_url] =
        <[String; 10]>::try_from(v).unwrap();
    if c_url != m_url {
        return reqhub_error("url_mismatch");
    }
    if m_key != MERCHANT_PUB {
        return reqhub_error("api_not_found");
    }
    let now = client::unix_millis();
    let fresh = m_ts.len() == 13 && m_ts.parse::<u64>().is_ok_and(|t| t.abs_diff(now) < 60_000);
    let nonce_ok = STANDARD.decode(&m_nonce).is_ok_and(|b| b.len() == 20);
    let replayed = {
        let mut seen = seen_nonces.lock().unwrap();
        let r = seen.contains(&m_nonce);
        seen.push(m_nonce.clone());
        r
    };
    if !fresh || !nonce_ok || replayed || !token_ok(MERCHANT_PUB, MERCHANT_PRIV, &m_ts, &m_nonce, &m_url, &m_token) {
        return reqhub_error("merchant_signature_invalid");
    }
    if let Some(code) = c_key.strip_prefix("client-deny-") {
        return reqhub_error(code);
    }
    match c_key.as_str() {
        "client-sleep" => {
            std::thread::sleep(Duration::from_millis(1500));
            return (200, r#"{"late":true}"#.into());
        }
        "client-hangup" => return (0, String::new()),
        "client-html" => return (502, "<html><body>Bad gateway</body></html>".into()),
        "client-odd" => return (418, r#"{"error":"Not A Code!"}"#.into()),
        "client-redirect" => return (302, String::new()),
        "client-huge" => return (200, format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000))),
        "client-ok" | "client-second" => {}
        _ => return reqhub_error("client_not_found"),
    }
    if !token_ok(&c_key, CLIENT_PRIV, &c_ts, &c_nonce, &c_url, &c_token) {
        return reqhub_error("client_signature_invalid");
    }
    (200, format!(r#"{{"client":"{c_key}","plan":"gold","remaining":41}}"#))
}

fn client_for(key: &str) -> Vec<(&'static str, String)> {
    pairs(&SignedHeaders::client_now(key, CLIENT_PRIV, URI).unwrap())
}

fn remote(rt: &Runtime, config: &str, hook: HookType, headers: &[(&'static str, String)]) -> Object {
    dispatch(rt, &object(hook, "ReqHubMerchant", config, &as_refs(headers)))
}

#[test]
fn remote_valid_request_passes_with_the_verifier_body_in_metadata() {
    let verifier = Verifier::start(16);
    let (rt, host) = runtime();
    let config = verifier.config(r#", "result_header": "X-ReqHub-Result""#);
    let out = remote(&rt, &config, HookType::Pre, &client_for("client-ok"));
    assert_passed(&out);
    assert_eq!(out.metadata["reqhub"], r#"{"client":"client-ok","plan":"gold","remaining":41}"#);
    assert_eq!(out.request.as_ref().unwrap().set_headers["X-ReqHub-Result"], out.metadata["reqhub"]);
    assert!(host.events.lock().is_empty());

    // The verifier got the ten headers under their exact names, the merchant set fresh.
    let received = verifier.received.lock().unwrap()[0].clone();
    for name in client::CLIENT_HEADERS.iter().chain(&client::MERCHANT_HEADERS) {
        assert_eq!(received.iter().filter(|(k, _)| k == name).count(), 1, "{name} in {received:?}");
    }
    let get = |n: &str| received.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get("MerchantUrl"), URI);
    assert_eq!(get("MerchantKey"), MERCHANT_PUB);
    assert_eq!(get("MerchantTimestamp").len(), 13);
    assert_ne!(get("MerchantNonce"), get("ClientNonce"));

    // CustomKeyCheck: session template and token; a second request gets a new merchant nonce
    // (the verifier rejects merchant nonce reuse).
    let out = remote(&rt, &config, HookType::CustomKeyCheck, &client_for("client-second"));
    assert_passed(&out);
    assert_eq!(out.session.unwrap().rate, 9.0);
    assert_eq!(out.metadata["token"], "client-second");
    assert_eq!(verifier.requests(), 2);
}

#[test]
fn remote_denials_carry_the_verifier_code() {
    let verifier = Verifier::start(32);
    let (rt, host) = runtime();
    let config = verifier.config("");

    // Real checks by the verifier.
    assert_denied(&remote(&rt, &config, HookType::Pre, &client_for("client-nobody")), codes::CLIENT_NOT_FOUND);
    let forged = pairs(&SignedHeaders::client_now("client-ok", "not-the-key", URI).unwrap());
    assert_denied(&remote(&rt, &config, HookType::Pre, &forged), codes::CLIENT_SIGNATURE_INVALID);
    let wrong_merchant_key = config.replace(MERCHANT_PRIV, "wrong-merchant-priv");
    assert_denied(
        &remote(&rt, &wrong_merchant_key, HookType::Pre, &client_for("client-ok")),
        codes::MERCHANT_SIGNATURE_INVALID,
    );
    let unknown_api = config.replace(r#""public_key": "merchant-pub""#, r#""public_key": "other-merchant""#);
    assert_denied(&remote(&rt, &unknown_api, HookType::Pre, &client_for("client-ok")), codes::API_NOT_FOUND);

    // Every ReqHub code the verifier may answer reaches the client, with a helpful message.
    for code in codes::REQHUB {
        let out = remote(&rt, &config, HookType::CustomKeyCheck, &client_for(&format!("client-deny-{code}")));
        let message = assert_denied(&out, code);
        assert_eq!(message, coprocess::builtins::reqhub::code_message(code));
        assert!(out.session.is_none());
    }

    // Answers without a usable code.
    for key in ["client-html", "client-odd", "client-redirect"] {
        let message = assert_denied(&remote(&rt, &config, HookType::Pre, &client_for(key)), codes::VERIFICATION_FAILED);
        assert!(message.contains("HTTP"), "{message}");
    }
    assert!(host.logged("answered HTTP 502"));
    assert!(host.events.lock().is_empty(), "denials are not outages");
    assert_eq!(verifier.requests(), 4 + 8 + 3);
}

#[test]
fn remote_local_checks_come_before_the_network() {
    let verifier = Verifier::start(4);
    let (rt, _) = runtime();
    let config = verifier.config("");
    let mut h = client_for("client-ok");
    h.remove(3);
    assert_denied(&remote(&rt, &config, HookType::Pre, &h), codes::HEADERS_MISSING);
    let mut h = client_for("client-ok");
    h[4].1 = "/other".into();
    assert_denied(&remote(&rt, &config, HookType::Pre, &h), codes::URL_MISMATCH);
    assert_eq!(verifier.requests(), 0);
}

fn assert_unavailable(out: &Object, host: &FakeHost, reason_part: &str) {
    let (status, code, _) = denial(out);
    assert_eq!((status, code.as_str()), (503, codes::VERIFICATION_UNAVAILABLE));
    let events = host.events.lock().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, UNAVAILABLE_EVENT);
    let payload: Value = serde_json::from_str(&events[0].1).expect("event payload is JSON");
    assert_eq!(payload["api_id"], "api-7");
    assert_eq!(payload["org_id"], "org-1");
    assert_eq!(payload["path"], URI);
    let reason = payload["reason"].as_str().unwrap();
    assert!(reason.contains(reason_part), "reason {reason:?}");
    assert!(!events[0].1.contains(MERCHANT_PRIV) && !events[0].1.contains(CLIENT_PRIV));
    assert!(host.logged("unavailable"));
}

#[test]
fn remote_timeout_answers_503_and_fires_the_event() {
    let verifier = Verifier::start(4);
    let (rt, host) = runtime();
    let config = verifier.config("").replace(r#""timeout_ms": 5000"#, r#""timeout_ms": 300"#);
    let out = remote(&rt, &config, HookType::Pre, &client_for("client-sleep"));
    assert_unavailable(&out, &host, "no answer within 300 ms");
    assert!(!out.metadata.contains_key("reqhub"));
}

#[test]
fn remote_connection_failures_answer_503_and_fire_the_event() {
    // A port nobody listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (rt, host) = runtime();
    let config = format!(
        r#"{{"ReqHubMerchant": {{"public_key": "{MERCHANT_PUB}", "private_key": "{MERCHANT_PRIV}", "verify_url": "http://127.0.0.1:{port}/req"}}}}"#
    );
    let out = remote(&rt, &config, HookType::CustomKeyCheck, &client_for("client-ok"));
    assert_unavailable(&out, &host, "");
    assert!(out.session.is_none());

    // A verifier that hangs up without answering.
    let verifier = Verifier::start(4);
    let (rt, host) = runtime();
    assert_unavailable(&remote(&rt, &verifier.config(""), HookType::Pre, &client_for("client-hangup")), &host, "");

    // A 200 too large to be a verification result.
    let (rt, host) = runtime();
    assert_unavailable(&remote(&rt, &verifier.config(""), HookType::Pre, &client_for("client-huge")), &host, "reading");
}

#[test]
fn merchant_headers_follow_the_formula() {
    // The merchant side uses the same formula (checked here against the independent HMAC).
    let h = SignedHeaders::sign(MERCHANT_PUB, MERCHANT_PRIV, URI, 1714737642000, "AAECAwQFBgcICQoLDA0ODxAREhM=");
    assert!(token_ok(MERCHANT_PUB, MERCHANT_PRIV, "1714737642000", "AAECAwQFBgcICQoLDA0ODxAREhM=", URI, &h.token));
    let names: BTreeMap<_, _> = h.merchant_pairs().into_iter().collect();
    assert_eq!(names["MerchantKey"], MERCHANT_PUB);
    assert_eq!(names["MerchantToken"], h.token);
}
