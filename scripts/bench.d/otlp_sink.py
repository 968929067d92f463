"""An OTLP/HTTP receiver that keeps nothing, for the tracing comparison of scripts/bench: it
answers 200 with an empty body (a valid, empty export response in protobuf and in JSON) to every
POST, so that the service's exporter does all of its work and the receiver as little as it can.

usage: python3 otlp_sink.py PORT_FILE STATS_FILE
Listens on 127.0.0.1 on a port of its own, writes the port to PORT_FILE, and, when it ends,
{"posts": N, "bytes": N, "paths": {...}} to STATS_FILE. It ends on SIGTERM, and by itself when
the process that started it is gone, so that a benchmark stopped by force leaves nothing behind.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

stats = {"posts": 0, "bytes": 0, "paths": {}}
lock = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as a collector would

    def do_POST(self):  # noqa: N802 (the name http.server calls)
        size = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(size)
        with lock:
            stats["posts"] += 1
            stats["bytes"] += size
            stats["paths"][self.path] = stats["paths"].get(self.path, 0) + 1
        self.send_response(200)
        self.send_header("Content-Type", self.headers.get("Content-Type") or "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    port_file, stats_file = sys.argv[1], sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    parent = os.getppid()

    def finish(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, finish)

    def watch_parent():
        while os.getppid() == parent:
            threading.Event().wait(1)
        finish()

    threading.Thread(target=watch_parent, daemon=True).start()
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()
    with lock, open(stats_file, "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    main()
