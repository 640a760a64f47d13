//! Server CPU time per call: the release binary as a child process, a tonic client at
//! concurrency 1, 16 and 64 over one loopback TCP connection sending the HMAC-auth Object
//! (the reference vector of docs/builtins/hmac-signature-auth.md, in-memory store), the
//! server's utime+stime from /proc/<pid>/stat over the calls of one run. With
//! `COPROCESS_GRPC_COMPARE=/path/to/other/coprocess-grpc` the other build is measured too,
//! interleaved with this one round by round, and the ratio of the medians is printed.
//!
//! With `CPU_STRACE=1`, a last run per build at concurrency 1 is traced with `strace -f -c`
//! attached to the server, and the server's system calls per call are printed.
//!
//!   cargo bench -p coprocess-grpc --bench cpu_per_call
//!   COPROCESS_GRPC_COMPARE=/tmp/coprocess-grpc-before CPU_ROUNDS=5 cargo bench -p coprocess-grpc --bench cpu_per_call

#[path = "../tests/common.rs"]
mod common;

use common::*;
use prost::Message;
use std::time::{Duration, Instant};

const CONCURRENCY: [usize; 3] = [1, 16, 64];

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// One run: `calls` calls at `concurrency` on one connection; (server CPU µs per call, calls/s).
async fn run(srv: &ServerProcess, client: &Client, bytes: &[u8], concurrency: usize, calls: usize) -> (f64, f64) {
    let per_task = calls / concurrency;
    let t0 = srv.cpu_ticks();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (mut c, bytes) = (client.clone(), bytes.to_vec());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                dispatch(&mut c, bytes.clone()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wall = start.elapsed();
    let ticks = srv.cpu_ticks() - t0;
    let n = (per_task * concurrency) as f64;
    (ticks as f64 / ticks_per_second() * 1e6 / n, n / wall.as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("CPU_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let calls: usize = std::env::var("CPU_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(8000);
    let mut builds = vec![("this build".to_owned(), server_binary())];
    if let Ok(other) = std::env::var("COPROCESS_GRPC_COMPARE") {
        builds.insert(0, ("compared".to_owned(), other));
    }
    let object = hmac_object(HMAC_SIGNATURE).encode_to_vec();
    let dir = scratch("cpu-per-call");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let servers: Vec<ServerProcess> = builds
        .iter()
        .map(|(_, bin)| {
            std::env::set_var("COPROCESS_GRPC_BIN", bin);
            ServerProcess::start(&dir, &hmac_config(), &[], None)
        })
        .collect();
    let clients: Vec<Client> = rt.block_on(async {
        let mut v = Vec::new();
        for s in &servers {
            let mut c = tcp_client(s.tcp).await;
            for _ in 0..2000 {
                dispatch(&mut c, object.clone()).await.unwrap();
            }
            v.push(c);
        }
        v
    });
    // results[build][concurrency] = per-round (µs per call, calls/s)
    let mut results = vec![vec![Vec::new(); CONCURRENCY.len()]; builds.len()];
    for round in 0..rounds {
        for (b, srv) in servers.iter().enumerate() {
            for (i, &c) in CONCURRENCY.iter().enumerate() {
                let r = rt.block_on(run(srv, &clients[b], &object, c, calls));
                eprintln!("round {round} {:>10} c={c:<3} {:7.1} µs CPU/call {:8.0} calls/s", builds[b].0, r.0, r.1);
                results[b][i].push(r);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "server CPU per call (median of {rounds} rounds, {calls} calls each, HMAC-auth Object, one TCP connection)"
    );
    let mut medians = vec![vec![0.0; CONCURRENCY.len()]; builds.len()];
    for (b, (label, bin)) in builds.iter().enumerate() {
        for (i, &c) in CONCURRENCY.iter().enumerate() {
            let mut cpu: Vec<f64> = results[b][i].iter().map(|r| r.0).collect();
            let mut rate: Vec<f64> = results[b][i].iter().map(|r| r.1).collect();
            medians[b][i] = median(&mut cpu);
            println!(
                "  {label:>10} c={c:<3} {:7.1} µs/call  {:8.0} calls/s  ({bin})",
                medians[b][i],
                median(&mut rate)
            );
        }
    }
    if builds.len() == 2 {
        for (i, &c) in CONCURRENCY.iter().enumerate() {
            println!("  c={c:<3} compared / this build: {:.2}x", medians[0][i] / medians[1][i]);
        }
    }
    if std::env::var("CPU_STRACE").is_ok_and(|v| v == "1") {
        for (b, srv) in servers.iter().enumerate() {
            let out = dir.join(format!("strace-{b}.txt"));
            let mut strace = std::process::Command::new("strace")
                .args(["-f", "-c", "-o"])
                .arg(&out)
                .args(["-p", &srv.pid.to_string()])
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("strace");
            std::thread::sleep(Duration::from_millis(1000));
            let n = 4000;
            rt.block_on(run(srv, &clients[b], &object, 1, n));
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(strace.id() as i32, libc::SIGINT);
            }
            let _ = strace.wait();
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let total = text.lines().find(|l| l.trim_end().ends_with("total")).and_then(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(3).and_then(|c| c.parse::<f64>().ok())
            });
            println!(
                "  {:>10} system calls per call at c=1: {:.2} (strace -f -c over {n} calls)",
                builds[b].0,
                total.map_or(f64::NAN, |t| t / n as f64)
            );
            // Each system call made at least once per ten calls: name and calls per call.
            for line in text.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                let Some(count) = f.get(3).and_then(|c| c.parse::<f64>().ok()) else { continue };
                let name = f.last().unwrap_or(&"");
                if count >= n as f64 / 10.0 && *name != "total" {
                    println!("    {name:<14} {:.2} per call", count / n as f64);
                }
            }
        }
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
