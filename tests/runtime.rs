//! The dispatcher through `Runtime`: configuration resolution and caching, error codes,
//! panics, reload atomicity under concurrent dispatches, events.

use coprocess::proto::Object;
use coprocess::testing::{overrides, set_header, ObjectBuilder};
use coprocess::{
    Code, ConfigError, ConfigSource, Context, Event, EventHandler, FakeHost, HookType, Host, Middleware,
    MiddlewareError, Registry, Runtime, Setup,
};
use prost::Message;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Writes its configured `value` into headers `X-A` and `X-B`, so a test can see which section
/// configured it and that both come from the same configuration.
struct Probe {
    value: String,
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ProbeConfig {
    value: String,
    fail: bool,
}

/// Builds of a Probe configured with the value `cached-once` (used by one test only).
static CACHED_ONCE_BUILDS: AtomicUsize = AtomicUsize::new(0);
static PROBE_RELOADS: AtomicUsize = AtomicUsize::new(0);

impl Middleware for Probe {
    const NAME: &'static str = "Probe";
    const HOOKS: &'static [HookType] = &[HookType::Pre, HookType::Post];
    type Config = ProbeConfig;

    fn new(config: ProbeConfig, setup: &Setup<'_>) -> Result<Self, ConfigError> {
        if config.value == "cached-once" {
            CACHED_ONCE_BUILDS.fetch_add(1, Ordering::SeqCst);
        }
        if config.fail {
            return Err(ConfigError::new("asked to fail"));
        }
        let value = if config.value.is_empty() { format!("default:{}", setup.section) } else { config.value };
        Ok(Probe { value })
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        ctx.set_header("X-A", self.value.clone());
        ctx.set_header("X-B", self.value.clone());
        Ok(())
    }

    fn on_reload() {
        PROBE_RELOADS.fetch_add(1, Ordering::SeqCst);
    }
}

/// Fails or panics on demand (header `X-Do`).
struct Faulty;

impl Middleware for Faulty {
    const NAME: &'static str = "Faulty";
    const HOOKS: &'static [HookType] = &[HookType::Pre];
    type Config = ();

    fn new(_: (), _: &Setup<'_>) -> Result<Self, ConfigError> {
        Ok(Faulty)
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        match ctx.header("X-Do") {
            Some("panic") => panic!("deliberate panic"),
            Some("error") => Err(MiddlewareError::new("deliberate error")),
            _ => Ok(()),
        }
    }
}

struct Counter;
static EVENTS_SEEN: AtomicUsize = AtomicUsize::new(0);

impl EventHandler for Counter {
    const NAME: &'static str = "Counter";
    type Config = ();
    fn new(_: ()) -> Result<Self, ConfigError> {
        Ok(Counter)
    }
    fn handle(&self, event: &Event<'_>, host: &dyn Host) -> Result<(), MiddlewareError> {
        EVENTS_SEEN.fetch_add(1, Ordering::SeqCst);
        host.trigger_event("Counted", &format!("{}|{}|{}", event.event_type, event.api_id, event.meta));
        Ok(())
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.middleware::<Probe>().middleware::<Faulty>().event_handler::<Counter>();
    coprocess::builtins::register(&mut r);
    r
}

fn runtime_with(global: &str) -> (Runtime, Arc<FakeHost>) {
    coprocess::testing::runtime(registry(), global)
}

fn dispatch(rt: &Runtime, obj: ObjectBuilder) -> Result<Object, coprocess::Error> {
    let answer = rt.dispatch(&obj.encode())?;
    Ok(Object::decode(&answer[..]).expect("answer decodes"))
}

#[test]
fn section_resolution_order() {
    let global = r#"{"Probe": {"value": "global"}, "Probe:i": {"value": "global:i"}}"#;
    let (rt, _) = runtime_with(global);
    let per_api_both = r#"{"Probe": {"value": "api"}, "Probe:i": {"value": "api:i"}}"#;
    let per_api_base = r#"{"Probe": {"value": "api"}}"#;
    let cases = [
        ("Probe:i", Some(per_api_both), "api:i"),
        ("Probe:i", Some(per_api_base), "api"),
        ("Probe:i", Some("{}"), "global:i"),
        ("Probe:i", None, "global:i"),
        ("Probe", Some(per_api_both), "api"),
        ("Probe", None, "global"),
        ("Probe:other", None, "global"),
    ];
    for (hook, config_data, want) in cases {
        let mut b = ObjectBuilder::new(HookType::Pre, hook);
        if let Some(cd) = config_data {
            b = b.config_data(cd);
        }
        let out = dispatch(&rt, b).unwrap();
        assert_eq!(set_header(&out, "X-A"), Some(want), "{hook} with {config_data:?}");
    }
    let (rt, _) = runtime_with("{}");
    let out = dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Probe:x")).unwrap();
    assert_eq!(set_header(&out, "X-A"), Some("default:Probe"), "no section anywhere: defaults");
}

#[test]
fn config_data_is_parsed_once_per_distinct_value() {
    let (rt, _) = runtime_with("{}");
    let cd = r#"{"Probe": {"value": "cached-once"}}"#;
    std::thread::spawn(move || {
        for _ in 0..50 {
            let out = dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Probe").config_data(cd)).unwrap();
            assert_eq!(set_header(&out, "X-A"), Some("cached-once"));
        }
    })
    .join()
    .unwrap();
    assert_eq!(CACHED_ONCE_BUILDS.load(Ordering::SeqCst), 1, "one build for 50 dispatches of one config_data");
}

#[test]
fn error_codes() {
    let (rt, _) = runtime_with("{}");
    let code = |r: Result<Object, coprocess::Error>| r.unwrap_err().code;
    assert_eq!(rt.dispatch(&[0xff, 0xff, 0xff]).unwrap_err().code, Code::InvalidInput);
    assert_eq!(rt.dispatch(&[]).unwrap_err().code, Code::NotFound);
    assert_eq!(code(dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Nope"))), Code::NotFound);
    assert_eq!(code(dispatch(&rt, ObjectBuilder::new(HookType::Response, "Probe"))), Code::NotFound);
    let mut bad_hook = ObjectBuilder::new(HookType::Pre, "Probe").build();
    bad_hook.hook_type = 42;
    let err = rt.dispatch(&bad_hook.encode_to_vec()).unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    assert!(err.message.contains("42"), "{}", err.message);
    assert_eq!(code(dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Probe").config_data("{"))), Code::Config);
    assert_eq!(code(dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Probe").config_data("[]"))), Code::Config);
    let failing = r#"{"Probe": {"fail": true}}"#;
    let err = dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Probe").config_data(failing)).unwrap_err();
    assert_eq!(err.code, Code::Config);
    assert!(err.message.contains("asked to fail") && err.message.contains("Probe"), "{}", err.message);
    let err = dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Probe").config_data(r#"{"Probe": {"valu": "x"}}"#))
        .unwrap_err();
    assert!(err.message.contains("unknown field `valu`"), "{}", err.message);
}

#[test]
fn middleware_errors_and_panics_are_minus_four() {
    let (rt, _) = runtime_with("{}");
    let err = dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Faulty").header("X-Do", "error")).unwrap_err();
    assert_eq!(err.code, Code::Middleware);
    assert!(err.message.contains("deliberate error"), "{}", err.message);
    let err = dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Faulty").header("X-Do", "panic")).unwrap_err();
    assert_eq!(err.code, Code::Middleware);
    assert!(err.message.contains("panicked") && err.message.contains("deliberate panic"), "{}", err.message);
    // The runtime is still usable after a panic.
    let out = dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Faulty")).unwrap();
    assert_eq!(overrides(&out), (-1, ""));
}

#[test]
fn unchanged_objects_come_back_byte_identical() {
    let (rt, _) = runtime_with("{}");
    let bytes = ObjectBuilder::new(HookType::Pre, "Faulty").header("A", "b").body("{\"x\":1}").encode();
    assert_eq!(rt.dispatch(&bytes).unwrap(), bytes);
}

#[test]
fn reload_is_atomic_under_concurrent_dispatches() {
    let dir = std::env::temp_dir().join(format!("coprocess-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    let write = |v: usize| std::fs::write(&path, format!(r#"{{"Probe": {{"value": "v{v}"}}}}"#)).unwrap();
    write(0);
    let host = Arc::new(FakeHost::new());
    let rt = Arc::new(Runtime::new(registry(), host, ConfigSource::File(path.clone())));
    let stop = Arc::new(AtomicBool::new(false));
    let dispatched = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for t in 0..4 {
        let (rt, stop, dispatched) = (rt.clone(), stop.clone(), dispatched.clone());
        workers.push(std::thread::spawn(move || {
            let per_api = r#"{"Probe:api": {"value": "api"}}"#;
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) || n < 100 {
                let hook = if n.is_multiple_of(3) { "Probe:api" } else { "Probe" };
                let out = dispatch(&rt, ObjectBuilder::new(HookType::Pre, hook).config_data(per_api))
                    .expect("no dispatch fails during reloads");
                let (a, b) = (set_header(&out, "X-A").unwrap(), set_header(&out, "X-B").unwrap());
                assert_eq!(a, b, "thread {t}: one dispatch saw two configurations");
                if hook == "Probe:api" {
                    assert_eq!(a, "api");
                } else {
                    assert!(a.starts_with('v'), "{a}");
                }
                n += 1;
            }
            dispatched.fetch_add(n, Ordering::Relaxed);
        }));
    }
    let reloads_before = PROBE_RELOADS.load(Ordering::SeqCst);
    for v in 1..=200 {
        write(v);
        rt.reload().expect("reload of a valid file");
        if v % 50 == 0 {
            std::fs::write(&path, "{ broken").unwrap();
            assert_eq!(rt.reload().unwrap_err().code, Code::Config);
        }
    }
    write(999);
    rt.reload().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        PROBE_RELOADS.load(Ordering::SeqCst) - reloads_before >= 201,
        "on_reload runs after each successful reload"
    );
    let out = dispatch(&rt, ObjectBuilder::new(HookType::Post, "Probe")).unwrap();
    assert_eq!(set_header(&out, "X-A"), Some("v999"), "the last reload is in force");
    assert!(dispatched.load(Ordering::Relaxed) >= 400);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn broken_global_file_at_first_use_runs_empty_and_logs() {
    let host = Arc::new(FakeHost::new());
    let rt = Runtime::new(registry(), host.clone(), ConfigSource::File("/nonexistent/coprocess.json".into()));
    assert!(host
        .logs
        .lock()
        .iter()
        .any(|l| l.level == coprocess::LogLevel::Error && l.message.contains("/nonexistent/coprocess.json")));
    let out = dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Probe")).unwrap();
    assert_eq!(set_header(&out, "X-A"), Some("default:Probe"));
    assert_eq!(rt.reload().unwrap_err().code, Code::Config);
}

#[test]
fn events_reach_their_handler() {
    let (rt, host) = runtime_with(r#"{"RelayEvent": {"event_name": "Again"}}"#);
    let ev = r#"{"message":{"Type":"KeyExpired","Meta":{"k":1},"TimeStamp":"t"},"handler_name":"Counter","spec":{"APIID":"a1"}}"#;
    rt.dispatch_event(ev.as_bytes()).unwrap();
    assert_eq!(host.events.lock().last().unwrap(), &("Counted".to_string(), r#"KeyExpired|a1|{"k":1}"#.to_string()));
    let relay = ev.replace("Counter", "RelayEvent");
    rt.dispatch_event(relay.as_bytes()).unwrap();
    assert_eq!(host.events.lock().last().unwrap(), &("Again".to_string(), relay.clone()));
    assert_eq!(rt.dispatch_event(b"{}").unwrap_err().code, Code::InvalidInput);
    assert_eq!(
        rt.dispatch_event(br#"{"message":{"Type":1},"handler_name":"Counter"}"#).unwrap_err().code,
        Code::InvalidInput
    );
    assert_eq!(
        rt.dispatch_event(br#"{"message":{"Type":"x"},"handler_name":"Nobody"}"#).unwrap_err().code,
        Code::NotFound
    );
    let (rt, _) = runtime_with("{}");
    assert_eq!(rt.dispatch_event(relay.as_bytes()).unwrap_err().code, Code::Config, "RelayEvent needs event_name");
}

#[test]
fn reload_rejects_unknown_and_invalid_sections() {
    let dir = std::env::temp_dir().join(format!("coprocess-sections-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.json");
    std::fs::write(&path, r#"{"Probe": {"value": "good"}}"#).unwrap();
    let rt = Runtime::new(registry(), Arc::new(FakeHost::new()), ConfigSource::File(path.clone()));
    for bad in [
        r#"{"Typo": {}}"#,
        r#"{"Probe": {"fail": true}}"#,
        r#"{"Probe": {"nope": 1}}"#,
        r#"[]"#,
        r#"{"RelayEvent": {}}"#,
    ] {
        std::fs::write(&path, bad).unwrap();
        let err = rt.reload().unwrap_err();
        assert_eq!(err.code, Code::Config, "{bad}");
        let out = dispatch(&rt, ObjectBuilder::new(HookType::Pre, "Probe")).unwrap();
        assert_eq!(set_header(&out, "X-A"), Some("good"), "last good state kept after {bad}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn blocking_class_follows_the_instance_a_dispatch_would_run() {
    use coprocess::Blocking;
    let (rt, _) = runtime_with(r#"{"HMACSignatureAuth:nostore": {"store_prefix": ""}}"#);
    let class = |b: ObjectBuilder| rt.blocking(&b.encode());
    let reqhub_local = r#"{"ReqHubMerchant": {"mode": "local", "api": "a"}}"#;
    let reqhub_remote =
        r#"{"ReqHubMerchant": {"public_key": "p", "private_key": "k", "verify_url": "http://127.0.0.1:9/req"}}"#;
    assert_eq!(class(ObjectBuilder::new(HookType::Pre, "InjectHeaders")), Blocking::Never);
    assert_eq!(class(ObjectBuilder::new(HookType::CustomKeyCheck, "StaticTokenAuth")), Blocking::Never);
    // The global default HMACSignatureAuth looks unknown keys up in the store; an instance
    // without a store prefix does not.
    assert_eq!(class(ObjectBuilder::new(HookType::CustomKeyCheck, "HMACSignatureAuth")), Blocking::Store);
    assert_eq!(class(ObjectBuilder::new(HookType::CustomKeyCheck, "HMACSignatureAuth:nostore")), Blocking::Never);
    // Per-API configuration decides: local mode uses the store, remote mode the network.
    let pre = |cd: &str| ObjectBuilder::new(HookType::Pre, "ReqHubMerchant").config_data(cd);
    assert_eq!(class(pre(reqhub_local)), Blocking::Store);
    assert_eq!(class(pre(reqhub_remote)), Blocking::Network);
    // Middleware that does not say may block on anything.
    assert_eq!(class(ObjectBuilder::new(HookType::Pre, "Probe")), Blocking::Network);
    // What a dispatch refuses before running middleware fails at once.
    assert_eq!(rt.blocking(b"\xff\xff"), Blocking::Never);
    assert_eq!(class(ObjectBuilder::new(HookType::Pre, "Nobody")), Blocking::Never);
    assert_eq!(class(pre("{broken")), Blocking::Never);
}
