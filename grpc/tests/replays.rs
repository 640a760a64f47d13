//! ReqHub replay protection through the real binary with a real redis-server: a request
//! replayed at the same instant on two replicas passes exactly once (the nonce is stored with
//! one `SET .. NX`), and a Redis outage fails every ReqHub request closed, hangs nothing and
//! heals by itself. Each test prints a `FIGURES` line.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// 20 rounds of 20 copies of one signed request sent at once: exactly one passes per round.
async fn rounds(clients: &[Client], rounds: usize) -> Vec<(usize, usize, usize)> {
    let mut results = Vec::new();
    for _ in 0..rounds {
        let object = reqhub_object();
        let start = Arc::new(tokio::sync::Barrier::new(clients.len()));
        let mut calls = Vec::new();
        for c in clients {
            let (mut c, object, start) = (c.clone(), object.clone(), start.clone());
            calls.push(tokio::spawn(async move {
                start.wait().await;
                dispatch(&mut c, object).await.map(|a| verdict(&a))
            }));
        }
        let (mut passed, mut replayed, mut other) = (0, 0, 0);
        for call in calls {
            match call.await.unwrap() {
                Ok((-1, _)) => passed += 1,
                Ok((403, e)) if e.starts_with("merchant_signature_invalid: ClientNonce was already used") => {
                    replayed += 1
                }
                r => {
                    eprintln!("unexpected answer: {r:?}");
                    other += 1
                }
            }
        }
        results.push((passed, replayed, other));
    }
    results
}

#[test]
fn a_replayed_request_passes_exactly_once_across_replicas() {
    let _one = exclusive();
    let Some(redis) = Redis::or_skip() else { return };
    let dir = scratch("replays");
    let args = ["--redis-url", &redis.url()];
    let a = ServerProcess::start(&dir, &reqhub_config(), &args, None);
    let b = ServerProcess::start(&dir, &reqhub_config(), &args, None);
    let rt = runtime();
    let (two, one) = rt.block_on(async {
        let mut split = Vec::new();
        for i in 0..20 {
            split.push(tcp_client(if i % 2 == 0 { a.tcp } else { b.tcp }).await);
        }
        let mut single = Vec::new();
        for _ in 0..20 {
            single.push(tcp_client(a.tcp).await);
        }
        (rounds(&split, 20).await, rounds(&single, 20).await)
    });
    for (label, results) in [("two replicas", &two), ("one replica", &one)] {
        let passes: Vec<usize> = results.iter().map(|r| r.0).collect();
        eprintln!(
            "FIGURES replays {label}: {} rounds x 20 copies, passes per round {passes:?}, refused as replays {}, other {}",
            results.len(),
            results.iter().map(|r| r.1).sum::<usize>(),
            results.iter().map(|r| r.2).sum::<usize>()
        );
        for (round, &(passed, replayed, other)) in results.iter().enumerate() {
            assert_eq!((passed, replayed, other), (1, 19, 0), "{label}, round {round}");
        }
    }
}

struct Sample {
    at: Duration,
    latency: Duration,
    code: i32,
    error: String,
}

#[test]
fn a_redis_outage_fails_reqhub_closed_and_heals_by_itself() {
    let _one = exclusive();
    let Some(redis) = Redis::or_skip() else { return };
    let dir = scratch("outage");
    let timeout_ms = 300u64;
    let srv = ServerProcess::start(
        &dir,
        &reqhub_config(),
        &["--redis-url", &redis.url(), "--redis-timeout-ms", &timeout_ms.to_string()],
        None,
    );
    let (down_at, up_at, end) = (Duration::from_millis(1500), Duration::from_millis(4500), Duration::from_millis(8500));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let rt = runtime();
    let (before, after, restarted) = rt.block_on(async {
        let start = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..16 {
            let mut c = tcp_client(srv.tcp).await;
            let samples = samples.clone();
            clients.push(tokio::spawn(async move {
                while start.elapsed() < end {
                    let at = start.elapsed();
                    let t = Instant::now();
                    let (code, error) = match dispatch(&mut c, reqhub_object()).await {
                        Ok(a) => verdict(&a),
                        Err(s) => (-100, s.to_string()),
                    };
                    samples.lock().unwrap().push(Sample { at, latency: t.elapsed(), code, error });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        tokio::time::sleep_until((start + down_at - Duration::from_millis(100)).into()).await;
        let before = (srv.threads(), srv.fds());
        tokio::time::sleep_until((start + down_at).into()).await;
        let port = redis.kill();
        tokio::time::sleep_until((start + up_at).into()).await;
        let restarted = Redis::on(port).expect("redis-server restarts");
        let restarted_at = start.elapsed();
        tokio::time::sleep_until((start + end - Duration::from_millis(200)).into()).await;
        let after = (srv.threads(), srv.fds());
        for c in clients {
            c.await.unwrap();
        }
        (before, after, (restarted, restarted_at))
    });
    let (_redis_again, restarted_at) = restarted;
    let samples = samples.lock().unwrap();
    let outage = |s: &&Sample| s.at >= down_at + Duration::from_millis(50) && s.at + s.latency < restarted_at;
    let in_outage: Vec<&Sample> = samples.iter().filter(outage).collect();
    let passed_in_outage = in_outage.iter().filter(|s| s.code == -1).count();
    let unavailable =
        in_outage.iter().filter(|s| s.code == 503 && s.error.starts_with("verification_unavailable")).count();
    let first_pass_after =
        samples.iter().filter(|s| s.at >= restarted_at && s.code == -1).map(|s| s.at + s.latency).min();
    let recovery = first_pass_after.map(|t| t - restarted_at);
    let max_latency = samples.iter().map(|s| s.latency).max().unwrap_or_default();
    let errors = samples.iter().filter(|s| s.code == -100).count();
    let not_passed_before = samples.iter().filter(|s| s.at + s.latency < down_at && s.code != -1).count();
    let last_second: Vec<&Sample> = samples.iter().filter(|s| s.at >= end - Duration::from_secs(1)).collect();
    let error_lines = srv.lines.lock().unwrap().iter().filter(|l| l.contains("\"level\":\"error\"")).count();
    let opened = srv.count_lines("circuit breaker open");
    let closed = srv.count_lines("circuit breaker closed");
    eprintln!(
        "FIGURES outage: {} requests, outage {:?}, in the outage {} requests: 503 verification_unavailable {}, passed {}; \
         max latency {:?}, gRPC errors {}, recovery after restart {:?}, last second {} requests {} passed, \
         threads/fds before {:?} after {:?}, error lines {}, breaker opened {} closed {}",
        samples.len(),
        restarted_at - down_at,
        in_outage.len(),
        unavailable,
        passed_in_outage,
        max_latency,
        errors,
        recovery,
        last_second.len(),
        last_second.iter().filter(|s| s.code == -1).count(),
        before,
        after,
        error_lines,
        opened,
        closed,
    );
    assert_eq!(errors, 0, "every request is answered");
    assert_eq!(not_passed_before, 0, "before the outage every request passes");
    assert!(!in_outage.is_empty());
    assert_eq!(passed_in_outage, 0, "no request passes while Redis is down");
    assert_eq!(unavailable, in_outage.len(), "every request in the outage is 503 verification_unavailable");
    assert!(max_latency <= Duration::from_millis(timeout_ms + 750), "a request hung: {max_latency:?}");
    assert!(recovery.is_some_and(|r| r <= Duration::from_secs(4)), "no recovery: {recovery:?}");
    assert!(last_second.iter().all(|s| s.code == -1), "after recovery every request passes");
    assert_eq!(after.0, before.0, "threads");
    // The pool of Redis connections may hold up to one per client (16) more or fewer than when
    // it was counted before; a leak would grow with the 2000-odd failed operations.
    assert!(after.1 <= before.1 + 16, "file descriptors grew from {} to {}", before.1, after.1);
    assert!(error_lines <= 4, "{error_lines} error lines for one outage");
    assert_eq!((opened, closed), (1, 1), "one line when the breaker opens, one when it closes");
}
