//! A minimal `coprocess.Dispatcher` client: checks the health service, then dispatches one
//! InjectHeaders Object (a Pre hook, its configuration in `config_data`, as the gateway sends a
//! per-API plugin configuration) and checks that the answer sets the header.
//!
//!   cargo run --release --locked -p coprocess-grpc --example dispatch -- --unix /run/coprocess-grpc/coprocess-grpc.sock
//!   cargo run --release --locked -p coprocess-grpc --example dispatch -- --tcp 127.0.0.1:9111
//!
//! Options: `--header NAME=VALUE` (default `X-Coprocess-Dispatch=ok`). Exit status 0 when the
//! server is SERVING and the answer carries the header, 1 otherwise; `make deb-test` uses it
//! against the installed server.

use coprocess::testing::ObjectBuilder;
use coprocess::{HookType, Object};
use coprocess_grpc::codec::RawObject;
use coprocess_grpc::pb::dispatcher_client::DispatcherClient;
use hyper_util::rt::TokioIo;
use prost::Message;
use std::process::ExitCode;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const USAGE: &str = "usage: dispatch (--unix PATH | --tcp HOST:PORT) [--header NAME=VALUE]";

enum Target {
    Unix(String),
    Tcp(String),
}

async fn connect(target: &Target) -> Result<Channel, String> {
    let timeout = std::time::Duration::from_secs(5);
    match target {
        Target::Tcp(addr) => Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("{addr}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {}", chain(&e))),
        Target::Unix(path) => {
            let path = path.clone();
            // The URI is a placeholder: the connector opens the socket.
            Endpoint::from_static("http://localhost")
                .timeout(timeout)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
                }))
                .await
                .map_err(|e| format!("cannot connect to {}: {}", describe(target), chain(&e)))
        }
    }
}

/// An error with its causes (tonic's transport error says only "transport error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    let mut last = s.clone();
    while let Some(cause) = source {
        let text = cause.to_string();
        if text != last {
            s.push_str(": ");
            s.push_str(&text);
        }
        last = text;
        source = cause.source();
    }
    s
}

fn describe(target: &Target) -> String {
    match target {
        Target::Unix(p) => format!("unix:{p}"),
        Target::Tcp(a) => format!("tcp:{a}"),
    }
}

async fn run(target: Target, name: String, value: String) -> Result<(), String> {
    let channel = connect(&target).await?;
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest { service: "coprocess.Dispatcher".into() })
        .await
        .map_err(|s| format!("health check: {s}"))?
        .into_inner()
        .status;
    if status != ServingStatus::Serving as i32 {
        return Err(format!("health check: coprocess.Dispatcher is {status}, not SERVING"));
    }
    let config = serde_json::json!({"InjectHeaders": {"add": {&name: &value}, "remove": ["Cookie"]}});
    let object = ObjectBuilder::new(HookType::Pre, "InjectHeaders")
        .method_url("GET", "/dispatch", "/dispatch")
        .header("Cookie", "session=1")
        .config_data(&config.to_string())
        .encode();
    let mut client = DispatcherClient::new(channel);
    let answer = client
        .dispatch(RawObject::from(object))
        .await
        .map_err(|s| format!("Dispatch: {} ({})", s.message(), s.code()))?
        .into_inner();
    let answer = Object::decode(&answer.0[..]).map_err(|e| format!("the answer is not a coprocess.Object: {e}"))?;
    let got = coprocess::testing::set_header(&answer, &name);
    if got != Some(value.as_str()) {
        return Err(format!("the answer sets {name} to {got:?}, not {value:?}: {answer:?}"));
    }
    let deleted = answer.request.as_ref().is_some_and(|r| r.delete_headers.iter().any(|h| h == "Cookie"));
    if !deleted {
        return Err(format!("the answer does not delete Cookie: {answer:?}"));
    }
    println!("dispatch {}: SERVING; InjectHeaders set {name}: {value} and deleted Cookie", describe(&target));
    Ok(())
}

fn main() -> ExitCode {
    let mut target = None;
    let (mut name, mut value) = ("X-Coprocess-Dispatch".to_owned(), "ok".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut next = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        let parsed = match arg.as_str() {
            "--unix" => next().map(|v| target = Some(Target::Unix(v))),
            "--tcp" => next().map(|v| target = Some(Target::Tcp(v))),
            "--header" => next().and_then(|v| match v.split_once('=') {
                Some((n, v)) if !n.is_empty() => {
                    (name, value) = (n.to_owned(), v.to_owned());
                    Ok(())
                }
                _ => Err(format!("--header wants NAME=VALUE, not {v:?}")),
            }),
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unexpected argument {other:?}")),
        };
        if let Err(e) = parsed {
            eprintln!("dispatch: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let Some(target) = target else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dispatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(target, name, value)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dispatch: {e}");
            ExitCode::FAILURE
        }
    }
}
