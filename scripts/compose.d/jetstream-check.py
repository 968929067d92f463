#!/usr/bin/env python3
"""Checks that a NATS server answers with JetStream, speaking the NATS protocol over a plain
socket (standard library only, so CI needs no NATS client).

  jetstream-check.py HOST:PORT create   make the file-backed stream SMOKE (subjects smoke.>)
                                        and publish one message to it through JetStream
  jetstream-check.py HOST:PORT verify   the stream SMOKE exists and holds that one message
                                        (after a restart: the store lives on a volume)

Used by scripts/compose-smoke. Exits non-zero with a message on any failure.
"""

import json
import socket
import sys

STREAM = "SMOKE"
INBOX = "_INBOX.compose_smoke"


class Nats:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buf = b""
        info = self.line()
        if not info.startswith(b"INFO "):
            raise SystemExit(f"not a NATS server: {info[:80]!r}")
        self.info = json.loads(info[5:])
        if not self.info.get("jetstream"):
            raise SystemExit(f"NATS {self.info.get('version')} answers without JetStream")
        self.send(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"name":"compose-smoke"}')
        self.send(f"SUB {INBOX} 1".encode())

    def send(self, line, payload=None):
        data = line + b"\r\n"
        if payload is not None:
            data += payload + b"\r\n"
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("NATS closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("NATS closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def request(self, subject, body):
        """Publishes body to subject with a reply inbox and returns the parsed JSON reply."""
        payload = json.dumps(body).encode() if body is not None else b""
        self.send(f"PUB {subject} {INBOX} {len(payload)}".encode(), payload)
        while True:
            line = self.line()
            if line == b"PING":
                self.send(b"PONG")
            elif line.startswith(b"-ERR"):
                raise SystemExit(f"NATS error: {line.decode()}")
            elif line.startswith(b"MSG "):
                size = int(line.split()[-1])
                return json.loads(self.exactly(size))
            elif line.startswith(b"HMSG "):
                # No-responders and other status replies carry headers: HMSG subj sid hdr total
                parts = line.split()
                data = self.exactly(int(parts[-1]))
                raise SystemExit(f"no JetStream answer on {subject}: {data[: int(parts[-2])]!r}")


def check(reply, what):
    if "error" in reply:
        raise SystemExit(f"{what}: {reply['error']}")
    return reply


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("create", "verify"):
        raise SystemExit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    nats = Nats(host, int(port))
    check(nats.request("$JS.API.INFO", None), "JetStream account info")
    if sys.argv[2] == "create":
        check(
            nats.request(
                f"$JS.API.STREAM.CREATE.{STREAM}",
                {"name": STREAM, "subjects": ["smoke.>"], "storage": "file"},
            ),
            "create stream",
        )
        ack = check(nats.request("smoke.check", {"hello": "jetstream"}), "publish")
        if ack.get("stream") != STREAM or ack.get("seq") != 1:
            raise SystemExit(f"unexpected publish acknowledgement: {ack}")
    info = check(nats.request(f"$JS.API.STREAM.INFO.{STREAM}", None), "stream info")
    messages = info["state"]["messages"]
    if messages != 1:
        raise SystemExit(f"stream {STREAM} holds {messages} messages, expected 1")
    print(f"NATS {nats.info.get('version')}, JetStream on, stream {STREAM} holds 1 message")


if __name__ == "__main__":
    main()
