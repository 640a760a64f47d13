"""The out-of-process peer's client: one gRPC round trip per hook to grpc_server.py, timed
on the client side. The client sends the serialised Object as it is and takes the answer's
bytes (no client-side protobuf work, as the native driver passes bytes to Dispatch); with 2
threads both share one channel (one HTTP/2 connection), as a gateway would. Request counts
are bounded (--max-calls per thread and round) and the target must be loopback or a unix
socket.

    python grpc_bench.py OBJECT --target 127.0.0.1:PORT|unix:PATH --label NAME
        [--threads 1,2] [--seconds 0.5] [--rounds 1] [--max-calls 20000]
prints one JSON line per (round, threads)."""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402
import timing  # noqa: E402
import coprocess_pb2 as pb  # noqa: E402

METHOD = "/coprocess.Dispatcher/Dispatch"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("object")
    ap.add_argument("--target", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-calls", type=int, default=20000)
    args = ap.parse_args()
    if not (args.target.startswith("unix:") or args.target.startswith("127.")):
        sys.exit("grpc_bench: loopback or unix socket targets only")
    data = open(args.object, "rb").read()
    with grpc.insecure_channel(args.target) as channel:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out
        out = pb.Object()
        out.ParseFromString(call(data, timeout=10))
        if not (out.session.hmac_enabled and out.metadata["token"]):
            sys.exit("grpc peer: the benchmark Object did not authenticate")
        for r in range(args.rounds):
            for t in (int(x) for x in args.threads.split(",")):
                res = timing.run(lambda: (lambda: call(data, timeout=10)), t, args.seconds, warmup_s=0.1, max_calls=args.max_calls)
                res.update(peer=args.label, round=r, bytes=len(data))
                print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
