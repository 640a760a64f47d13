//! Server options: a JSON file (`--config`) and command-line flags; a flag wins over the file.
//!
//! Every option has the same name in both, `snake_case` in the file and `--kebab-case` on the
//! command line (`--flag value` or `--flag=value`). Unknown names are an error.
//!
//! The limits (docs/grpc-limits.md explains each with its failure mode):
//!
//! | option | default | bounds |
//! |---|---|---|
//! | `max_connections` | 0: the open-file limit less a reserve | open connections; past it a new one is closed at once |
//! | `max_concurrent_streams` | 256 | streams per connection, advertised in SETTINGS |
//! | `handshake_timeout_ms` | 10000 | accept to TLS done and HTTP/2 preface received |
//! | `request_read_timeout_ms` | 10000 | a call's request body, from its headers to its end |
//! | `idle_timeout_ms` | 300000 | a connection with no call for this long is closed (GOAWAY) |
//! | `keepalive_interval_ms` / `keepalive_timeout_ms` | 60000 / 20000 | HTTP/2 PING of a quiet connection, closed without a PONG |
//! | `request_memory_bytes` | 64 MiB | bytes of request messages held at once, all calls together |
//! | `worker_threads` | 0: one per CPU | async workers: connections and the dispatches that cannot wait |
//! | `blocking_threads` / `blocking_queue` | 32 / 256 | threads for dispatches that wait on Redis or the network, calls waiting for one |
//! | `redis_timeout_ms` | 2000 | one whole Redis operation, connection setup included |
//! | `redis_breaker_failures` / `redis_breaker_backoff_ms` | 5 / 2000 | consecutive failures that open the breaker, time it stays open |
//! | `error_log_interval_ms` | 10000 | at most one line per interval for repeated store and overload errors |
//!
//! `metrics_listen` (unset: off) serves `GET /metrics` over HTTP/1.1 on a TCP address, with
//! bounds of its own ([`crate::metrics_server`]).

use coprocess::LogLevel;
use serde::Deserialize;
use std::path::PathBuf;

/// 4 MiB: gRPC's default receive limit, and the gateway's when `grpc_recv_max_size` /
/// `grpc_send_max_size` are unset.
pub const DEFAULT_MAX_MESSAGE: usize = 4 << 20;

/// Everything the server is configured with.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// TCP address to listen on (`127.0.0.1:9111`, `[::]:9111`; port 0 picks a free port).
    pub listen: Option<String>,
    /// Unix socket path to listen on (a stale socket file is replaced).
    pub unix: Option<PathBuf>,
    /// PEM certificate chain for TLS on the TCP listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the TCP listener.
    pub tls_key: Option<PathBuf>,
    /// The middleware configuration file (the library's global file); unset: `COPROCESS_CONFIG`.
    pub middleware_config: Option<PathBuf>,
    /// Largest request message accepted (set it to the gateway's `grpc_send_max_size`).
    pub grpc_recv_max_size: usize,
    /// Largest answer sent (set it to the gateway's `grpc_recv_max_size`).
    pub grpc_send_max_size: usize,
    /// `redis://host:port/db`: the store shared by replicas. Unset: a process-local store.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key the middleware stores.
    pub redis_prefix: String,
    /// The whole of one Redis operation (connecting included), in milliseconds.
    pub redis_timeout_ms: u64,
    /// `log`, or an `http://`/`https://` URL that gets a JSON POST per event.
    pub event_sink: String,
    /// Timeout of one webhook POST, in milliseconds.
    pub event_timeout_ms: u64,
    /// Minimum level written to stderr.
    pub log_level: LogLevel,
    /// Async worker threads (connections, and the dispatches that cannot wait); 0: one per CPU.
    pub worker_threads: usize,
    /// Threads running the dispatches that may wait on Redis or the network; the others run
    /// on the async workers.
    pub blocking_threads: usize,
    /// Calls waiting for a blocking thread; past this a call is refused with `UNAVAILABLE`.
    pub blocking_queue: usize,
    /// After SIGTERM, how long running calls may take before the server exits anyway.
    pub shutdown_timeout_ms: u64,
    /// Most open connections (all listeners); 0: the soft `RLIMIT_NOFILE` less a reserve for
    /// Redis connections and files. Past it a new connection is closed at once.
    pub max_connections: usize,
    /// Most concurrent streams per HTTP/2 connection (advertised in SETTINGS).
    pub max_concurrent_streams: u32,
    /// From accept until TLS is done and the HTTP/2 preface has arrived, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// From a call's headers until the end of its request body, in milliseconds.
    pub request_read_timeout_ms: u64,
    /// A connection with no call for this long is closed with GOAWAY, in milliseconds; 0: never.
    pub idle_timeout_ms: u64,
    /// HTTP/2 PING after this long without a frame from the client, in milliseconds; 0: never.
    pub keepalive_interval_ms: u64,
    /// A connection whose PING is not answered within this is closed, in milliseconds.
    pub keepalive_timeout_ms: u64,
    /// Bytes of request messages held at once by all calls together; a call that would exceed
    /// it is refused with `RESOURCE_EXHAUSTED`. At least `grpc_recv_max_size`.
    pub request_memory_bytes: usize,
    /// Consecutive failed Redis operations that open the circuit breaker (0: no breaker).
    pub redis_breaker_failures: u32,
    /// How long an open breaker fails operations at once before one probe, in milliseconds.
    pub redis_breaker_backoff_ms: u64,
    /// At most one log line per this interval for each kind of repeated error (failed store
    /// operations, refused calls and connections), with the count of the suppressed ones.
    pub error_log_interval_ms: u64,
    /// TCP address of the HTTP/1.1 metrics endpoint (`GET /metrics`); unset: none.
    pub metrics_listen: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: None,
            unix: None,
            tls_cert: None,
            tls_key: None,
            middleware_config: None,
            grpc_recv_max_size: DEFAULT_MAX_MESSAGE,
            grpc_send_max_size: DEFAULT_MAX_MESSAGE,
            redis_url: None,
            redis_prefix: "coprocess:".into(),
            redis_timeout_ms: 2000,
            event_sink: "log".into(),
            event_timeout_ms: 5000,
            log_level: LogLevel::Info,
            worker_threads: 0,
            blocking_threads: 32,
            blocking_queue: 256,
            shutdown_timeout_ms: 10_000,
            max_connections: 0,
            max_concurrent_streams: 256,
            handshake_timeout_ms: 10_000,
            request_read_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            keepalive_interval_ms: 60_000,
            keepalive_timeout_ms: 20_000,
            request_memory_bytes: 64 << 20,
            redis_breaker_failures: 5,
            redis_breaker_backoff_ms: 2000,
            error_log_interval_ms: 10_000,
            metrics_listen: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Run the server.
    Serve(Box<Options>),
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// The usage text.
pub const USAGE: &str = "\
coprocess-grpc: the coprocess middleware as the gateway's gRPC plugin server (coprocess.Dispatcher)

USAGE: coprocess-grpc [--config FILE] [OPTIONS]

Listeners (at least one):
  --listen ADDR              TCP address, e.g. 127.0.0.1:9111 (port 0: any free port)
  --unix PATH                unix socket path
  --tls-cert PEM --tls-key PEM   TLS on the TCP listener
Middleware:
  --middleware-config FILE   global middleware configuration (default: $COPROCESS_CONFIG)
Limits (see docs/grpc-limits.md):
  --grpc-recv-max-size BYTES largest request accepted (default 4194304; = gateway grpc_send_max_size)
  --grpc-send-max-size BYTES largest answer sent (default 4194304; = gateway grpc_recv_max_size)
  --max-connections N        open connections; past it new ones are closed at once
                             (default 0: the soft RLIMIT_NOFILE less a reserve)
  --max-concurrent-streams N streams per connection, advertised in SETTINGS (default 256)
  --handshake-timeout-ms MS  accept to TLS done and HTTP/2 preface received (default 10000)
  --request-read-timeout-ms MS  a call's headers to the end of its request body (default 10000)
  --idle-timeout-ms MS       close a connection with no call for this long, 0: never (default 300000)
  --keepalive-interval-ms MS HTTP/2 PING after this long without a frame, 0: never (default 60000)
  --keepalive-timeout-ms MS  close a connection whose PING is unanswered (default 20000)
  --request-memory-bytes B   request bytes held by all calls at once; past it RESOURCE_EXHAUSTED
                             (default 67108864, at least --grpc-recv-max-size)
  --worker-threads N         async worker threads, 0: one per CPU (default 0)
  --blocking-threads N       threads for dispatches that wait on Redis or the network (default 32)
  --blocking-queue N         calls waiting for such a thread; past it UNAVAILABLE (default 256)
  --shutdown-timeout-ms MS   grace for running calls after SIGTERM (default 10000)
  --error-log-interval-ms MS one line per interval for repeated errors, with a count (default 10000)
Host callbacks:
  --redis-url URL            redis://host:port/db store shared by replicas (default: in-memory)
  --redis-prefix P           key prefix (default coprocess:)
  --redis-timeout-ms MS      one whole Redis operation, connecting included (default 2000)
  --redis-breaker-failures N consecutive failures that make Redis calls fail at once, 0: never (default 5)
  --redis-breaker-backoff-ms MS  how long they fail at once before one probe (default 2000)
  --event-sink log|URL       events to the log, or POSTed as JSON to an http(s) URL (default log)
  --event-timeout-ms MS      webhook POST timeout (default 5000)
  --log-level LEVEL          debug|info|warning|error (default info)
Observability:
  --metrics-listen ADDR      HTTP/1.1 GET /metrics (Prometheus text) on this TCP address (default: off)
Other:
  --config FILE              JSON file with any of the options above (snake_case keys)
  --help, --version

Signals: SIGHUP reloads the middleware configuration; SIGTERM/SIGINT shut down gracefully.
";

/// Parse the command line (without the program name), reading `--config` first.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut config: Option<PathBuf> = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?} (options start with --)"));
        };
        match flag {
            "help" | "h" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            _ => {}
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => {
                let v = it.next().ok_or_else(|| format!("--{flag} needs a value"))?;
                (flag.to_owned(), v)
            }
        };
        if name == "config" {
            config = Some(PathBuf::from(value));
        } else {
            pairs.push((name, value));
        }
    }
    let mut options = match &config {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_slice::<Options>(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Options::default(),
    };
    for (name, value) in pairs {
        apply(&mut options, &name, value)?;
    }
    Ok(Command::Serve(Box::new(options)))
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value.trim().parse().map_err(|_| format!("--{name} needs a non-negative whole number, not {value:?}"))
}

fn apply(o: &mut Options, name: &str, value: String) -> Result<(), String> {
    match name {
        "listen" => o.listen = Some(value),
        "unix" => o.unix = Some(value.into()),
        "tls-cert" => o.tls_cert = Some(value.into()),
        "tls-key" => o.tls_key = Some(value.into()),
        "middleware-config" => o.middleware_config = Some(value.into()),
        "grpc-recv-max-size" => o.grpc_recv_max_size = number(name, &value)?,
        "grpc-send-max-size" => o.grpc_send_max_size = number(name, &value)?,
        "redis-url" => o.redis_url = Some(value),
        "redis-prefix" => o.redis_prefix = value,
        "redis-timeout-ms" => o.redis_timeout_ms = number(name, &value)?,
        "event-sink" => o.event_sink = value,
        "event-timeout-ms" => o.event_timeout_ms = number(name, &value)?,
        "log-level" => {
            o.log_level = serde_json::from_value(serde_json::Value::String(value.clone()))
                .map_err(|_| format!("--log-level must be debug, info, warning or error, not {value:?}"))?
        }
        "worker-threads" => o.worker_threads = number(name, &value)?,
        "blocking-threads" => o.blocking_threads = number(name, &value)?,
        "blocking-queue" => o.blocking_queue = number(name, &value)?,
        "shutdown-timeout-ms" => o.shutdown_timeout_ms = number(name, &value)?,
        "max-connections" => o.max_connections = number(name, &value)?,
        "max-concurrent-streams" => o.max_concurrent_streams = number(name, &value)?,
        "handshake-timeout-ms" => o.handshake_timeout_ms = number(name, &value)?,
        "request-read-timeout-ms" => o.request_read_timeout_ms = number(name, &value)?,
        "idle-timeout-ms" => o.idle_timeout_ms = number(name, &value)?,
        "keepalive-interval-ms" => o.keepalive_interval_ms = number(name, &value)?,
        "keepalive-timeout-ms" => o.keepalive_timeout_ms = number(name, &value)?,
        "request-memory-bytes" => o.request_memory_bytes = number(name, &value)?,
        "redis-breaker-failures" => o.redis_breaker_failures = number(name, &value)?,
        "redis-breaker-backoff-ms" => o.redis_breaker_backoff_ms = number(name, &value)?,
        "error-log-interval-ms" => o.error_log_interval_ms = number(name, &value)?,
        "metrics-listen" => o.metrics_listen = Some(value),
        other => return Err(format!("unknown option --{other} (see --help)")),
    }
    Ok(())
}

impl Options {
    /// Check what a flag parser cannot: a listener, TLS pairs, positive limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_none() && self.unix.is_none() {
            return Err("nothing to listen on: give --listen ADDR and/or --unix PATH".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("TLS needs both --tls-cert and --tls-key".into());
        }
        if self.tls_cert.is_some() && self.listen.is_none() {
            return Err("TLS applies to the TCP listener: give --listen too".into());
        }
        if self.grpc_recv_max_size == 0 || self.grpc_send_max_size == 0 {
            return Err("message size limits must be positive".into());
        }
        if self.blocking_threads == 0 {
            return Err("--blocking-threads must be at least 1".into());
        }
        if self.max_concurrent_streams == 0 {
            return Err("--max-concurrent-streams must be at least 1".into());
        }
        for (name, ms) in [
            ("--handshake-timeout-ms", self.handshake_timeout_ms),
            ("--request-read-timeout-ms", self.request_read_timeout_ms),
            ("--keepalive-timeout-ms", self.keepalive_timeout_ms),
            ("--redis-timeout-ms", self.redis_timeout_ms),
        ] {
            if ms == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.request_memory_bytes < self.grpc_recv_max_size {
            return Err("--request-memory-bytes must be at least --grpc-recv-max-size".into());
        }
        if self.grpc_recv_max_size > u32::MAX as usize {
            return Err("--grpc-recv-max-size must fit a gRPC frame (at most 4294967295)".into());
        }
        if self.event_sink != "log"
            && !(self.event_sink.starts_with("http://") || self.event_sink.starts_with("https://"))
        {
            return Err("--event-sink must be \"log\" or an http:// or https:// URL".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn serve(a: &[&str]) -> Options {
        match parse_args(args(a)).unwrap() {
            Command::Serve(o) => *o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_in_both_spellings() {
        let o = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--unix=/tmp/x.sock",
            "--grpc-recv-max-size=1024",
            "--log-level",
            "debug",
        ]);
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(o.unix, Some(PathBuf::from("/tmp/x.sock")));
        assert_eq!(o.grpc_recv_max_size, 1024);
        assert_eq!(o.grpc_send_max_size, DEFAULT_MAX_MESSAGE);
        assert_eq!(o.log_level, LogLevel::Debug);
        o.validate().unwrap();
    }

    #[test]
    fn bad_command_lines_are_explained() {
        for (a, needle) in [
            (&["--nope", "1"][..], "unknown option --nope"),
            (&["--listen"][..], "needs a value"),
            (&["stray"][..], "unexpected argument"),
            (&["--grpc-recv-max-size", "-1"][..], "non-negative whole number"),
            (&["--log-level", "loud"][..], "--log-level must be"),
            (&["--config", "/nonexistent/coprocess-grpc.json"][..], "cannot read"),
        ] {
            let e = parse_args(args(a)).unwrap_err();
            assert!(e.contains(needle), "{a:?}: {e}");
        }
        assert_eq!(parse_args(args(&["--help"])).unwrap(), Command::Help);
    }

    #[test]
    fn validation() {
        let e = |a: &[&str]| serve(a).validate().unwrap_err();
        assert!(e(&[]).contains("nothing to listen on"));
        assert!(e(&["--listen", "127.0.0.1:0", "--tls-cert", "c.pem"]).contains("both"));
        assert!(e(&["--unix", "/tmp/s", "--tls-cert", "c", "--tls-key", "k"]).contains("TCP listener"));
        assert!(e(&["--listen", "127.0.0.1:0", "--grpc-send-max-size", "0"]).contains("positive"));
        assert!(e(&["--listen", "127.0.0.1:0", "--event-sink", "ftp://x"]).contains("event-sink"));
        assert!(e(&["--listen", "127.0.0.1:0", "--request-memory-bytes", "1000"]).contains("at least"));
        assert!(e(&["--listen", "127.0.0.1:0", "--request-read-timeout-ms", "0"]).contains("positive"));
        assert!(e(&["--listen", "127.0.0.1:0", "--max-concurrent-streams", "0"]).contains("at least 1"));
    }

    /// The field names of [`Options`], read from its `Debug` output.
    fn field_names() -> Vec<String> {
        let debug = format!("{:?}", Options::default());
        let inner = debug.trim_start_matches("Options {").trim_end_matches('}');
        inner
            .split(", ")
            .filter_map(|part| part.split_once(": ").map(|(k, _)| k.trim().to_owned()))
            .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect()
    }

    #[test]
    fn help_and_flags_name_every_option() {
        let names = field_names();
        assert!(names.len() >= 28, "{names:?}");
        for name in names {
            let flag = name.replace('_', "-");
            assert!(USAGE.contains(&format!("--{flag} ")), "--help does not list --{flag}");
            let value = if flag == "log-level" { "info" } else { "1" };
            apply(&mut Options::default(), &flag, value.into()).unwrap();
        }
    }

    #[test]
    fn config_file_then_flags() {
        let dir = std::env::temp_dir().join(format!("coprocess-grpc-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.json");
        std::fs::write(&file, r#"{"listen": "127.0.0.1:9111", "redis_prefix": "p:", "blocking_threads": 8}"#).unwrap();
        let o = serve(&["--config", file.to_str().unwrap(), "--listen", "127.0.0.1:9222"]);
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:9222"), "the flag wins");
        assert_eq!((o.redis_prefix.as_str(), o.blocking_threads), ("p:", 8));
        std::fs::write(&file, r#"{"listen": "127.0.0.1:9111", "typo": 1}"#).unwrap();
        let e = parse_args(args(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(e.contains("unknown field `typo`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
