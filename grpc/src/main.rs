//! `coprocess-grpc`: see `--help` and docs/grpc-limits.md.

use coprocess_grpc::log::Logger;
use coprocess_grpc::options::{parse_args, Command, USAGE};
use coprocess_grpc::server;
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(o)) => *o,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("coprocess-grpc {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("coprocess-grpc: {e}");
            return ExitCode::from(2);
        }
    };
    let logger = Logger::new(opts.log_level);
    // The async workers serve connections and run the dispatches that cannot wait; the ones
    // that can run on the server's own blocking pool. tokio's blocking threads only load the
    // configuration, reload and connect to Redis at startup.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if opts.worker_threads > 0 {
        builder.worker_threads(opts.worker_threads);
    }
    let runtime = builder
        .enable_all()
        .max_blocking_threads(4)
        .thread_keep_alive(Duration::from_secs(10))
        .thread_name("coprocess-grpc")
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            logger.error("cannot start the async runtime", &[("error", Value::from(e.to_string()))]);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts, logger.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logger.error("coprocess-grpc failed", &[("error", Value::from(e))]);
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: coprocess_grpc::options::Options, logger: Logger) -> Result<(), String> {
    let sig = |k: SignalKind| signal(k).map_err(|e| format!("cannot install signal handler: {e}"));
    let (mut hup, mut term, mut int) =
        (sig(SignalKind::hangup())?, sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    let server = server::start(opts).await?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = server.reload().await;
            }
            _ = term.recv() => {
                logger.info("SIGTERM received", &[]);
                break;
            }
            _ = int.recv() => {
                logger.info("SIGINT received", &[]);
                break;
            }
            _ = server.stopped() => break,
        }
    }
    server.shutdown().await
}
