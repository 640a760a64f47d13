//! UpstreamRequestSigning through the real dispatcher (Runtime + FakeHost).
//!
//! Every signature produced here is handed to `tests/verify_cavage.py`, an independent
//! draft-cavage-http-signatures-10 verifier (Python's hmac/hashlib for HMAC, the `openssl`
//! CLI for RSA), together with tampered copies it must refuse. Known-answer values were
//! computed outside this code, with the commands quoted next to them.
//!
//! The RSA keys under tests/data/ are test-only keys made with `openssl genrsa` for these
//! tests; they protect nothing.

use coprocess::builtins::upstream_signing::{
    BAD_KEY, CERTIFICATE_NOT_FOUND, MISSING_FIELDS, UNSIGNABLE_HEADER, UNSUPPORTED_ALGORITHM,
};
use coprocess::testing::ObjectBuilder;
use coprocess::{builtins, Code, FakeHost, HookType, Object, Runtime};
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const NAME: &str = "UpstreamRequestSigning";
const DATE: &str = "Fri, 03 May 2024 12:00:42 GMT";
const SECRET: &str = "test-secret";

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(file)
}

fn read_data(file: &str) -> String {
    std::fs::read_to_string(data(file)).unwrap()
}

fn pub_key() -> String {
    data("test_rsa2048_pub.pem").to_string_lossy().into_owned()
}

fn runtime(global: Value) -> (Runtime, Arc<FakeHost>) {
    coprocess::testing::runtime(builtins::registry(), &global.to_string())
}

/// A request as the gateway sends it for hook `hook_name`, with `config` as per-API config_data
/// section (unless null).
fn request(hook_name: &str, method: &str, url: &str, headers: &[(&str, &str)], config: Value) -> Object {
    let base = ObjectBuilder::new(HookType::Post, hook_name).method_url(method, url, url).scheme("https");
    let b = headers.iter().fold(base, |b, (k, v)| b.header(k, v));
    if config.is_null() {
        return b.build();
    }
    b.config_data(&json!({ hook_name: config }).to_string()).build()
}

/// Dispatch through the serialised path and decode the answer.
fn dispatch(rt: &Runtime, obj: &Object) -> Result<Object, coprocess::Error> {
    rt.dispatch(&obj.encode_to_vec()).map(|bytes| Object::decode(&bytes[..]).unwrap())
}

/// The headers the upstream receives: the gateway applies delete_headers, then set_headers
/// (Go's Header.Set, so case-insensitively).
fn upstream_headers(out: &Object) -> BTreeMap<String, String> {
    let req = out.request.as_ref().unwrap();
    let mut h = req.headers.clone();
    for d in &req.delete_headers {
        h.retain(|k, _| !k.eq_ignore_ascii_case(d));
    }
    for (k, v) in &req.set_headers {
        h.retain(|x, _| !x.eq_ignore_ascii_case(k));
        h.insert(k.clone(), v.clone());
    }
    h
}

fn set_header<'a>(out: &'a Object, name: &str) -> Option<&'a str> {
    out.request.as_ref().unwrap().set_headers.get(name).map(String::as_str)
}

fn overrides(out: &Object) -> (i32, String) {
    let ro = out.request.as_ref().unwrap().return_overrides.clone().unwrap_or_default();
    (ro.response_code, ro.response_error)
}

/// The `headers="..."` and `signature="..."` parameters of a produced signature header.
fn params(value: &str) -> BTreeMap<String, String> {
    let rest = value.strip_prefix("Signature ").expect("starts with `Signature `");
    rest.split(',')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

/// Cases for the independent verifier.
struct Verifier {
    name: &'static str,
    cases: Vec<Value>,
}

impl Verifier {
    fn new(name: &'static str) -> Self {
        Verifier { name, cases: Vec::new() }
    }

    /// A case for a dispatched answer, plus tampered copies the verifier must refuse.
    fn add(&mut self, label: &str, out: &Object, path: &str, sig_header: &str, key: Value, extra: Value) {
        self.add_received(label, out, &upstream_headers(out), path, sig_header, key, extra)
    }

    /// [`Verifier::add`] with the headers as the upstream receives them.
    #[allow(clippy::too_many_arguments)]
    fn add_received(
        &mut self,
        label: &str,
        out: &Object,
        headers: &BTreeMap<String, String>,
        path: &str,
        sig_header: &str,
        key: Value,
        extra: Value,
    ) {
        let req = out.request.as_ref().unwrap();
        let mut case = json!({
            "name": format!("{}/{label}", self.name),
            "method": req.method, "path": path,
            "headers": headers,
            "signature_header": sig_header,
        });
        let obj = case.as_object_mut().unwrap();
        for (k, v) in key.as_object().unwrap().iter().chain(extra.as_object().unwrap()) {
            obj.insert(k.clone(), v.clone());
        }
        // Tampered copies: another date, another path, another key.
        let mut other_date = case.clone();
        let date_key = headers.keys().find(|k| k.eq_ignore_ascii_case("date")).cloned().unwrap();
        other_date["headers"][&date_key] = json!("Sat, 04 May 2024 12:00:42 GMT");
        other_date["name"] = json!(format!("{}/{label}/tampered-date", self.name));
        other_date["expect_valid"] = json!(false);
        other_date.as_object_mut().unwrap().remove("fresh_date");
        let mut other_path = case.clone();
        other_path["path"] = json!(format!("{path}x"));
        other_path["name"] = json!(format!("{}/{label}/tampered-path", self.name));
        other_path["expect_valid"] = json!(false);
        let mut other_key = case.clone();
        other_key["name"] = json!(format!("{}/{label}/wrong-key", self.name));
        other_key["expect_valid"] = json!(false);
        if other_key.get("secret").is_some() {
            other_key["secret"] = json!("another-secret");
        } else {
            other_key["public_key"] = json!(data("test_other_pub.pem").to_string_lossy());
        }
        let heads = params(&headers[sig_header]);
        self.cases.push(case);
        self.cases.push(other_key);
        if heads["headers"].split(' ').any(|h| h == "date") {
            self.cases.push(other_date);
        }
        if heads["headers"].split(' ').any(|h| h == "(request-target)") {
            self.cases.push(other_path);
        }
    }

    /// Run the independent verifier over every case; panics with its report on any mismatch.
    fn run(self) {
        assert!(!self.cases.is_empty());
        let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cavage-{}.json", self.name));
        std::fs::write(&file, json!({ "cases": self.cases }).to_string()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_cavage.py");
        let out = Command::new("python3")
            .arg(&script)
            .arg(&file)
            .output()
            .expect("python3 runs (scripts/setup.sh installs it)");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "independent verifier refused:\n{report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            report.contains(&format!("{} of {} cases as expected", self.cases.len(), self.cases.len())),
            "{report}"
        );
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl runs (scripts/setup.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn hmac_config(alg: &str) -> Value {
    json!({"algorithm": alg, "keyId": "key-1", "secret": SECRET, "headers": ["(request-target)", "Date"]})
}

/// What the upstream receives after the gateway's proxy (docs/gateway-model.md): the hooks'
/// header edits, then the hop-by-hop headers and those `Connection` names removed, `Host` the
/// target's, the client's address appended to `X-Forwarded-For`.
fn proxied(out: &Object, target_host: &str, client: &str) -> BTreeMap<String, String> {
    let mut h = upstream_headers(out);
    let named: Vec<String> = h
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let hop = ["connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te"];
    let hop2 = ["trailer", "transfer-encoding", "upgrade"];
    h.retain(|k, _| {
        let k = k.to_ascii_lowercase();
        !hop.contains(&k.as_str()) && !hop2.contains(&k.as_str()) && !named.contains(&k) && k != "host"
    });
    h.insert("Host".into(), target_host.into());
    let xff = h.keys().find(|k| k.eq_ignore_ascii_case("x-forwarded-for")).cloned();
    let prior = xff.and_then(|k| h.remove(&k));
    h.insert("X-Forwarded-For".into(), prior.map_or(client.to_owned(), |p| format!("{p}, {client}")));
    h
}

/// An Object as the gateway builds it for a Post hook of an API listening on `/api/`: `url`
/// still carries the listen path, `headers` holds `Host` and the hop-by-hop headers the client
/// sent.
fn gateway_post(config: Value) -> Object {
    let url = "/api/orders/7?verbose=true";
    let headers = [
        ("Host", "gw.example:8080"),
        ("Connection", "keep-alive, X-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("X-Hop", "1"),
        ("Te", "trailers"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("Accept", "application/json"),
        ("X-Request-Id", "req-77"),
        ("Date", DATE),
    ];
    let b = ObjectBuilder::new(HookType::Post, NAME).method_url("PUT", url, url);
    let b = headers.iter().fold(b, |b, (k, v)| b.header(k, v));
    b.config_data(&json!({ NAME: config }).to_string()).build()
}

#[test]
fn signatures_verify_where_the_upstream_receives_them() {
    let (rt, _host) = runtime(json!({}));
    let proxy = json!({"listen_path": "/api/", "target_url": "http://upstream.internal:9000/base/"});
    let upstream_path = "/base/orders/7?verbose=true";
    let mut v = Verifier::new("proxied");

    // The default list: every header the upstream receives as sent, and nothing else.
    let mut config = json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET});
    config.as_object_mut().unwrap().extend(proxy.as_object().unwrap().clone());
    let out = dispatch(&rt, &gateway_post(config)).unwrap();
    assert_eq!(overrides(&out).0, -1, "{:?}", overrides(&out));
    let received = proxied(&out, "upstream.internal:9000", "127.0.0.1");
    let heads = params(&received["Authorization"]);
    assert_eq!(heads["headers"], "(request-target) accept date x-request-id", "{heads:?}");
    v.add_received(
        "hmac-default",
        &out,
        &received,
        upstream_path,
        "Authorization",
        json!({"secret": SECRET}),
        json!({}),
    );

    // A configured list naming host: signed as the target's host, which the upstream gets.
    for (label, alg, key) in [
        ("hmac-listed", "hmac-sha512", json!({"secret": SECRET})),
        ("rsa-listed", "rsa-sha256", json!({"public_key": pub_key()})),
    ] {
        let mut config = json!({"algorithm": alg, "keyId": "k", "secret": SECRET,
            "headers": ["(request-target)", "host", "date", "x-request-id"]});
        if alg == "rsa-sha256" {
            config = json!({"algorithm": alg, "keyId": "k", "privateKey": read_data("test_rsa2048_pkcs8.pem"),
                "headers": ["(request-target)", "host", "date", "x-request-id"]});
        }
        config.as_object_mut().unwrap().extend(proxy.as_object().unwrap().clone());
        let out = dispatch(&rt, &gateway_post(config)).unwrap();
        assert_eq!(overrides(&out).0, -1, "{label}: {:?}", overrides(&out));
        let received = proxied(&out, "upstream.internal:9000", "127.0.0.1");
        v.add_received(label, &out, &received, upstream_path, "Authorization", key, json!({}));
    }

    // Without listen_path and target_url the url is taken as the upstream path: that signature
    // is over the listen path and cannot verify where the listen path is stripped.
    let out =
        dispatch(&rt, &gateway_post(json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET}))).unwrap();
    let received = proxied(&out, "upstream.internal:9000", "127.0.0.1");
    let mut case = Verifier::new("unproxied");
    case.add_received(
        "as-url",
        &out,
        &received,
        "/api/orders/7?verbose=true",
        "Authorization",
        json!({"secret": SECRET}),
        json!({}),
    );
    case.run();
    v.run();
}

// ---- known answers ----

#[test]
fn hmac_known_answers_for_every_algorithm() {
    // Signing string "(request-target): get /foo?a=1\ndate: Fri, 03 May 2024 12:00:42 GMT", key
    // "test-secret". Computed with:
    //   printf '(request-target): get /foo?a=1\ndate: Fri, 03 May 2024 12:00:42 GMT' > ss
    //   python3 -c "import hmac,hashlib,base64,sys,urllib.parse as u; b=base64.b64encode(hmac.new(b'test-secret',
    //     open('ss','rb').read(),hashlib.sha256).digest()).decode(); print(b, u.quote_plus(b))"
    let known = [
        ("hmac-sha1", "cXeQ36g1/iuJOL2/Ab5U2Mg/a1M=", "cXeQ36g1%2FiuJOL2%2FAb5U2Mg%2Fa1M%3D"),
        (
            "hmac-sha256",
            "BztjhKGahyaVRYAo76aRpG5P2lDMraAc3kGp0kZCMYQ=",
            "BztjhKGahyaVRYAo76aRpG5P2lDMraAc3kGp0kZCMYQ%3D",
        ),
        (
            "hmac-sha384",
            "88e8NcjvkvbjQNAinc8kKOXIVgFkZ0Lb4/ibmMljhGQRL/9XCjnqEICVLW1eKux1",
            "88e8NcjvkvbjQNAinc8kKOXIVgFkZ0Lb4%2FibmMljhGQRL%2F9XCjnqEICVLW1eKux1",
        ),
        (
            "hmac-sha512",
            "zGdIu5UvbRFC1KObBmhj9WtnxvbcK4Jq5PPVG69PH0nbl06jqAH4S6vRilA61Z8XM8ml6Gum/VQloOURRE1Rhw==",
            "zGdIu5UvbRFC1KObBmhj9WtnxvbcK4Jq5PPVG69PH0nbl06jqAH4S6vRilA61Z8XM8ml6Gum%2FVQloOURRE1Rhw%3D%3D",
        ),
    ];
    let (rt, _) = runtime(json!({}));
    let mut v = Verifier::new("hmac-kat");
    for (alg, plain, escaped) in known {
        for plain_flag in [false, true] {
            let mut config = hmac_config(alg);
            config["plainSignature"] = json!(plain_flag);
            let obj = request(NAME, "GET", "/foo?a=1", &[("Date", DATE), ("X-Other", "1")], config);
            let out = dispatch(&rt, &obj).unwrap();
            let want_sig = if plain_flag { plain } else { escaped };
            assert_eq!(
                set_header(&out, "Authorization").unwrap(),
                format!("Signature keyId=\"key-1\",algorithm=\"{alg}\",headers=\"(request-target) date\",signature=\"{want_sig}\"")
            );
            assert_eq!(set_header(&out, "Date"), None, "a present Date is kept");
            v.add(
                &format!("{alg}/plain={plain_flag}"),
                &out,
                "/foo?a=1",
                "Authorization",
                json!({"secret": SECRET, "plain": plain_flag}),
                json!({"key_id": "key-1", "algorithm": alg}),
            );
        }
    }
    v.run();
}

#[test]
fn default_header_list_known_answer() {
    // Default list: (request-target), then every header lower-cased and sorted, values trimmed.
    // Signing string (python3/openssl as above, printf of):
    //   (request-target): post /orders/42?verbose=true\ncontent-type: application/json\n
    //   date: Fri, 03 May 2024 12:00:42 GMT\nx-foo: bar baz
    // hmac-sha256 / "test-secret" -> JlV6KLk4T+XeXXCFIADpdv0xVBbi7sIgGorHnO8gapM=
    // rsa-sha256 (`openssl dgst -sha256 -sign tests/data/test_rsa2048_pkcs1.pem ss | base64 -w0`) below.
    let (rt, _) = runtime(json!({}));
    let headers = [
        ("X-Foo", "  bar baz \t"),
        ("Content-Type", "application/json"),
        ("date", DATE),
        ("Authorization", "Bearer client"),
    ];
    let config = json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET});
    let out = dispatch(&rt, &request(NAME, "POST", "/orders/42?verbose=true", &headers, config)).unwrap();
    assert_eq!(
        set_header(&out, "Authorization").unwrap(),
        "Signature keyId=\"k\",algorithm=\"hmac-sha256\",headers=\"(request-target) content-type date x-foo\",signature=\"JlV6KLk4T%2BXeXXCFIADpdv0xVBbi7sIgGorHnO8gapM%3D\""
    );
    let mut v = Verifier::new("default-list-kat");
    v.add("hmac", &out, "/orders/42?verbose=true", "Authorization", json!({"secret": SECRET}), json!({}));

    const RSA_KAT: &str = "hhgz0hAUQbAo0s/ggQpW78M5InlIzEw/qDxmTQL90eMdcaBZbQ0QuRTq9wtXfLqBEye8VABl5ojL1VO+yvPNlyWYuiDAOUKN38vyOcmDZ92Q0ScPWAFHFaR/B/0xFQ6RiijKRpPPwg8tGbdYglQqxQo8f15m6CDhlwb71jmF2aV7URrf/NE55AdFZgPVah/nypGnH9N9HjJ35tFut4e6c4OR5q/W8fxCVjSoI/x8CTMTMAcGYG1qyuAeS2fm0qDE2shBbUwPGn/tvMP2+K3zoadz/g5ZXHurv6IbIWBwK9mXZfxqCX/JNW1leBAdhXXGeZYZp9uxHn2ISex4ctQbTw==";
    for file in ["test_rsa2048_pkcs1.pem", "test_rsa2048_pkcs8.pem"] {
        let config = json!({"algorithm": "rsa-sha256", "keyId": "rsa-key", "privateKey": read_data(file), "signatureHeader": "Signature"});
        let out = dispatch(&rt, &request(NAME, "POST", "/orders/42?verbose=true", &headers, config)).unwrap();
        let value = set_header(&out, "Signature").unwrap();
        let head = "Signature keyId=\"rsa-key\",algorithm=\"rsa-sha256\",headers=\"(request-target) authorization content-type date x-foo\",signature=\"";
        assert!(
            value.starts_with(head) && value.ends_with('"'),
            "format; the client's Authorization is signed when it is not the signature header: {value}"
        );
        assert_eq!(set_header(&out, "Authorization"), None);
        v.add(
            file,
            &out,
            "/orders/42?verbose=true",
            "Signature",
            json!({"public_key": pub_key()}),
            json!({"algorithm": "rsa-sha256"}),
        );
    }
    // Without the client's Authorization the signing string is the one of the KAT above.
    let config =
        json!({"algorithm": "rsa-sha256", "keyId": "rsa-key", "privateKey": read_data("test_rsa2048_pkcs8.pem")});
    let out = dispatch(&rt, &request(NAME, "POST", "/orders/42?verbose=true", &headers[..3], config)).unwrap();
    let value = set_header(&out, "Authorization").unwrap();
    assert_eq!(params(value)["signature"], RSA_KAT, "RSA known answer (plain base64, never URL-escaped)");
    v.add("rsa-kat", &out, "/orders/42?verbose=true", "Authorization", json!({"public_key": pub_key()}), json!({}));
    v.run();
}

// ---- Date ----

#[test]
fn date_is_added_when_missing_or_empty_and_signed() {
    let (rt, _) = runtime(json!({}));
    let mut v = Verifier::new("date");
    for headers in [vec![("X-A", "1")], vec![("Date", "")], vec![("date", "   ")]] {
        for config in [hmac_config("hmac-sha256"), json!({"algorithm": "hmac-sha1", "keyId": "k", "secret": SECRET})] {
            let out = dispatch(&rt, &request(NAME, "GET", "/x", &headers, config)).unwrap();
            let date = set_header(&out, "Date").expect("Date added through set_headers");
            assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
            let auth = set_header(&out, "Authorization").unwrap();
            assert!(params(auth)["headers"].split(' ').any(|h| h == "date"), "{auth}");
            v.add(
                &format!("{headers:?}"),
                &out,
                "/x",
                "Authorization",
                json!({"secret": SECRET}),
                json!({"fresh_date": true}),
            );
        }
    }
    // Present (any case): kept and signed as sent.
    for name in ["Date", "date", "DATE"] {
        let out = dispatch(&rt, &request(NAME, "GET", "/x", &[(name, DATE)], hmac_config("hmac-sha512"))).unwrap();
        assert_eq!(set_header(&out, "Date"), None);
        assert_eq!(upstream_headers(&out)[name], DATE);
        v.add(name, &out, "/x", "Authorization", json!({"secret": SECRET}), json!({}));
    }
    v.run();
}

// ---- header list rules ----

#[test]
fn configured_header_list_rules() {
    let (rt, _) = runtime(json!({}));
    let mut v = Verifier::new("configured-list");
    // (configured list, request headers, expected headers parameter)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        // Those present, in configured order, lower-cased; (request-target) always counts.
        (
            &["X-B", "(request-target)", "X-Missing", "x-a"],
            &[("x-a", "1"), ("X-B", "2"), ("Date", DATE)],
            "x-b (request-target) x-a",
        ),
        // None present: (request-target) date.
        (&["X-Missing", "X-Gone"], &[("X-A", "1")], "(request-target) date"),
        // An empty value counts as absent (the gateway's rule).
        (&["X-Empty", "X-A"], &[("X-Empty", ""), ("X-A", "1")], "x-a"),
        // A configured date is always present: added when missing, before the list is computed.
        (&["date", "x-a"], &[("X-A", "1")], "date x-a"),
        // Duplicates (case-insensitive) are listed once.
        (&["X-A", "x-a", "DATE"], &[("X-A", "1"), ("Date", DATE)], "x-a date"),
    ];
    for (i, (list, headers, want)) in cases.iter().enumerate() {
        let config = json!({"algorithm": "hmac-sha384", "keyId": "k", "secret": SECRET, "headers": list});
        let out = dispatch(&rt, &request(NAME, "PATCH", "/p?q=1", headers, config)).unwrap();
        let auth = set_header(&out, "Authorization").unwrap();
        assert_eq!(params(auth)["headers"], *want, "case {i}");
        v.add(
            &format!("case{i}"),
            &out,
            "/p?q=1",
            "Authorization",
            json!({"secret": SECRET}),
            json!({"headers_param": want}),
        );
    }
    v.run();
}

#[test]
fn default_header_list_rules() {
    let (rt, _) = runtime(json!({}));
    let mut v = Verifier::new("default-list");
    // The signature header is never listed (here Signature, a custom one); Authorization is.
    let headers = [("Zeta", "z"), ("alpha", "a"), ("Signature", "old"), ("Authorization", "Bearer t"), ("X-Empty", "")];
    let config = json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET, "signatureHeader": "Signature", "plainSignature": true});
    let out = dispatch(&rt, &request(NAME, "DELETE", "/d", &headers, config)).unwrap();
    let sig = set_header(&out, "Signature").unwrap();
    assert_eq!(params(sig)["headers"], "(request-target) alpha authorization date x-empty zeta");
    assert_eq!(set_header(&out, "Authorization"), None, "Authorization untouched");
    assert!(set_header(&out, "Date").is_some(), "date added, and listed");
    v.add(
        "custom-header",
        &out,
        "/d",
        "Signature",
        json!({"secret": SECRET, "plain": true}),
        json!({"fresh_date": true}),
    );

    // No header at all: (request-target) date.
    let out = dispatch(
        &rt,
        &request(NAME, "GET", "/", &[], json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET})),
    )
    .unwrap();
    assert_eq!(params(set_header(&out, "Authorization").unwrap())["headers"], "(request-target) date");
    v.add("no-headers", &out, "/", "Authorization", json!({"secret": SECRET}), json!({}));

    // A client-sent signature header (any case) is replaced and not signed.
    let config = json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET});
    let out =
        dispatch(&rt, &request(NAME, "GET", "/", &[("authorization", "Basic abc"), ("Date", DATE)], config)).unwrap();
    assert_eq!(params(set_header(&out, "Authorization").unwrap())["headers"], "(request-target) date");
    v.add("replaced-client-auth", &out, "/", "Authorization", json!({"secret": SECRET}), json!({}));
    v.run();
}

#[test]
fn request_target_uses_the_upstream_url_and_lowercase_method() {
    let (rt, _) = runtime(json!({}));
    let mut v = Verifier::new("request-target");
    for (method, url, path) in [
        ("GET", "/a/b?c=1&d=%2F", "/a/b?c=1&d=%2F"),
        ("OPTIONS", "http://upstream.internal:8080/v2/x?y", "/v2/x?y"),
        ("", "", "/"),
    ] {
        let mut obj = request(NAME, method, url, &[("Date", DATE)], hmac_config("hmac-sha256"));
        obj.request.as_mut().unwrap().request_uri = "/client/sent/this".into();
        let out = dispatch(&rt, &obj).unwrap();
        let mut case_out = out.clone();
        if method.is_empty() {
            case_out.request.as_mut().unwrap().method = "GET".into();
        }
        v.add(&format!("{method}{url}"), &case_out, path, "Authorization", json!({"secret": SECRET}), json!({}));
    }
    v.run();
}

// ---- RSA ----

#[test]
fn rsa_from_a_fresh_key_made_by_openssl() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (pkcs1, pkcs8, public) = (tmp.join("fresh_pkcs1.pem"), tmp.join("fresh_pkcs8.pem"), tmp.join("fresh_pub.pem"));
    openssl(&["genrsa", "-traditional", "-out", pkcs1.to_str().unwrap(), "3072"]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", pkcs1.to_str().unwrap(), "-out", pkcs8.to_str().unwrap()]);
    openssl(&["rsa", "-in", pkcs1.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    let (rt, _) = runtime(json!({}));
    let mut v = Verifier::new("rsa-fresh");
    for (i, file) in [&pkcs1, &pkcs8].iter().enumerate() {
        // CRLF line ends, as a PEM pasted on another system may have.
        let pem = std::fs::read_to_string(file).unwrap().replace('\n', "\r\n");
        let config = json!({"algorithm": "RSA-SHA256", "keyId": "fresh", "privateKey": pem, "plainSignature": false});
        let out =
            dispatch(&rt, &request(NAME, "PUT", "/r?x=1", &[("Content-Type", "text/plain"), ("X-Id", "7")], config))
                .unwrap();
        let sig = params(set_header(&out, "Authorization").unwrap())["signature"].clone();
        assert!(!sig.contains('%'), "RSA is never URL-escaped: {sig}");
        v.add(
            &format!("key{i}"),
            &out,
            "/r?x=1",
            "Authorization",
            json!({"public_key": public.to_string_lossy()}),
            json!({"algorithm": "rsa-sha256", "fresh_date": true}),
        );
    }
    v.run();
}

#[test]
fn rsa_key_from_the_host_store_is_fetched_then_cached() {
    let (rt, host) = runtime(json!({}));
    let config =
        json!({"algorithm": "rsa-sha256", "keyId": "cert-key", "certificateId": "cert-1", "headers": ["date"]});
    let obj = request(NAME, "GET", "/c", &[("Date", DATE)], config);

    // Absent: 500, and the miss is not remembered.
    let out = dispatch(&rt, &obj).unwrap();
    assert_eq!(overrides(&out), (500, CERTIFICATE_NOT_FOUND.into()));
    assert!(out.request.as_ref().unwrap().set_headers.is_empty(), "nothing signed");

    // Now stored (a certificate first, then the key: the first private-key block is used).
    let pem = format!("{}{}", read_data("test_cert.pem"), read_data("test_rsa2048_pkcs1.pem"));
    host.store.set("cert-1", &pem, 0);
    let out = dispatch(&rt, &obj).unwrap();
    assert_eq!(overrides(&out).0, -1, "{:?}", overrides(&out));
    let mut v = Verifier::new("rsa-store");
    v.add("stored", &out, "/c", "Authorization", json!({"public_key": pub_key()}), json!({"headers_param": "date"}));

    // Kept for the life of the configuration: the store emptied, it still signs.
    host.store.set("cert-1", "", 0);
    let again = dispatch(&rt, &obj).unwrap();
    assert_eq!(set_header(&again, "Authorization"), set_header(&out, "Authorization"), "PKCS#1 v1.5 is deterministic");
    v.add("cached", &again, "/c", "Authorization", json!({"public_key": pub_key()}), json!({}));
    v.run();
}

#[test]
fn concurrent_first_use_of_a_stored_key() {
    let config = json!({"UpstreamRequestSigning": {"algorithm": "rsa-sha256", "keyId": "k", "certificateId": "c"}});
    let (rt, host) = runtime(config);
    host.store.set("c", &read_data("test_rsa2048_pkcs8.pem"), 0);
    let rt = Arc::new(rt);
    let obj = request(NAME, "POST", "/conc", &[("Date", DATE), ("X-N", "1")], Value::Null);
    let bytes = obj.encode_to_vec();
    let outs: Vec<Object> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let rt = rt.clone();
                let bytes = bytes.clone();
                s.spawn(move || {
                    (0..10).map(|_| Object::decode(&rt.dispatch(&bytes).unwrap()[..]).unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outs.len(), 40);
    let mut v = Verifier::new("rsa-concurrent");
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(set_header(out, "Authorization"), set_header(&outs[0], "Authorization"));
        v.add(&format!("n{i}"), out, "/conc", "Authorization", json!({"public_key": pub_key()}), json!({}));
    }
    v.run();
}

// ---- errors ----

#[test]
fn missing_fields_unsupported_algorithm_and_bad_keys_answer_500() {
    let (rt, host) = runtime(json!({}));
    let pkcs1 = read_data("test_rsa2048_pkcs1.pem");
    let body_line = pkcs1.lines().nth(3).unwrap().to_owned();
    let truncated: String = pkcs1.lines().take(10).chain(pkcs1.lines().last()).collect::<Vec<_>>().join("\n");
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), MISSING_FIELDS),
        (json!({"algorithm": "hmac-sha256", "secret": SECRET}), MISSING_FIELDS),
        (json!({"keyId": "k", "secret": SECRET}), MISSING_FIELDS),
        (json!({"keyId": "k", "algorithm": "hmac-sha256"}), MISSING_FIELDS),
        (json!({"keyId": "k", "algorithm": "rsa-sha256", "secret": SECRET}), MISSING_FIELDS),
        (json!({"keyId": "k", "algorithm": "hmac-md5", "secret": SECRET}), UNSUPPORTED_ALGORITHM),
        (json!({"keyId": "k", "algorithm": "rsa-sha512", "privateKey": pkcs1}), UNSUPPORTED_ALGORITHM),
        (json!({"keyId": "k", "algorithm": "rsa-sha256", "privateKey": "not a pem"}), BAD_KEY),
        (json!({"keyId": "k", "algorithm": "rsa-sha256", "privateKey": truncated}), BAD_KEY),
        (json!({"keyId": "k", "algorithm": "rsa-sha256", "privateKey": read_data("test_rsa1024_pkcs1.pem")}), BAD_KEY),
        (json!({"keyId": "k", "algorithm": "rsa-sha256", "privateKey": read_data("test_ec_pkcs8.pem")}), BAD_KEY),
        (json!({"keyId": "k", "algorithm": "rsa-sha256", "privateKey": read_data("test_rsa2048_pub.pem")}), BAD_KEY),
        (json!({"keyId": "k", "algorithm": "rsa-sha256", "certificateId": "absent"}), CERTIFICATE_NOT_FOUND),
    ];
    for (config, want) in cases {
        let out =
            dispatch(&rt, &request(NAME, "GET", "/", &[], config.clone())).unwrap_or_else(|e| panic!("{config}: {e}"));
        let (code, msg) = overrides(&out);
        assert_eq!(code, 500, "{config}");
        assert!(msg.starts_with(want), "{config}: {msg}");
        assert!(out.request.as_ref().unwrap().set_headers.is_empty(), "no Date or signature on a refusal: {config}");
        assert!(!msg.contains(&body_line) && !msg.contains("MII"), "no key material: {msg}");
    }
    let logs = host.logs.lock();
    assert!(logs.iter().any(|l| l.message.contains(MISSING_FIELDS)), "refusals are logged");
    assert!(logs
        .iter()
        .all(|l| !l.message.contains(SECRET) && !l.message.contains(&body_line) && !l.message.contains("MII")));
    let reasons: Vec<_> = logs.iter().filter(|l| l.message.contains(BAD_KEY)).map(|l| l.message.clone()).collect();
    assert!(reasons.iter().any(|r| r.contains("1024 bits")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("not RSA")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("PUBLIC KEY")), "{reasons:?}");
}

#[test]
fn invalid_configuration_is_minus_5() {
    let (rt, _) = runtime(json!({}));
    for config in [
        json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET, "enabled": true}),
        json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET, "header_list": []}),
        json!({"algorithm": "hmac-sha256", "keyId": "k\"x", "secret": SECRET}),
        json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET, "signatureHeader": "Bad Header"}),
        json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET, "signatureHeader": "date"}),
        json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET, "headers": ["x y"]}),
        json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET, "headers": ["authorization"]}),
        json!({"algorithm": "rsa-sha256", "keyId": "k", "privateKey": "x", "certificateId": "c"}),
        json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": 42}),
    ] {
        let err = dispatch(&rt, &request(NAME, "GET", "/", &[], config.clone())).expect_err(&config.to_string());
        assert_eq!(err.code, Code::Config, "{config}: {err}");
        assert!(!err.message.contains(SECRET), "{err}");
    }
}

#[test]
fn hostile_headers_are_refused_not_signed() {
    let (rt, _) = runtime(json!({}));
    let cfg = json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET});
    for headers in [
        vec![("X-Bad", "a\nx-admin: true")],
        vec![("Bad Name", "v")],
        vec![("X-Nul", "a\0b")],
        vec![("Date", "Fri\r\nX: y")],
    ] {
        let out = dispatch(&rt, &request(NAME, "GET", "/", &headers, cfg.clone())).unwrap();
        let (code, msg) = overrides(&out);
        assert_eq!(code, 400, "{headers:?}");
        assert!(msg.starts_with(UNSIGNABLE_HEADER), "{msg}");
        assert!(set_header(&out, "Authorization").is_none());
    }
    // With a configured list only the listed headers matter.
    let cfg = json!({"algorithm": "hmac-sha256", "keyId": "k", "secret": SECRET, "headers": ["x-ok"]});
    let out = dispatch(&rt, &request(NAME, "GET", "/", &[("X-Bad", "a\nb"), ("X-Ok", "1")], cfg)).unwrap();
    assert_eq!(overrides(&out).0, -1);
    let mut v = Verifier::new("hostile");
    v.add("listed-only", &out, "/", "Authorization", json!({"secret": SECRET}), json!({"headers_param": "x-ok"}));
    v.run();
}

// ---- hooks, answer paths ----

#[test]
fn hooks_and_answer_paths() {
    let (rt, _) = runtime(json!({"UpstreamRequestSigning:global": hmac_config("hmac-sha256")}));
    let mut v = Verifier::new("hooks");
    for hook in [HookType::Pre, HookType::Post, HookType::PostKeyAuth] {
        let mut obj = request("UpstreamRequestSigning:global", "GET", "/h", &[("Date", DATE)], Value::Null);
        obj.hook_type = hook as i32;
        let bytes = obj.encode_to_vec();
        let appended = rt.dispatch(&bytes).unwrap();
        assert!(appended.starts_with(&bytes), "additive edits are appended to the input bytes");
        let out = Object::decode(&appended[..]).unwrap();
        assert_eq!(out, rt.dispatch_object(&obj).unwrap(), "both answer paths give the same Object");
        v.add(hook.as_str_name(), &out, "/h", "Authorization", json!({"secret": SECRET}), json!({}));
    }
    for hook in [HookType::CustomKeyCheck, HookType::Response] {
        let mut obj = request(NAME, "GET", "/", &[], hmac_config("hmac-sha256"));
        obj.hook_type = hook as i32;
        assert_eq!(dispatch(&rt, &obj).unwrap_err().code, Code::NotFound, "{hook:?}");
    }
    v.run();
}
