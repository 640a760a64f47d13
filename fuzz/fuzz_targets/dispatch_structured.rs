//! Structure-aware: well-formed Objects steered into every built-in middleware with hostile
//! headers, URLs, sessions and config_data.
#![no_main]
use arbitrary::Arbitrary;
use coprocess::proto::{Header, ResponseObject, SessionState};
use coprocess::testing::ObjectBuilder;
use coprocess::HookType;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const HOOKS: &[&str] = &[
    "InjectHeaders",
    "InjectHeaders:second",
    "StaticTokenAuth",
    "HMACSignatureAuth",
    "UpstreamRequestSigning",
    "ReqHubMerchant",
];

/// Curated per-API configurations (all local: nothing may reach the network).
const CONFIGS: &[&str] = &[
    "",
    "{}",
    r#"{"InjectHeaders": {"add": {"X-A": "1"}, "remove": ["Cookie", "x-a"]}, "InjectHeaders:second": {"remove": ["Authorization"]}}"#,
    r#"{"StaticTokenAuth": {"header": "Authorization", "strip_prefix": "Bearer ", "tokens": {"t0k": {"rate": 1, "per": 1}}, "reject_code": 403}}"#,
    r#"{"HMACSignatureAuth": {"keys": {"k1": "c2VjcmV0"}, "clock_skew_ms": 0}}"#,
    r#"{"HMACSignatureAuth": {"keys": {"k1": "s"}, "clock_skew_ms": 1000, "allowed_algorithms": ["hmac-sha256"]}}"#,
    r#"{"UpstreamRequestSigning": {"algorithm": "hmac-sha256", "keyId": "k", "secret": "s"}}"#,
    r#"{"UpstreamRequestSigning": {"algorithm": "hmac-sha1", "keyId": "k", "secret": "s", "headers": ["date", "(request-target)", "x-a"], "plainSignature": true}}"#,
    r#"{"UpstreamRequestSigning": {"algorithm": "rsa-sha256", "keyId": "k", "certificateId": "missing"}}"#,
    r#"{"ReqHubMerchant": {"mode": "local", "public_key": "mp", "private_key": "ms", "api": "p1", "clients": {"cp": {"private_key": "cs", "api": "p1"}}}}"#,
];

#[derive(Arbitrary, Debug)]
struct Input {
    hook: u8,
    hook_type: u8,
    config: u8,
    /// Used as config_data instead of a curated one when `config` is 255.
    raw_config: String,
    method: String,
    url: String,
    request_uri: String,
    headers: Vec<(String, String)>,
    authorization: Option<String>,
    date: Option<String>,
    body: String,
    session: Option<(f64, i64, String)>,
    response: Option<(i32, Vec<(String, Vec<String>)>)>,
}

fuzz_target!(|input: Input| {
    let hook = HOOKS[input.hook as usize % HOOKS.len()];
    let hook_type = HookType::try_from(i32::from(input.hook_type % 6)).unwrap_or(HookType::Unknown);
    let mut b =
        ObjectBuilder::new(hook_type, hook).method_url(&input.method, &input.url, &input.request_uri).body(&input.body);
    for (k, v) in input.headers.iter().take(32) {
        b = b.header(k, v);
    }
    if let Some(a) = &input.authorization {
        b = b.header("Authorization", a);
    }
    if let Some(d) = &input.date {
        b = b.header("Date", d);
    }
    let config = if input.config == 255 {
        // Arbitrary text, but never a ReqHubMerchant section: its default mode calls out.
        if input.raw_config.contains("ReqHub") {
            return;
        }
        input.raw_config.as_str()
    } else {
        CONFIGS[input.config as usize % CONFIGS.len()]
    };
    if !config.is_empty() {
        b = b.config_data(config);
    }
    if let Some((rate, quota, tag)) = input.session {
        b = b.session(SessionState { rate, quota_max: quota, tags: vec![tag], ..Default::default() });
    }
    if let Some((status, headers)) = input.response {
        let mut r = ResponseObject { status_code: status, ..Default::default() };
        for (k, vs) in headers.into_iter().take(8) {
            r.headers.insert(k.clone(), vs.first().cloned().unwrap_or_default());
            r.multivalue_headers.push(Header { key: k, values: vs });
        }
        b = b.response(r);
    }
    common::dispatch(&b.encode());
});
