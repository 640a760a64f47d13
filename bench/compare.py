"""`make bench-compare`: the library's Dispatch of the HMACSignatureAuth hook next to its
floors and its peers, in one run, on the same Object bytes, and the tables of the results.

Run by the Makefile (which builds the library, the native driver, the gRPC server, the Go
peer and load client, the virtualenv, the generated Python modules and, with BASELINE=<ref>,
that commit's library first):

    python bench/compare.py --driver DRIVER --gen GENDIR --objects OBJDIR --out bench/results.md
        [--rounds 7] [--seconds 0.4] [--py-seconds 0.5] [--go-dir go] [--go-benchtime 1s]
        [--go-count 3] [--no-go]
        [--grpc-bin target/release/coprocess-grpc --go-peer GRPCPEER --go-load GRPCLOAD]
        [--grpc-concurrency 1,16,64] [--grpc-calls 50000] [--grpc-seconds 3] [--no-grpc-servers]
        [--baseline-lib DIR --baseline-ref REF] [--no-rsa]

Order: write the Objects; start the gRPC servers (the Python grpcio peer on 127.0.0.1 and a
unix socket; coprocess-grpc and the Go peer on 127.0.0.1); the verdict smoke check (library,
Python in-process, and every gRPC server: same verdicts and answers), the RSA Object's
signature checked with openssl for the current and the baseline library; then ROUNDS rounds,
each running every measurement once, so that load from other work on the machine falls on all
alike: the native driver against the current library (and the baseline's, in alternating
order), the RSA Object through both, `openssl speed rsa2048`, the Python peers at 1 and 2
threads, and the three gRPC servers (in rotating order) under the grpc-go load client at each
concurrency; then the Go benchmarks of go/coprocess (whatever exist; labelled by name). Each
figure is the median over the rounds of that round's figure; ratios are medians of each
round's ratio. Every server is stopped at the end, also on failure (and gets SIGTERM from the
kernel if this process dies). Prints the tables and writes them to --out.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
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
ORDER = ["dispatch", "dispatch-baseline", "floor-copy", "hmac-sha512", "python-embedded", "python-protobuf", "grpc-tcp",
         "grpc-unix"]
# The gRPC servers measured with the grpc-go load client, in table order.
SERVERS = ["coprocess-grpc", "go-grpc", "python-grpc"]
SERVER_LABELS = {
    "coprocess-grpc": "**coprocess-grpc** (Rust, the library in-process)",
    "go-grpc": "Go peer: grpc-go server, HMAC in plain Go",
    "python-grpc": "Python peer: grpcio server (4 threads), HMAC in Python",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print("bench-compare: " + msg, file=sys.stderr, flush=True)


def jsonl(cmd, **kw):
    """The JSON lines a command prints (it must exit 0; kw: env, timeout). The command gets
    SIGTERM if this process dies."""
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent, **kw).stdout
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


def _die_with_parent():
    """In a server's child process before exec: SIGTERM when bench-compare exits, however it
    exits (PR_SET_PDEATHSIG), so no server outlives a killed run."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class Server:
    """A server process started and stopped by this process (by its pid). Its stdout and stderr
    go to files under logdir; `ready(path_of_stream)` is polled until it returns the server's
    addresses (a dict) or the server exits or `timeout` passes."""

    def __init__(self, name, cmd, logdir, ready_stream, ready, env=None, timeout=60):
        self.name = name
        self.out = os.path.join(logdir, name + ".stdout")
        self.err = os.path.join(logdir, name + ".stderr")
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                         preexec_fn=_die_with_parent)
        self.pid = self.proc.pid
        stream = self.out if ready_stream == "stdout" else self.err
        deadline = time.time() + timeout
        while True:
            self.targets = ready(stream)
            if self.targets:
                break
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("%s did not start (%s); its stderr ends:\n%s" % (
                    name, "exited %s" % self.proc.returncode if self.proc.returncode is not None else "timeout", self.tail()))
            time.sleep(0.05)

    def tail(self, n=2000):
        try:
            return open(self.err, errors="replace").read()[-n:]
        except OSError:
            return ""

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited with %s during the run; its stderr ends:\n%s" % (self.name, self.proc.returncode, self.tail()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def json_line_ready(pred):
    """A `ready` for Server: the first JSON line of the stream that pred accepts, or None."""
    def ready(path):
        try:
            lines = open(path, errors="replace").read().splitlines()
        except OSError:
            return None
        for line in lines:
            if line.startswith("{"):
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if pred(d):
                    return d
        return None
    return ready


def start_servers(args, py, logdir, sockdir):
    """The gRPC servers: {name: Server}; each Server's targets has "tcp" (and "unix"). The Python
    and Go peers also stop by themselves after more time than the run can take."""
    max_seconds = 900 + 300 * args.rounds
    servers = {}
    try:
        servers["python-grpc"] = Server(
            "python-grpc", [py, os.path.join(PEERS, "grpc_server.py"), "--unix", os.path.join(sockdir, "dispatcher.sock"),
                            "--max-seconds", str(max_seconds)], logdir, "stdout", json_line_ready(lambda d: "tcp" in d))
        if not args.no_grpc_servers:
            env = dict(os.environ)
            env.pop("COPROCESS_CONFIG", None)  # the middleware runs with config_data only
            servers["coprocess-grpc"] = Server(
                "coprocess-grpc", [args.grpc_bin, "--listen", "127.0.0.1:0"], logdir, "stderr",
                json_line_ready(lambda d: d.get("msg") == "serving" and d.get("tcp")), env=env)
            servers["go-grpc"] = Server("go-grpc", [args.go_peer, "-listen", "127.0.0.1:0", "-max-seconds", str(max_seconds)], logdir,
                                        "stdout", json_line_ready(lambda d: "tcp" in d))
    except BaseException:
        for srv in servers.values():
            srv.stop()
        raise
    return servers


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


def openssl_speed(openssl):
    """OpenSSL's own RSA-2048 signs per second (`openssl speed -mr -seconds 1 rsa2048`; by
    default openssl speed divides by its own user CPU time)."""
    p = subprocess.run([openssl, "speed", "-mr", "-seconds", "1", "rsa2048"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, timeout=120, check=True)
    for line in p.stdout.splitlines():
        m = re.match(r"^\+F2:\d+:2048:([\d.]+):([\d.]+)", line)
        if m:
            return float(m.group(1))
    raise RuntimeError("no RSA-2048 sign figure in the output of openssl speed -mr rsa2048")


def check_rsa(driver, obj_path, openssl, env):
    """Dispatch the RSA Object once through the library the driver loads (env) and verify the
    signature it answers with openssl and the test key's public half. (True, text) or
    (False, why)."""
    import coprocess_pb2 as pb
    import objects
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "answer")
        p = subprocess.run([driver, "answer", obj_path, out], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        if p.returncode != 0:
            return False, p.stderr.strip()[-300:]
        inp, ans = pb.Object(), pb.Object()
        inp.ParseFromString(open(obj_path, "rb").read())
        ans.ParseFromString(open(out, "rb").read())
        auth = ans.request.set_headers.get("Authorization", "")
        params = dict(re.findall(r'(\w+)="([^"]*)"', auth))
        if params.get("algorithm") != "rsa-sha256" or params.get("keyId") != objects.RSA_KEY_ID or "signature" not in params:
            return False, "no rsa-sha256 Authorization in set_headers (return_overrides: %s)" % (
                str(ans.request.return_overrides).replace("\n", " "))
        headers = {k.lower(): v for k, v in inp.request.headers.items()}
        headers.update({k.lower(): v for k, v in ans.request.set_headers.items()})
        lines = []
        for name in params.get("headers", "date").split():
            if name == "(request-target)":
                lines.append("(request-target): %s %s" % (inp.request.method.lower(), inp.request.url))
            elif name in headers:
                lines.append("%s: %s" % (name, headers[name].strip(" \t")))
            else:
                return False, "signed header %r is not in the request" % name
        import base64
        with open(os.path.join(tmp, "data"), "w") as f:
            f.write("\n".join(lines))
        with open(os.path.join(tmp, "sig"), "wb") as f:
            f.write(base64.b64decode(params["signature"]))
        v = subprocess.run([openssl, "dgst", "-sha256", "-verify", objects.RSA_PUB, "-signature", os.path.join(tmp, "sig"),
                            os.path.join(tmp, "data")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        if v.returncode != 0:
            return False, "openssl does not verify the signature: " + v.stdout.strip()
        return True, "signature over `%s` verified by openssl" % params.get("headers", "date")


def median_or_none(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


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
    ap.add_argument("--no-go", action="store_true", help="skip the Go benchmarks of go/coprocess")
    ap.add_argument("--lib", default=os.path.join(ROOT, "target", "release", "libcoprocess.so"),
                    help="the current library: the driver must load this one")
    ap.add_argument("--grpc-bin", default=os.path.join(ROOT, "target", "release", "coprocess-grpc"))
    ap.add_argument("--go-peer", default=os.path.join(ROOT, "build", "bench", "go", "grpcpeer"))
    ap.add_argument("--go-load", default=os.path.join(ROOT, "build", "bench", "go", "grpcload"))
    ap.add_argument("--grpc-concurrency", default="1,16,64", help="callers on the one connection, one point each")
    ap.add_argument("--grpc-calls", type=int, default=50000, help="timed calls per server, point and round")
    ap.add_argument("--grpc-seconds", type=float, default=3.0, help="a point's timed phase stops after this long")
    ap.add_argument("--grpc-warmup", type=int, default=1000, help="untimed calls before each point")
    ap.add_argument("--no-grpc-servers", action="store_true", help="skip coprocess-grpc, the Go peer and the load client")
    ap.add_argument("--baseline-lib", help="directory holding a baseline libcoprocess.so (BASELINE=<ref> builds it)")
    ap.add_argument("--baseline-ref", help="the baseline's name in the tables")
    ap.add_argument("--no-rsa", action="store_true", help="skip the UpstreamRequestSigning rsa-sha256 rows")
    ap.add_argument("--openssl", default="openssl")
    ap.add_argument("--command", help="the command that reproduces this run (written into the results)")
    args = ap.parse_args()
    concs = [int(c) for c in args.grpc_concurrency.split(",")]

    # SIGTERM/SIGINT unwind through the finally blocks, which stop every server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    load_start = os.getloadavg()
    py = sys.executable
    os.environ.pop("COPROCESS_CONFIG", None)  # the library runs with config_data only
    os.environ.pop("LD_LIBRARY_PATH", None)  # the driver loads the current library by its RUNPATH
    os.environ["PYTHONPATH"] = os.pathsep.join([args.gen, PEERS, HERE])
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the source tree
    sys.dont_write_bytecode = True
    sys.path[:0] = [args.gen, PEERS, HERE]
    import smoke

    subprocess.run([py, os.path.join(HERE, "objects.py"), args.objects], check=True)
    obj = os.path.join(args.objects, "bench.bin")
    rsa_obj = os.path.join(args.objects, "rsa.bin")
    size = os.path.getsize(obj)

    # Which library each driver run loads: the RUNPATH's, or the baseline's via LD_LIBRARY_PATH
    # (searched before a RUNPATH); checked here and on every line the driver prints.
    cur_env = dict(os.environ)
    libs = {"current": (cur_env, os.path.realpath(args.lib))}
    base_name = None
    if args.baseline_lib:
        base_env = dict(os.environ, LD_LIBRARY_PATH=os.path.realpath(args.baseline_lib))
        libs["baseline"] = (base_env, os.path.realpath(os.path.join(args.baseline_lib, "libcoprocess.so")))
        base_name = args.baseline_ref or args.baseline_lib
        # bench/build-baseline.sh writes "<ref> <commit> <subject>" next to its target dir
        ref_txt = os.path.join(args.baseline_lib, os.pardir, os.pardir, "ref.txt")
        if os.path.exists(ref_txt):
            commit = open(ref_txt).read().split()[1]
            if not commit.startswith(base_name):
                base_name = "%s = %s" % (base_name, commit[:10])
    for which, (env, want) in libs.items():
        got = subprocess.run([args.driver, "lib"], env=env, stdout=subprocess.PIPE, text=True, check=True, timeout=30).stdout.strip()
        if os.path.realpath(got) != want:
            raise SystemExit("bench-compare: the driver loads %s for the %s library, not %s" % (got, which, want))
        log("%s library: %s" % (which, got))

    def driver_bench(which, path, peers=None, rename=None):
        env, want = libs[which]
        cmd = [args.driver, "bench", path, "--seconds", str(args.seconds)] + (["--peers", peers] if peers else [])
        res = jsonl(cmd, env=env, timeout=120)
        for r in res:
            if os.path.realpath(r["lib"]) != want:
                raise RuntimeError("the driver loaded %s, not the %s library %s" % (r["lib"], which, want))
            if rename:
                r["peer"] = rename.get(r["peer"], r["peer"])
            r["cpu_ns"] = r["cpu_s"] / r["calls"] * 1e9 if r["calls"] else None  # the threads' CPU time per call
        return res

    rsa_status = {}
    logdir = os.path.join(os.path.dirname(os.path.abspath(args.objects)), "logs")
    os.makedirs(logdir, exist_ok=True)
    sockdir = tempfile.mkdtemp(prefix="coprocess-bench-")
    rounds, grpc = {}, {}
    servers = {}
    try:
        servers = start_servers(args, py, logdir, sockdir)
        targets = {"Python over gRPC": servers["python-grpc"].targets["unix"]}
        if "coprocess-grpc" in servers:
            targets["coprocess-grpc"] = servers["coprocess-grpc"].targets["tcp"]
            targets["Go peer over gRPC"] = servers["go-grpc"].targets["tcp"]
        log("verdict smoke check (library, Python in-process, %s)" % ", ".join(targets))
        smoke_rows, ok = smoke.check(args.driver, args.objects, targets)
        for r in smoke_rows:
            log("  " + "  ".join("%-16s" % c for c in map(str, r)))
        if not ok:
            raise SystemExit("bench-compare: the verdict smoke check failed")
        if not args.no_rsa:
            for which, (env, _) in libs.items():
                rsa_status[which] = check_rsa(args.driver, rsa_obj, args.openssl, env)
                log("RSA Object through the %s library: %s" % (which, rsa_status[which][1]))
            if not rsa_status["current"][0]:
                raise SystemExit("bench-compare: the current library does not sign the RSA Object")

        for r in range(args.rounds):
            log("round %d/%d" % (r + 1, args.rounds))
            results = []
            # current and baseline alternate which goes first
            order = ["current", "baseline"] if r % 2 == 0 else ["baseline", "current"]
            for which in order:
                if which == "current":
                    results += driver_bench("current", obj)
                elif which in libs:
                    results += driver_bench("baseline", obj, "dispatch", {"dispatch": "dispatch-baseline"})
            if not args.no_rsa:
                for which in order:
                    if which in libs and rsa_status[which][0]:
                        name = "rsa" if which == "current" else "rsa-baseline"
                        results += driver_bench(which, rsa_obj, "dispatch", {"dispatch": name})
                signs = openssl_speed(args.openssl)
                results.append({"peer": "openssl-sign", "threads": 1, "median_ns": None, "p99_ns": None,
                                "cpu_ns": 1e9 / signs, "throughput": signs})
            results += jsonl([py, os.path.join(PEERS, "embedded_bench.py"), obj, "--seconds", str(args.py_seconds)], timeout=120)
            py_srv = servers["python-grpc"]
            for label, target in (("grpc-tcp", py_srv.targets["tcp"]), ("grpc-unix", py_srv.targets["unix"])):
                results += jsonl([py, os.path.join(PEERS, "grpc_bench.py"), obj, "--target", target, "--label", label,
                                  "--seconds", str(args.py_seconds)], timeout=120)
            for res in results:
                rounds.setdefault((res["peer"], res["threads"]), []).append(res)
            if not args.no_grpc_servers:
                # every server at every concurrency, the server order rotating over the rounds
                names = SERVERS[r % len(SERVERS):] + SERVERS[:r % len(SERVERS)]
                for name in names:
                    srv = servers[name]
                    srv.check_alive()
                    cmd = [args.go_load, "-target", srv.targets["tcp"], "-object", obj, "-label", name,
                           "-concurrency", args.grpc_concurrency, "-calls", str(args.grpc_calls),
                           "-max-seconds", str(args.grpc_seconds), "-warmup-calls", str(args.grpc_warmup),
                           "-server-pid", str(srv.pid)]
                    for res in jsonl(cmd, timeout=len(concs) * (2 * args.grpc_seconds + 10) + 60):
                        res["server_cpu_s"] = res["server_ticks"] / CLK_TCK
                        grpc.setdefault((name, res["concurrency"]), []).append(res)
                    srv.check_alive()
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(sockdir, ignore_errors=True)

    go, go_raw = ({}, "")
    if not args.no_go:
        go, go_raw = run_go(args.go_dir, args.go_benchtime, args.go_count)
        with open(os.path.join(os.path.dirname(args.objects), "go-bench.txt"), "w") as f:
            f.write(go_raw)

    def agg(peer, t, key):
        rs = rounds.get((peer, t))
        return median_or_none(x[key] for x in rs) if rs else None

    def per_round(a, b, key="median_ns", t=1):
        """Median over rounds of that round's a / b (the two were measured close in time)."""
        ra, rb = rounds.get((a, t)), rounds.get((b, t))
        if not ra or not rb:
            return None
        return median_or_none(x[key] / y[key] if x[key] and y[key] else None for x, y in zip(ra, rb))

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

    labels = dict(LABELS)
    if base_name:
        labels["dispatch-baseline"] = "libcoprocess `Dispatch` (baseline %s)" % base_name
    base_lat = agg("dispatch", 1, "median_ns")
    base_tp = {t: agg("dispatch", t, "throughput") for t in (1, 2)}
    rows = []
    for peer in ORDER:
        if (peer, 1) not in rounds:
            continue
        m1, p1, tp1 = agg(peer, 1, "median_ns"), agg(peer, 1, "p99_ns"), agg(peer, 1, "throughput")
        m2, p2, tp2 = agg(peer, 2, "median_ns"), agg(peer, 2, "p99_ns"), agg(peer, 2, "throughput")
        rows.append((peer, labels[peer], m1, p1, tp1, m2, p2, tp2))
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

    # ---- before and after: the baseline library in the same rounds
    before_after = ""
    if base_name:
        ba = ["| path | median, 1 thread: current | baseline | **current ÷ baseline**, 1 thread | current ÷ baseline, 2 threads "
              "| wall time per call at 2 threads (1 / calls/s): current ÷ baseline | 2 thr / 1 thr: current | baseline |", "| --- |" + " ---: |" * 7]
        pairs = [("HMACSignatureAuth `Dispatch`", "dispatch", "dispatch-baseline")]
        if not args.no_rsa:
            pairs.append(("UpstreamRequestSigning rsa-sha256 `Dispatch`", "rsa", "rsa-baseline"))
        for label, cur, base in pairs:
            if (base, 1) not in rounds:
                why = rsa_status.get("baseline", (False, "not measured"))[1] if cur == "rsa" else "not measured"
                ba.append("| %s | %s | — (%s) | — | — | — | %s | — |" % (label, fmt_ns(agg(cur, 1, "median_ns")), why.replace("|", "/"),
                                                                   fmt_ratio(scaling_of(cur))))
                continue
            ba.append("| %s | %s | %s | **%s** | %s | %s | %s | %s |" % (
                label, fmt_ns(agg(cur, 1, "median_ns")), fmt_ns(agg(base, 1, "median_ns")), fmt_ratio(per_round(cur, base)),
                fmt_ratio(per_round(cur, base, t=2)), fmt_ratio(per_round(base, cur, "throughput", t=2)),
                fmt_ratio(scaling_of(cur)), fmt_ratio(scaling_of(base))))
        before_after = """## Before and after: baseline %s

The baseline's libcoprocess.so (`make bench-compare BASELINE=%s`, built in a git worktree under
build/bench/baseline) is run by the same driver (`LD_LIBRARY_PATH` names its directory; the
driver prints the file it loaded and the run checks it), in every round next to the current
library, which of the two goes first alternating. Ratios are the median of each round's ratio
of the medians: below 1x the current library is faster.

%s
""" % (base_name, args.baseline_ref or "", "\n".join(ba))

    # ---- RSA
    rsa_md = ""
    if not args.no_rsa:
        rs = ["| path | median, 1 thread | p99, 1 thread | CPU per call, 1 thread | calls/s, 1 thread | calls/s, 2 threads "
              "| 2 thr / 1 thr | CPU per call ÷ OpenSSL's sign |", "| --- |" + " ---: |" * 7]
        rsa_rows = [("rsa", "**UpstreamRequestSigning rsa-sha256 `Dispatch`** (current)")]
        if base_name:
            rsa_rows.append(("rsa-baseline", "UpstreamRequestSigning rsa-sha256 `Dispatch` (baseline %s)" % base_name))
        for peer, label in rsa_rows:
            if (peer, 1) not in rounds:
                rs.append("| %s | — (%s) | | | | | | |" % (label, rsa_status.get("baseline", (0, "not measured"))[1].replace("|", "/")))
                continue
            rs.append("| %s | %s | %s | %s | %s | %s | %s | **%s** |" % (
                label, fmt_ns(agg(peer, 1, "median_ns")), fmt_ns(agg(peer, 1, "p99_ns")), fmt_ns(agg(peer, 1, "cpu_ns")),
                fmt_rate(agg(peer, 1, "throughput")), fmt_rate(agg(peer, 2, "throughput")), fmt_ratio(scaling_of(peer)),
                fmt_ratio(per_round(peer, "openssl-sign", "cpu_ns"))))
        rs.append("| OpenSSL RSA-2048 sign (`openssl speed -seconds 1 rsa2048`) | — | — | %s | %s | — | — | 1x |" % (
            fmt_ns(agg("openssl-sign", 1, "cpu_ns")), fmt_rate(agg("openssl-sign", 1, "throughput"))))
        ratio = per_round("rsa", "openssl-sign", "cpu_ns")
        goal = ("**met**" if ratio <= 2 else "**not met**") if ratio else "—"
        rsa_md = """## RSA: UpstreamRequestSigning rsa-sha256

A %d-byte Post-hook Object (`bench/objects.py` `rsa`: a POST with 7 headers, a session, the
2048-bit test key inline in `config_data`), signed over the default header list, through the
driver as above; the answer's signature is verified with `openssl dgst -verify` before timing.
Next to it OpenSSL's own RSA-2048 sign time measured in every round (`openssl speed -mr
-seconds 1 rsa2048`: signs per second of its own user CPU time, shown as CPU per sign). The
ratio compares CPU per call (the driver thread's CPU time ÷ its calls) with OpenSSL's CPU per
sign, so time the machine gave to other work counts for neither; on a quiet machine the
median is about the CPU per call.

%s

- rsa-sha256 `Dispatch` ÷ OpenSSL's RSA-2048 sign, CPU per call: **%s** (goal: at most 2x: %s).%s
""" % (os.path.getsize(rsa_obj), "\n".join(rs), fmt_ratio(ratio), goal,
       (" The baseline %s does not sign it: %s." % (base_name, rsa_status["baseline"][1]))
       if "baseline" in rsa_status and not rsa_status["baseline"][0] else "")

    # ---- gRPC servers
    grpc_md = ""
    if grpc:
        def g(name, c, key):
            rs = grpc.get((name, c))
            return median_or_none(x[key] for x in rs) if rs else None

        def g_cpu(name, c, who="server_cpu_s"):
            rs = grpc.get((name, c))
            return median_or_none(x[who] / x["calls"] * 1e9 for x in rs) if rs else None

        def g_ratio(name, c, fn):
            a, b = grpc.get((name, c)), grpc.get(("go-grpc", c))
            if not a or not b:
                return None
            return median_or_none(fn(x) / fn(y) if fn(y) else None for x, y in zip(a, b))

        cpu_call = lambda x: x["server_cpu_s"] / x["calls"]  # noqa: E731
        gl = ["| server | callers | p50 | p99 | calls/s | server CPU per call | client CPU per call "
              "| server CPU ÷ Go peer | p50 ÷ Go peer | p99 ÷ Go peer |", "| --- | ---: |" + " ---: |" * 8]
        for c in concs:
            for name in SERVERS:
                if (name, c) not in grpc:
                    continue
                rel = name != "go-grpc"
                gl.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    SERVER_LABELS[name], c, fmt_ns(g(name, c, "median_ns")), fmt_ns(g(name, c, "p99_ns")),
                    fmt_rate(g(name, c, "throughput")), fmt_ns(g_cpu(name, c)), fmt_ns(g_cpu(name, c, "client_cpu_s")),
                    ("**%s**" % fmt_ratio(g_ratio(name, c, cpu_call))) if rel else "1x",
                    fmt_ratio(g_ratio(name, c, lambda x: x["median_ns"])) if rel else "1x",
                    fmt_ratio(g_ratio(name, c, lambda x: x["p99_ns"])) if rel else "1x"))
        goals = []
        for c in concs:
            cpu = g_ratio("coprocess-grpc", c, cpu_call)
            p50 = g_ratio("coprocess-grpc", c, lambda x: x["median_ns"])
            p99 = g_ratio("coprocess-grpc", c, lambda x: x["p99_ns"])
            if cpu is None:
                continue
            met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
            text = "at %d caller%s: server CPU per call **%s** the Go peer's" % (c, "s" if c > 1 else "", fmt_ratio(cpu))
            if c >= 16:
                text += " (goal at most 0.33x: %s)" % met(cpu <= 1 / 3)
            text += "; p50 %s, p99 %s the Go peer's (goal below 1x: %s, %s)" % (
                fmt_ratio(p50), fmt_ratio(p99), met(p50 is not None and p50 < 1), met(p99 is not None and p99 < 1))
            goals.append(text)
        grpc_md = """## gRPC servers under the gateway's client

The gateway's gRPC path: a grpc-go client (`go/cmd/grpcload`, the client library of the
gateway's gRPC driver) on one connection to the server on 127.0.0.1, with 1, 16 or 64
goroutines calling `Dispatch` with the benchmark Object's bytes at once (as the gateway's
request goroutines share its one ClientConn); up to %d timed calls per point (or %s s) after
%d untimed ones. The servers: `target/release/coprocess-grpc` (the Object's `config_data`
configures it), the Go peer `go/cmd/grpcpeer` (grpc-go server, `go/internal/benchhmac`: the
same checks in the same order, the alternative a gateway user writes), and the Python grpcio
peer above. Latency is per call at the client; server CPU per call is the server process's
utime+stime (`/proc/PID/stat`, read right before and after each point) ÷ the calls; client CPU
is the load client's own. Every round runs every server at every concurrency, the server
order rotating. Ratios are the median of each round's ratio to the Go peer at the same point.

%s

coprocess-grpc against the Go peer (the project's goals: at most one third of its server CPU
per call at 16 and 64 callers, lower p50 and p99 at every point):

%s
""" % (args.grpc_calls, ("%g" % args.grpc_seconds), args.grpc_warmup, "\n".join(gl), "\n".join("- " + x for x in goals))

    smoke_heads = ["Object", "expected", "library", "Python"] + list(targets) + ["decoded answers"]
    smoke_md = ["| " + " | ".join(smoke_heads) + " |", "|" + " --- |" * len(smoke_heads)]
    smoke_md += ["| `%s` | " % r[0] + " | ".join(map(str, r[1:])) + " |" for r in smoke_rows]

    reproduce = args.command or " ".join([os.path.relpath(sys.executable, ROOT)] + sys.argv)
    md = """# `make bench-compare` results

Generated by `make bench-compare` on %(date)s in %(secs).0f s:
`%(reproduce)s`.
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

%(grpc)s
%(before_after)s
%(rsa)s
Notes:
- Native rows: `bench/driver` (Rust) calls `Dispatch` through the C ABI with the serialised
  Object and `free`s the malloc'd answer, as a host does; the clock reads around each call cost
  about %(timer)s (included). The floors are a C function in its own shared library that
  mallocs a copy of the message and returns it, and the HMAC-SHA512 of the signing string
  alone with the library's own crates (RustCrypto hmac 0.12 / sha2 0.10).
- Embedded Python: `bench/peers/hmac_plugin.py` in one CPython process, timed in-process; at 2
  threads both threads share the interpreter (and its GIL), as a gateway's goroutines share
  its embedded interpreter.
- gRPC, Python client rows: `bench/peers/grpc_server.py` (grpcio, thread pool of 4, the same
  Python plugin) in its own process; the client (`bench/peers/grpc_bench.py`, Python grpcio,
  one channel shared by the threads) sends the Object's bytes and times the round trip.
  Loopback and unix socket only; request counts bounded.
- gRPC servers section: the load client sends the Object's bytes as they are and takes the
  answer's bytes (no marshalling on the client), so its own CPU is the same for every server;
  it shares the machine's cores with the server it measures. Logs of the servers:
  `build/bench/logs/`.
- Go rows: `go test -bench` in `go/coprocess` (-benchtime %(gobt)s, -count %(goc)d, -cpu 1,2), labelled by
  benchmark name: **they use the Go benchmarks' own Objects** (see the benchmark source and
  docs/go-host.md, "Go benchmarks"), report the mean ns/op of the loop (no p99), and their 2-thread column is
  `b.RunParallel` with GOMAXPROCS=2 (throughput = 10^9 / ns/op). Raw output:
  `build/bench/go-bench.txt`.

Verdict smoke check (the same Objects through the library and the Python peer in-process, and
through every gRPC server; the decoded answers are compared whole, `last_updated` set aside):

%(smoke)s
""" % dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), secs=time.time() - started, reproduce=reproduce,
           machine=machine(), l0=load_start[0], l1=load_end[0], versions=versions(), size=size, rounds=args.rounds,
           table=table, summary="\n".join("- " + s for s in summary), grpc=grpc_md, before_after=before_after, rsa=rsa_md,
           timer=fmt_ns(timer), gobt=args.go_benchtime, goc=args.go_count, smoke="\n".join(smoke_md))
    with open(args.out, "w") as f:
        f.write(md)
    print(table)
    print()
    for s in summary:
        print("- " + s.replace("**", ""))
    for part in (grpc_md, before_after, rsa_md):
        if part:
            print()
            print(part.split("\n\n", 2)[-1].replace("**", "").strip())
    log("written to %s" % os.path.relpath(args.out, ROOT))


if __name__ == "__main__":
    main()
