//! The native side of `make bench-compare`: times, per call, `Dispatch` of libcoprocess.so
//! through its C ABI (exactly as a host calls it: borrowed input, malloc'd answer, free(3)),
//! and the floors next to it, at a given number of threads.
//!
//! ```text
//! driver answer IN OUT
//!     Dispatch IN once and write the answer to OUT (the verdict smoke check decodes it).
//! driver lib
//!     Print the path of the libcoprocess.so this process loaded (the RUNPATH's, or the one
//!     LD_LIBRARY_PATH names: how bench-compare runs the same driver against a baseline).
//! driver bench OBJECT [--peers dispatch,floor-copy,hmac-sha512,timer] [--threads 1,2]
//!                     [--seconds 0.4] [--rounds 1] [--warmup-ms 100]
//!     For each round, peer and thread count: every thread calls the peer in a loop for
//!     --seconds, timing each call; prints one JSON line per (round, peer, threads) with the
//!     median and p99 of the per-call latencies of all threads, the call count, and the
//!     throughput (calls of all threads / wall time), and the CPU time the threads got
//!     (CLOCK_THREAD_CPUTIME_ID) next to the wall time: on a shared machine that tells how
//!     much of the 2 cores the 2 threads actually had; and the path of the library loaded.
//! ```
//!
//! Peers:
//! - `dispatch`: `Dispatch(OBJECT)` then `free` of the answer (checked once to return 0 and
//!   an answer longer than the input: the session and token appended);
//! - `floor-copy`: `FloorCopy` from a C shared library: malloc + memcpy of the message and
//!   return it, then `free` (the cost of any ABI that answers with a new buffer);
//! - `hmac-sha512`: the HMAC computation alone, as the library does it: the keyed
//!   HMAC-SHA512 state cloned, the signing string `date: <Date>` fed, the tag compared in
//!   constant time with the reference vector (RustCrypto hmac 0.12 / sha2 0.10, as the library);
//! - `timer`: an empty call, i.e. the cost of the two clock reads around each timed call.

use hmac::{Hmac, Mac};
use sha2::Sha512;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

#[repr(C)]
struct CoProcessMessage {
    p_data: *mut c_void,
    length: c_int,
}

extern "C" {
    fn Dispatch(object: *mut CoProcessMessage, new_object: *mut CoProcessMessage) -> c_int;
    fn CoProcessLastError() -> *const c_char;
    fn FloorCopy(object: *mut CoProcessMessage, new_object: *mut CoProcessMessage) -> c_int;
    fn free(p: *mut c_void);
    fn clock_gettime(clock: c_int, ts: *mut Timespec) -> c_int;
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
}

/// glibc's `Dl_info`.
#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

/// The file the dynamic linker loaded `Dispatch` from.
fn library_path() -> String {
    let mut info = DlInfo {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: Dispatch is a function of a loaded object; info is a valid out-pointer.
    let rc = unsafe { dladdr(Dispatch as *const c_void, &mut info) };
    if rc == 0 || info.dli_fname.is_null() {
        die("dladdr(Dispatch) failed");
    }
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    std::fs::canonicalize(&path).map_or(path, |p| p.display().to_string())
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// Linux's CLOCK_THREAD_CPUTIME_ID.
const CLOCK_THREAD_CPUTIME_ID: c_int = 3;

/// CPU time this thread has run, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer; the clock exists on Linux.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Host function: refusals log at debug level; a gateway filtering debug drops them, so does
/// this driver (without it the library's fallback would print every line to stderr).
#[no_mangle]
pub extern "C" fn CoProcessLog(_msg: *mut c_char, _level: *mut c_char) {}

/// The reference vector: key `c2VjcmV0`, `date: Fri, 03 May 2024 12:00:42 GMT`, HMAC-SHA512.
const SIGNING_STRING: &[u8] = b"date: Fri, 03 May 2024 12:00:42 GMT";
const KEY: &[u8] = b"c2VjcmV0";
const TAG_HEX: &str = "f64c012bfcab8db48724323b20d0210668472d31d10e421edae4561c43fc6e040542f7d7464b26eadd8c1de2d4ca4f68a2c5836720b5ec06c678ff0416aae9f8";

fn tag() -> Vec<u8> {
    (0..TAG_HEX.len()).step_by(2).map(|i| u8::from_str_radix(&TAG_HEX[i..i + 2], 16).unwrap()).collect()
}

/// One call through a Dispatch-shaped function; returns the answer length.
fn call(
    f: unsafe extern "C" fn(*mut CoProcessMessage, *mut CoProcessMessage) -> c_int,
    input: &[u8],
) -> Result<usize, String> {
    let mut inp = CoProcessMessage { p_data: input.as_ptr() as *mut c_void, length: input.len() as c_int };
    let mut out = CoProcessMessage { p_data: std::ptr::null_mut(), length: 0 };
    // SAFETY: the input is borrowed for the call; the answer is malloc'd and freed here.
    let rc = unsafe { f(&mut inp, &mut out) };
    if rc != 0 {
        let msg = unsafe { CStr::from_ptr(CoProcessLastError()) }.to_string_lossy().into_owned();
        return Err(format!("returned {rc}: {msg}"));
    }
    let n = out.length as usize;
    unsafe { free(out.p_data) };
    Ok(n)
}

#[derive(Clone, Copy)]
enum Peer {
    Dispatch,
    FloorCopy,
    Hmac,
    Timer,
}

impl Peer {
    fn parse(s: &str) -> Peer {
        match s {
            "dispatch" => Peer::Dispatch,
            "floor-copy" => Peer::FloorCopy,
            "hmac-sha512" => Peer::Hmac,
            "timer" => Peer::Timer,
            _ => die(&format!("unknown peer {s:?}")),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Peer::Dispatch => "dispatch",
            Peer::FloorCopy => "floor-copy",
            Peer::Hmac => "hmac-sha512",
            Peer::Timer => "timer",
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("driver: {msg}");
    std::process::exit(2)
}

/// Per thread and run: sub-microsecond peers stop here before --seconds (the throughput is
/// computed over the time actually run).
const MAX_SAMPLES: usize = 2 << 20;

struct ThreadResult {
    samples: Vec<u32>,
    start: Instant,
    end: Instant,
    cpu_s: f64,
}

/// One thread's timed loop.
fn run_thread(
    peer: Peer,
    input: &[u8],
    keyed: &Hmac<Sha512>,
    tag: &[u8],
    warmup: Duration,
    secs: Duration,
    barrier: &Barrier,
) -> ThreadResult {
    let once = || match peer {
        Peer::Dispatch => {
            black_box(call(Dispatch, black_box(input)).unwrap_or_else(|e| die(&e)));
        }
        Peer::FloorCopy => {
            black_box(call(FloorCopy, black_box(input)).unwrap_or_else(|e| die(&e)));
        }
        Peer::Hmac => {
            let mut mac = black_box(keyed).clone();
            mac.update(black_box(SIGNING_STRING));
            if mac.verify_slice(black_box(tag)).is_err() {
                die("HMAC-SHA512 of the reference vector does not match");
            }
        }
        Peer::Timer => {
            black_box(());
        }
    };
    // Warm-up: caches, allocator, and the library's per-thread config_data cache.
    let w = Instant::now();
    while w.elapsed() < warmup {
        once();
    }
    let mut samples = Vec::with_capacity(MAX_SAMPLES);
    barrier.wait();
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let deadline = start + secs;
    let mut t0 = start;
    loop {
        once();
        let t1 = Instant::now();
        samples.push((t1 - t0).as_nanos().min(u32::MAX as u128) as u32);
        if t1 >= deadline || samples.len() >= MAX_SAMPLES {
            let cpu_s = thread_cpu_seconds() - cpu0;
            return ThreadResult { samples, start, end: t1, cpu_s };
        }
        t0 = Instant::now();
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn bench(args: &[String]) {
    let mut object = None;
    let mut peers = vec![Peer::Dispatch, Peer::FloorCopy, Peer::Hmac, Peer::Timer];
    let mut threads = vec![1usize, 2];
    let mut secs = 0.4f64;
    let mut rounds = 1usize;
    let mut warmup_ms = 100u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| die(&format!("{a} needs a value")));
        match a.as_str() {
            "--peers" => peers = val().split(',').map(Peer::parse).collect(),
            "--threads" => {
                threads = val().split(',').map(|t| t.parse().unwrap_or_else(|_| die("bad --threads"))).collect()
            }
            "--seconds" => secs = val().parse().unwrap_or_else(|_| die("bad --seconds")),
            "--rounds" => rounds = val().parse().unwrap_or_else(|_| die("bad --rounds")),
            "--warmup-ms" => warmup_ms = val().parse().unwrap_or_else(|_| die("bad --warmup-ms")),
            s if !s.starts_with("--") && object.is_none() => object = Some(s.to_owned()),
            s => die(&format!("unexpected argument {s:?}")),
        }
    }
    let path = object.unwrap_or_else(|| die("bench needs an Object file"));
    let input = std::fs::read(&path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    let keyed = Hmac::<Sha512>::new_from_slice(KEY).expect("any key length");
    let tag = tag();
    // Check once that each peer does what it claims before timing it.
    let n = call(Dispatch, &input).unwrap_or_else(|e| die(&format!("Dispatch {e}")));
    if n <= input.len() {
        die("Dispatch answered no longer than its input: the Object did not authenticate");
    }
    if call(FloorCopy, &input) != Ok(input.len()) {
        die("FloorCopy failed");
    }
    let lib = library_path();
    for round in 0..rounds {
        for &peer in &peers {
            for &t in &threads {
                let barrier = Barrier::new(t);
                let results: Vec<ThreadResult> = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..t)
                        .map(|_| {
                            s.spawn(|| {
                                run_thread(
                                    peer,
                                    &input,
                                    &keyed,
                                    &tag,
                                    Duration::from_millis(warmup_ms),
                                    Duration::from_secs_f64(secs),
                                    &barrier,
                                )
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().expect("bench thread")).collect()
                });
                let start = results.iter().map(|r| r.start).min().unwrap();
                let end = results.iter().map(|r| r.end).max().unwrap();
                let cpu_s: f64 = results.iter().map(|r| r.cpu_s).sum();
                let mut all: Vec<u32> = results.into_iter().flat_map(|r| r.samples).collect();
                all.sort_unstable();
                let wall = (end - start).as_secs_f64();
                println!(
                    "{{\"peer\":\"{}\",\"threads\":{},\"round\":{},\"calls\":{},\"median_ns\":{},\"p99_ns\":{},\"throughput\":{:.1},\"cpu_s\":{:.4},\"wall_s\":{:.4},\"bytes\":{},\"lib\":{:?}}}",
                    peer.name(),
                    t,
                    round,
                    all.len(),
                    percentile(&all, 0.5),
                    percentile(&all, 0.99),
                    all.len() as f64 / wall,
                    cpu_s,
                    wall,
                    input.len(),
                    lib
                );
            }
        }
    }
}

fn answer(args: &[String]) {
    let [inp, out] = args else { die("usage: driver answer IN OUT") };
    let input = std::fs::read(inp).unwrap_or_else(|e| die(&format!("{inp}: {e}")));
    let mut m = CoProcessMessage { p_data: input.as_ptr() as *mut c_void, length: input.len() as c_int };
    let mut o = CoProcessMessage { p_data: std::ptr::null_mut(), length: 0 };
    // SAFETY: as in `call`; the answer is copied before it is freed.
    let rc = unsafe { Dispatch(&mut m, &mut o) };
    if rc != 0 {
        let msg = unsafe { CStr::from_ptr(CoProcessLastError()) }.to_string_lossy().into_owned();
        die(&format!("Dispatch of {inp} returned {rc}: {msg}"));
    }
    let bytes = unsafe { std::slice::from_raw_parts(o.p_data as *const u8, o.length as usize) }.to_vec();
    unsafe { free(o.p_data) };
    std::fs::write(out, bytes).unwrap_or_else(|e| die(&format!("{out}: {e}")));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench(&args[1..]),
        Some("answer") => answer(&args[1..]),
        Some("lib") => println!("{}", library_path()),
        _ => die("usage: driver bench OBJECT [options] | driver answer IN OUT | driver lib"),
    }
}
