"""`make bench-compare`: the library's Dispatch of the HMACSignatureAuth hook next to its
floors and its peers, in one run, on the same Object bytes, and one table of the results.

Run by the Makefile (which builds the library, the native driver, the virtualenv and the
generated Python modules first):

    python bench/compare.py --driver DRIVER --gen GENDIR --objects OBJDIR --out bench/results.md
        [--rounds 7] [--seconds 0.4] [--py-seconds 0.5] [--go-dir go] [--go-benchtime 1s]
        [--go-count 3] [--no-go]

Order: write the Objects; start the gRPC server (127.0.0.1 and a unix socket); the verdict
smoke check (library, Python in-process, Python over gRPC: same verdicts and answers); then
ROUNDS rounds, each running every native and Python peer once at 1 and 2 threads, so that
load from other work on the machine falls on all peers alike; then the Go benchmarks of
go/coprocess (whatever exist; labelled by name). Each figure in the table is the median over
the rounds of that round's median / p99 / throughput. Prints the table and writes it to --out.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.path.join(HERE, "peers")

LABELS = {
    "dispatch": "**libcoprocess `Dispatch`** (C ABI, called from a native driver)",
    "floor-copy": "floor: C call copying the message (malloc + memcpy, free)",
    "hmac-sha512": "floor: HMAC-SHA512 alone (keyed state cloned, constant-time compare)",
    "python-embedded": "embedded Python: bytes → protobuf parse → same auth → serialise",
    "python-protobuf": "embedded Python: its protobuf parse + serialise alone (upb), no auth",
    "grpc-tcp": "gRPC, Python Dispatcher server, 127.0.0.1 TCP (client round trip)",
    "grpc-unix": "gRPC, Python Dispatcher server, unix socket (client round trip)",
}
ORDER = ["dispatch", "floor-copy", "hmac-sha512", "python-embedded", "python-protobuf", "grpc-tcp", "grpc-unix"]


def log(msg):
    print("bench-compare: " + msg, file=sys.stderr, flush=True)


def jsonl(cmd, **kw):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, **kw).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def fmt_ns(ns):
    if ns is None:
        return "—"
    if ns < 1000:
        return "%.0f ns" % ns
    if ns < 1e6:
        return "%.2f µs" % (ns / 1e3) if ns < 1e4 else "%.1f µs" % (ns / 1e3)
    return "%.2f ms" % (ns / 1e6)


def fmt_rate(r):
    if r is None:
        return "—"
    if r >= 1e6:
        return "%.2f M/s" % (r / 1e6)
    if r >= 1e3:
        return "%.1f k/s" % (r / 1e3)
    return "%.0f /s" % r


def fmt_cpus(x):
    return "—" if x is None else "%.2f" % x


def fmt_ratio(x):
    if x is None:
        return "—"
    if x >= 100:
        return "%.0fx" % x
    if x >= 10:
        return "%.1fx" % x
    if x >= 0.1:
        return "%.2fx" % x
    return "%.3fx" % x


class GrpcServer:
    """The gRPC Dispatcher server, started and stopped by this process (by its pid)."""

    def __init__(self, python, sock):
        self.proc = subprocess.Popen([python, os.path.join(PEERS, "grpc_server.py"), "--unix", sock, "--max-seconds", "900"],
                                     stdout=subprocess.PIPE, text=True)
        timer = threading.Timer(60, self.proc.kill)
        timer.start()
        line = self.proc.stdout.readline()
        timer.cancel()
        if not line:
            raise RuntimeError("the gRPC server did not start")
        self.targets = json.loads(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_go(go_dir, benchtime, count):
    """Run the Go benchmarks of go/coprocess; {(name, procs): [ns/op, ...]} and the raw output."""
    cmd = ["go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", benchtime, "-count", str(count),
           "-cpu", "1,2", "./coprocess/"]
    log("Go benchmarks: (cd %s && %s)" % (go_dir, " ".join(cmd)))
    p = subprocess.run(cmd, cwd=go_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:])
        raise RuntimeError("the Go benchmarks failed")
    res = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^(Benchmark\S+?)(?:-(\d+))?\s+\d+\s+([\d.]+) ns/op", line)
        if m:
            res.setdefault((m.group(1), int(m.group(2) or 1)), []).append(float(m.group(3)))
    if not res:
        raise RuntimeError("no Go benchmark result parsed")
    return res, p.stdout


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "%d vCPUs (%s), %s, Linux %s" % (os.cpu_count(), model, "%.0f GiB" % (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
                                            platform.release())


def versions():
    import google.protobuf
    import grpc
    from google.protobuf.internal import api_implementation
    go = shutil.which("go") and subprocess.run(["go", "version"], stdout=subprocess.PIPE, text=True).stdout.split()[2]
    return "CPython %s, protobuf %s (%s backend), grpcio %s, %s" % (
        platform.python_version(), google.protobuf.__version__, api_implementation.Type(), grpc.__version__, go or "no Go")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--gen", required=True, help="directory of the generated coprocess_pb2*.py")
    ap.add_argument("--objects", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.4, help="per native peer, thread count and round")
    ap.add_argument("--py-seconds", type=float, default=0.5, help="per Python peer, thread count and round")
    ap.add_argument("--go-dir", default=os.path.join(ROOT, "go"))
    ap.add_argument("--go-benchtime", default="1s")
    ap.add_argument("--go-count", type=int, default=3)
    ap.add_argument("--no-go", action="store_true")
    args = ap.parse_args()

    started = time.time()
    load_start = os.getloadavg()
    py = sys.executable
    os.environ.pop("COPROCESS_CONFIG", None)  # the library runs with config_data only
    os.environ["PYTHONPATH"] = os.pathsep.join([args.gen, PEERS, HERE])
    sys.path[:0] = [args.gen, PEERS, HERE]
    import smoke

    subprocess.run([py, os.path.join(HERE, "objects.py"), args.objects], check=True)
    obj = os.path.join(args.objects, "bench.bin")
    size = os.path.getsize(obj)

    sockdir = tempfile.mkdtemp(prefix="coprocess-bench-")
    server = GrpcServer(py, os.path.join(sockdir, "dispatcher.sock"))
    try:
        log("verdict smoke check (library, Python in-process, Python over gRPC)")
        smoke_rows, ok = smoke.check(args.driver, args.objects, server.targets["unix"])
        for r in smoke_rows:
            log("  %-22s expected %-13s library %-13s python %-13s grpc %-13s %s" % tuple(map(str, r)))
        if not ok:
            raise SystemExit("bench-compare: the verdict smoke check failed")

        rounds = {}
        for r in range(args.rounds):
            log("round %d/%d" % (r + 1, args.rounds))
            results = jsonl([args.driver, "bench", obj, "--seconds", str(args.seconds)])
            results += jsonl([py, os.path.join(PEERS, "embedded_bench.py"), obj, "--seconds", str(args.py_seconds)])
            for label, target in (("grpc-tcp", server.targets["tcp"]), ("grpc-unix", server.targets["unix"])):
                results += jsonl([py, os.path.join(PEERS, "grpc_bench.py"), obj, "--target", target, "--label", label,
                                  "--seconds", str(args.py_seconds)])
            for res in results:
                rounds.setdefault((res["peer"], res["threads"]), []).append(res)
    finally:
        server.stop()
        shutil.rmtree(sockdir, ignore_errors=True)

    go, go_raw = ({}, "")
    if not args.no_go:
        go, go_raw = run_go(args.go_dir, args.go_benchtime, args.go_count)
        with open(os.path.join(os.path.dirname(args.objects), "go-bench.txt"), "w") as f:
            f.write(go_raw)

    def agg(peer, t, key):
        rs = rounds.get((peer, t))
        return statistics.median(x[key] for x in rs) if rs else None

    def scaling_of(peer, per_cpu=False):
        """Median over rounds of that round's 2-thread / 1-thread throughput (the two runs of a
        round are adjacent in time, so they saw about the same load); per_cpu: of calls per
        CPU-second the threads got instead of per wall second."""
        one, two = rounds.get((peer, 1)), rounds.get((peer, 2))
        if not one or not two:
            return None
        if per_cpu:
            return statistics.median((b["calls"] / b["cpu_s"]) / (a["calls"] / a["cpu_s"]) for a, b in zip(one, two))
        return statistics.median(b["throughput"] / a["throughput"] for a, b in zip(one, two))

    def cpus_of(peer, threads=2):
        rs = rounds.get((peer, threads))
        return statistics.median(b["cpu_s"] / b["wall_s"] for b in rs) if rs and "cpu_s" in rs[0] else None

    base_lat = agg("dispatch", 1, "median_ns")
    base_tp = {t: agg("dispatch", t, "throughput") for t in (1, 2)}
    rows = []
    for peer in ORDER:
        m1, p1, tp1 = agg(peer, 1, "median_ns"), agg(peer, 1, "p99_ns"), agg(peer, 1, "throughput")
        m2, p2, tp2 = agg(peer, 2, "median_ns"), agg(peer, 2, "p99_ns"), agg(peer, 2, "throughput")
        rows.append((peer, LABELS[peer], m1, p1, tp1, m2, p2, tp2))
    for (name, procs) in sorted(k for k in go if k[1] == 1):
        ns1 = statistics.median(go[(name, 1)])
        ns2 = statistics.median(go[(name, 2)]) if (name, 2) in go else None
        rows.append((None, "Go `%s` (go test -bench, ns/op)" % name, ns1, None, 1e9 / ns1, None, None, 1e9 / ns2 if ns2 else None))

    head = ("| path (per hook call) | median, 1 thread | p99, 1 thread | calls/s, 1 thread | median, 2 threads | p99, 2 threads "
            "| calls/s, 2 threads | 2 thr / 1 thr | vs Dispatch, 1 thread | vs Dispatch, 2 threads |")
    lines = [head, "| --- |" + " ---: |" * 9]
    for peer, label, m1, p1, tp1, m2, p2, tp2 in rows:
        scale = scaling_of(peer) if peer else (tp2 / tp1 if tp1 and tp2 else None)
        r1 = m1 / base_lat if m1 and base_lat else None
        r2 = base_tp[2] / tp2 if tp2 and base_tp[2] else None
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, fmt_ns(m1), fmt_ns(p1), fmt_rate(tp1), fmt_ns(m2), fmt_ns(p2), fmt_rate(tp2), fmt_ratio(scale),
            fmt_ratio(r1), fmt_ratio(r2)))
    table = "\n".join(lines)

    timer = agg("timer", 1, "median_ns")
    load_end = os.getloadavg()
    scaling, control = scaling_of("dispatch"), scaling_of("hmac-sha512")
    eff, ceff = scaling_of("dispatch", per_cpu=True), scaling_of("hmac-sha512", per_cpu=True)
    cpus = cpus_of("dispatch")
    scaling_text = (
        "**Library scaling**: `Dispatch` throughput at 2 threads / 1 thread = **%s** (median over rounds; 2.00x would be "
        "perfect). 1 thread got %s CPU and 2 threads got %s CPUs of the machine's 2 (their CPU time / wall time; other work had the rest) "
        "and per CPU-second did %s the 1-thread rate. Control, the HMAC alone, which shares nothing between threads: "
        "%s wall, %s per CPU-second."
        % (fmt_ratio(scaling), fmt_cpus(cpus_of("dispatch", 1)), fmt_cpus(cpus), fmt_ratio(eff), fmt_ratio(control), fmt_ratio(ceff)))
    if cpus and cpus < 1.6:
        scaling_text += (" Other work held most of the second core during this run, so it could not show scaling: rerun on a "
                         "quieter machine (the per-CPU-second figure only covers the time the 2 threads did run at once).")
    summary = [scaling_text]
    fc, fh = agg("floor-copy", 1, "median_ns"), agg("hmac-sha512", 1, "median_ns")
    if base_lat and fc and fh:
        summary.append("**Distance to the floor**: Dispatch's median is %s the copy floor plus the HMAC alone (%s + %s); "
                       "the %s above it is the library's own work (reading the Object, the signature header, configuration "
                       "look-up, encoding the session and token, allocation)." % (
                           fmt_ratio(base_lat / (fc + fh)), fmt_ns(fc), fmt_ns(fh), fmt_ns(base_lat - fc - fh)))
    for peer in ("python-embedded", "grpc-tcp", "grpc-unix"):
        m = agg(peer, 1, "median_ns")
        tp2 = agg(peer, 2, "throughput")
        if m and base_lat:
            summary.append("Dispatch vs %s: **%s** faster per call (median, 1 thread), **%s** the throughput at 2 threads." % (
                peer, fmt_ratio(m / base_lat), fmt_ratio(base_tp[2] / tp2) if tp2 else "—"))
    smoke_md = ["| Object | expected | library | Python | Python over gRPC | decoded answers |", "| --- | --- | --- | --- | --- | --- |"]
    smoke_md += ["| `%s` | %s | %s | %s | %s | %s |" % tuple(map(str, r)) for r in smoke_rows]

    md = """# `make bench-compare` results

Generated by `make bench-compare` on %(date)s in %(secs).0f s.
Machine: %(machine)s; load average %(l0).1f at the start, %(l1).1f at the end (other engineers'
builds share it: figures are noisy, ratios are within this one run).
Software: %(versions)s.

Every peer gets the same %(size)d-byte CustomKeyCheck Object (`bench/objects.py`: 13 browser-like
headers, a query, `spec` with a `config_data` holding the HMACSignatureAuth section and a session
template; hmac-sha512 over `date`, a valid signature) and runs the same logic: parse the
`Signature` header, build the signing string, HMAC with the configured key, compare in constant
time, answer the session template with `hmac_enabled`/`hmac_secret`/`last_updated` and
`metadata["token"]`. Per-call latency is timed around each call; throughput is the calls of
all threads over the wall time. %(rounds)d rounds, peers interleaved within each round; every
figure is the median over the rounds ("2 thr / 1 thr": of each round's ratio). "vs Dispatch" is the peer's median latency ÷ Dispatch's
(1 thread) and Dispatch's throughput ÷ the peer's (2 threads): above 1x the peer is slower.

%(table)s

%(summary)s

Notes:
- Native rows: `bench/driver` (Rust) calls `Dispatch` through the C ABI with the serialised
  Object and `free`s the malloc'd answer, as a host does; the clock reads around each call cost
  about %(timer)s (included). The floors are a C function in its own shared library that
  mallocs a copy of the message and returns it, and the HMAC-SHA512 of the signing string
  alone with the library's own crates (RustCrypto hmac 0.12 / sha2 0.10).
- Embedded Python: `bench/peers/hmac_plugin.py` in one CPython process, timed in-process; at 2
  threads both threads share the interpreter (and its GIL), as a gateway's goroutines share
  its embedded interpreter.
- gRPC: `bench/peers/grpc_server.py` (grpcio, thread pool of 4, the same Python plugin) in its
  own process; the client (`bench/peers/grpc_bench.py`, Python grpcio, one channel shared by
  the threads) sends the Object's bytes and times the round trip. Loopback and unix socket
  only; request counts bounded.
- Go rows: `go test -bench` in `go/coprocess` (-benchtime %(gobt)s, -count %(goc)d, -cpu 1,2), labelled by
  benchmark name: **they use the Go benchmarks' own Objects** (see the benchmark source and
  docs/go-host.md, "Go benchmarks"), report the mean ns/op of the loop (no p99), and their 2-thread column is
  `b.RunParallel` with GOMAXPROCS=2 (throughput = 10^9 / ns/op). Raw output:
  `build/bench/go-bench.txt`.

Verdict smoke check (the same Objects through the library and the Python peer, in-process
and over gRPC; the decoded answers are compared whole, `last_updated` set aside):

%(smoke)s
""" % dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), secs=time.time() - started,
           machine=machine(), l0=load_start[0], l1=load_end[0], versions=versions(), size=size, rounds=args.rounds,
           table=table, summary="\n".join("- " + s for s in summary), timer=fmt_ns(timer), gobt=args.go_benchtime,
           goc=args.go_count, smoke="\n".join(smoke_md))
    with open(args.out, "w") as f:
        f.write(md)
    print(table)
    print()
    for s in summary:
        print("- " + s.replace("**", ""))
    log("written to %s" % os.path.relpath(args.out, ROOT))


if __name__ == "__main__":
    main()
