"""Verdict smoke check: the Python peer (in-process, and through gRPC servers when given) and
the library (Dispatch through the C ABI, via the native driver) must give the same
verdict, the expected one, for the same Objects: the benchmark Object (authenticated), a
wrong signature (401), a malformed Authorization header (400), and four more (hmac-sha256
over `(request-target) date`, an unknown keyId, a disallowed algorithm, a signed header the
request lacks). Beyond the verdict, the decoded answers must be equal Objects once
`session.last_updated` (now, in unix seconds: checked to be within a minute) is set aside.

    python bench/smoke.py DRIVER OBJECTS_DIR [--grpc [LABEL=]TARGET ...]
exits 1 on any disagreement. `bench/compare.py` runs it with every gRPC server it measures
(the Python grpcio peer, coprocess-grpc, the Go peer): each must answer as the library does."""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "peers"))
sys.path.insert(0, HERE)
import coprocess_pb2 as pb  # noqa: E402
import hmac_plugin  # noqa: E402
import objects  # noqa: E402


def verdict(obj):
    code = obj.request.return_overrides.response_code
    if code >= 400:
        return code
    if obj.session.hmac_enabled and obj.metadata.get("token"):
        return "authenticated"
    return "no verdict"


def normalised(data):
    """The decoded answer with last_updated checked and cleared, and its verdict."""
    obj = pb.Object()
    obj.ParseFromString(data)
    if obj.HasField("session"):
        lu = obj.session.last_updated
        if not (lu.isdigit() and abs(int(lu) - time.time()) < 60):
            raise AssertionError("last_updated %r is not now in unix seconds" % lu)
        obj.session.last_updated = ""
    return obj, verdict(obj)


def check(driver, objects_dir, grpc_targets=None):
    """Rows of (name, expected, library, python, <one per gRPC target>, answers) and whether all
    agree. grpc_targets: a target, or {label: target} (in column order)."""
    py = hmac_plugin.Dispatcher()
    if isinstance(grpc_targets, str):
        grpc_targets = {"grpc": grpc_targets}
    calls, channels = {}, []
    if grpc_targets:
        import grpc
        for label, target in grpc_targets.items():
            channel = grpc.insecure_channel(target)
            channels.append(channel)
            calls[label] = channel.unary_unary("/coprocess.Dispatcher/Dispatch")
    try:
        return _check(driver, objects_dir, py, calls)
    finally:
        for c in channels:
            c.close()


def _check(driver, objects_dir, py, calls):
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, expected) in objects.objects().items():
            path = os.path.join(objects_dir, name + ".bin")
            data = open(path, "rb").read()
            out = os.path.join(tmp, name + ".answer")
            subprocess.run([driver, "answer", path, out], check=True)
            lib_obj, lib_v = normalised(open(out, "rb").read())
            py_obj, py_v = normalised(py.dispatch(data))
            row = [name, expected, lib_v, py_v]
            same = lib_v == py_v == expected and lib_obj == py_obj
            for label, call in calls.items():
                g_obj, g_v = normalised(call(data, timeout=10))
                row.append(g_v)
                same = same and g_v == expected and g_obj == lib_obj
                if g_obj != lib_obj:
                    print("smoke: %s: the library's and %s's answers differ:\n%s\n---\n%s" % (name, label, lib_obj, g_obj))
            if lib_obj != py_obj:
                print("smoke: %s: the library's and the Python peer's answers differ:\n%s\n---\n%s" % (name, lib_obj, py_obj))
            row.append("ok" if same else "MISMATCH")
            ok = ok and same
            rows.append(row)
    return rows, ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("driver")
    ap.add_argument("objects_dir")
    ap.add_argument("--grpc", action="append", default=[], help="[LABEL=]TARGET, repeatable")
    args = ap.parse_args()
    targets = {}
    for i, g in enumerate(args.grpc):
        label, _, target = g.partition("=") if "=" in g else ("", "", g)
        targets[label or "grpc%d" % (i + 1)] = target
    rows, ok = check(args.driver, args.objects_dir, targets)
    heads = ["Object", "expected", "library", "python"] + list(targets) + ["answers"]
    for r in [heads] + rows:
        print("  ".join(str(c).ljust(22) for c in r))
    print("verdict smoke check: %d passed, %d failed" % (sum(r[-1] == "ok" for r in rows), sum(r[-1] != "ok" for r in rows)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
