//! Helpers for testing middleware in plain `cargo test`, without a gateway: build Objects the
//! way the gateway sends them and run one middleware or a whole registry against a
//! [`FakeHost`], through the same pipeline as a dispatch through the C ABI.
//!
//! ```
//! use coprocess::testing::ObjectBuilder;
//! use coprocess::{builtins::inject_headers::InjectHeaders, FakeHost, HookType};
//!
//! let host = FakeHost::new();
//! let object = ObjectBuilder::new(HookType::Pre, "InjectHeaders").header("Cookie", "a=1").build();
//! let out = coprocess::testing::run::<InjectHeaders>(r#"{"remove": ["Cookie"]}"#, &object, &host).unwrap();
//! assert_eq!(out.request.unwrap().delete_headers, vec!["Cookie"]);
//! ```

use crate::proto::{HookType, MiniRequestObject, Object, ResponseObject, ReturnOverrides, SessionState};
use crate::view::Scratch;
use crate::{Code, ConfigSource, Context, Error, FakeHost, Host, Middleware, Registry, Runtime};
use std::sync::Arc;

/// Builds an Object as the gateway sends it for a hook: a request with
/// `return_overrides.response_code = -1`, `spec` with `APIID` and `OrgID`.
#[derive(Debug, Clone)]
pub struct ObjectBuilder {
    object: Object,
}

impl ObjectBuilder {
    /// A GET of `/` for `hook_name`, API `api-1` of org `org-1`.
    pub fn new(hook_type: HookType, hook_name: &str) -> Self {
        let request = MiniRequestObject {
            method: "GET".into(),
            url: "/".into(),
            request_uri: "/".into(),
            scheme: "http".into(),
            return_overrides: Some(ReturnOverrides { response_code: -1, ..Default::default() }),
            ..Default::default()
        };
        let mut object = Object {
            hook_type: hook_type as i32,
            hook_name: hook_name.into(),
            request: Some(request),
            ..Default::default()
        };
        object.spec.insert("APIID".into(), "api-1".into());
        object.spec.insert("OrgID".into(), "org-1".into());
        ObjectBuilder { object }
    }

    fn request(&mut self) -> &mut MiniRequestObject {
        self.object.request.get_or_insert_with(Default::default)
    }

    /// Add a request header (`request.headers`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request().headers.insert(name.into(), value.into());
        self
    }

    /// Set method, upstream URL and the client's request URI.
    pub fn method_url(mut self, method: &str, url: &str, request_uri: &str) -> Self {
        let r = self.request();
        r.method = method.into();
        r.url = url.into();
        r.request_uri = request_uri.into();
        self
    }

    /// Set the scheme (`request.scheme`).
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.request().scheme = scheme.into();
        self
    }

    /// Set the request body (`body` and `raw_body`).
    pub fn body(mut self, body: &str) -> Self {
        let r = self.request();
        r.body = body.into();
        r.raw_body = body.as_bytes().to_vec();
        self
    }

    /// Set `spec["config_data"]`.
    pub fn config_data(self, json: &str) -> Self {
        self.spec("config_data", json)
    }

    /// Set a `spec` entry.
    pub fn spec(mut self, key: &str, value: &str) -> Self {
        self.object.spec.insert(key.into(), value.into());
        self
    }

    /// Set the session (PostKeyAuth, Post and Response hooks).
    pub fn session(mut self, session: SessionState) -> Self {
        self.object.session = Some(session);
        self
    }

    /// Set a `metadata` entry.
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.object.metadata.insert(key.into(), value.into());
        self
    }

    /// Set the upstream response (Response hooks).
    pub fn response(mut self, response: ResponseObject) -> Self {
        self.object.response = Some(response);
        self
    }

    /// The Object.
    pub fn build(self) -> Object {
        self.object
    }

    /// The serialised Object.
    pub fn encode(self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.object)
    }
}

/// A [`Runtime`] over `registry` with a [`FakeHost`] (returned too, to inspect) and `global`
/// (JSON text: an object of sections, as in the `COPROCESS_CONFIG` file) as its global
/// configuration. Panics when `global` is not such an object: a broken test fixture.
pub fn runtime(registry: Registry, global: &str) -> (Runtime, Arc<FakeHost>) {
    let sections = crate::config::parse_sections(global.as_bytes()).expect("global configuration is a JSON object");
    let host = Arc::new(FakeHost::new());
    (Runtime::new(registry, host.clone(), ConfigSource::Fixed(sections)), host)
}

/// Run middleware `T` on `object` with `config_json` as its per-API configuration (the section
/// of the hook name in `spec["config_data"]`, added to any sections the Object already has),
/// (an Object without a hook name gets `T::NAME`), through the production pipeline: a [`Runtime`] over `host` with `T` registered, the bytes
/// validated and read lazily, the configuration resolved and the instance built as for any
/// dispatch, panics caught, the answer built and decoded. The codes are the C ABI's:
/// configuration errors -5, middleware errors and panics -4, a hook type `T` does not serve -3.
pub fn run<T: Middleware>(config_json: &str, object: &Object, host: &FakeHost) -> Result<Object, Error> {
    let section: serde_json::Value = serde_json::from_str(config_json)
        .map_err(|e| Error::new(Code::Config, format!("test configuration is not JSON: {e}")))?;
    let mut object = object.clone();
    if object.hook_name.is_empty() {
        object.hook_name = T::NAME.to_owned();
    }
    let name = object.hook_name.clone();
    let mut sections = match object.spec.get("config_data") {
        None => serde_json::Map::new(),
        Some(text) => crate::config::parse_sections(text.as_bytes())
            .map_err(|e| Error::new(Code::Config, format!("the Object's config_data: {e}")))?,
    };
    sections.insert(name, section);
    object.spec.insert("config_data".into(), serde_json::Value::Object(sections).to_string());
    let mut registry = Registry::new();
    registry.middleware::<T>();
    let runtime = Runtime::new(registry, std::sync::Arc::new(host.clone()), ConfigSource::Fixed(Default::default()));
    runtime.dispatch_object(&object)
}

/// Call `f` with a [`Context`] over `object` (encoded, validated and read as a dispatch reads
/// it), for unit tests of helpers that take a context.
pub fn with_context<R>(object: &Object, host: &dyn Host, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
    let bytes = prost::Message::encode_to_vec(object);
    let scratch = Scratch::new();
    let mut ctx = Context::from_bytes(&bytes, &scratch, host).expect("an encoded Object is valid");
    f(&mut ctx)
}

/// The `(response_code, response_error)` of an answer's return overrides (`(0, "")` when
/// there are none).
pub fn overrides(object: &Object) -> (i32, &str) {
    object
        .request
        .as_ref()
        .and_then(|r| r.return_overrides.as_ref())
        .map_or((0, ""), |o| (o.response_code, o.response_error.as_str()))
}

/// A request header the answer sets (`request.set_headers`).
pub fn set_header<'a>(object: &'a Object, name: &str) -> Option<&'a str> {
    object.request.as_ref()?.set_headers.get(name).map(String::as_str)
}
