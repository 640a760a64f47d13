"""The out-of-process peer's server: a gRPC `coprocess.Dispatcher` (grpcio, stubs generated
from proto/coprocess.proto by grpcio-tools) running the same Python HMACSignatureAuth
(hmac_plugin) for every Dispatch: grpcio parses the request Object and serialises the answer.

    python grpc_server.py --unix PATH [--workers 4] [--max-seconds 600]
Listens on 127.0.0.1 (a free port) and on the unix socket PATH, prints
{"tcp": "127.0.0.1:<port>", "unix": "unix:PATH"} on one line when ready, and stops on
SIGTERM/SIGINT or after --max-seconds, whichever comes first."""

import argparse
import json
import os
import signal
import sys
import threading
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402
import hmac_plugin  # noqa: E402
import coprocess_pb2 as pb  # noqa: E402
import coprocess_pb2_grpc as pb_grpc  # noqa: E402


class Servicer(pb_grpc.DispatcherServicer):
    def __init__(self):
        self.dispatcher = hmac_plugin.Dispatcher()

    def Dispatch(self, request, context):
        try:
            return self.dispatcher.dispatch_object(request)
        except LookupError as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        except hmac_plugin.ConfigError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))

    def DispatchEvent(self, request, context):
        return pb.EventReply()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unix", required=True)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    if os.path.exists(args.unix):
        os.unlink(args.unix)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    pb_grpc.add_DispatcherServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.add_insecure_port("unix:" + args.unix)
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(json.dumps({"tcp": "127.0.0.1:%d" % port, "unix": "unix:" + args.unix}), flush=True)
    done.wait(args.max_seconds)
    server.stop(0).wait()
    if os.path.exists(args.unix):
        os.unlink(args.unix)


if __name__ == "__main__":
    main()
