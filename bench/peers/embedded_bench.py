"""The embedded-interpreter peer, timed in-process: per call, bytes -> protobuf parse ->
HMACSignatureAuth -> serialise (hmac_plugin.Dispatcher.dispatch), as an embedded Python
plugin driver runs a hook. With 2 threads both call the one interpreter, as a gateway's
goroutines share its embedded interpreter (and its GIL).

    python embedded_bench.py OBJECT --threads 1,2 --seconds 0.5 --rounds 1
prints one JSON line per (round, threads), and per round one for the protobuf parse +
serialise alone (peer python-protobuf, 1 thread)."""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hmac_plugin  # noqa: E402
import timing  # noqa: E402
import coprocess_pb2 as pb  # noqa: E402


def parse_serialise(data):
    obj = pb.Object()
    obj.ParseFromString(data)
    return obj.SerializeToString()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("object")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    data = open(args.object, "rb").read()
    d = hmac_plugin.Dispatcher()
    # Check once that it authenticates, before timing it.
    out = pb.Object()
    out.ParseFromString(d.dispatch(data))
    if not (out.session.hmac_enabled and out.metadata["token"]):
        sys.exit("embedded peer: the benchmark Object did not authenticate")
    for r in range(args.rounds):
        for t in (int(x) for x in args.threads.split(",")):
            res = timing.run(lambda: (lambda: d.dispatch(data)), t, args.seconds)
            res.update(peer="python-embedded", round=r, bytes=len(data))
            print(json.dumps(res), flush=True)
        # the protobuf share of it: parse and serialise alone, 1 thread
        res = timing.run(lambda: (lambda: parse_serialise(data)), 1, args.seconds / 2)
        res.update(peer="python-protobuf", round=r, bytes=len(data))
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
