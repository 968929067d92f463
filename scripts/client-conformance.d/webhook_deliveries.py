"""Real webhook deliveries verified with the Standard Webhooks reference library for Python
(PyPI `standardwebhooks`); see scripts/client-conformance.

Runs a receiver on 127.0.0.1 that verifies every request with `standardwebhooks.Webhook` and
answers 204 when it verifies, 400 when not (so an unverified delivery shows as a failed
attempt in the delivery log too). Creates a webhook pointing at it (the service it talks to
runs with webhooks.allow_http and webhooks.allow_private_networks), writes a customer three
times (created, updated, deleted), waits for the three deliveries, and checks: each verified,
its body is the event exactly as the feed shows it, `webhook-id` is the event's id, the log
says succeeded; a body changed by one byte and another secret do not verify. Writes what was
received (raw headers and bodies, the secret) to --out, for the JavaScript library's check
(js/verify.mjs).

Usage: webhook_deliveries.py --service URL --token TOKEN --out FILE
(TOKEN: webhooks:manage and customers:admin of a tenant of its own). Exit status 0 when every
check passed.
"""

import argparse
import http.server
import json
import sys
import threading
import time
import urllib.error
import urllib.request

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

DEADLINE_SECONDS = 30
EVENTS = 3


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.secret = None
        self.lock = threading.Lock()
        self.received = []  # (headers as sent, raw body, verified)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (the standard library's name)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            Webhook(self.server.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        with self.server.lock:
            self.server.received.append((headers, body, verified))
        self.send_response(204 if verified else 400)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *arguments):
        pass


def call(service, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(service + path, data=data, method=method)
    request.add_header("authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", required=True)
    arguments = parser.parse_args()
    service, token = arguments.service, arguments.token
    failures = []
    passed = 0

    def check(condition, what):
        nonlocal passed
        if condition:
            passed += 1
        else:
            failures.append(what)

    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    status, body = call(service, token, "POST", "/v1/webhooks", {"url": url})
    if status != 201:
        print(f"creating the webhook: {status} {body[:300]!r}", file=sys.stderr)
        return 1
    webhook = json.loads(body)
    # Set before any event is written: no delivery can arrive before.
    receiver.secret = webhook["secret"]

    status, body = call(
        service, token, "POST", "/v1/customers", {"type": "consumer", "email": "hooks@example.com"}
    )
    check(status == 201, f"create customer: {status}")
    customer = json.loads(body)
    status, _ = call(
        service, token, "PATCH", f"/v1/customers/{customer['id']}", {"metadata": {"a": "b"}}
    )
    check(status == 200, f"patch customer: {status}")
    status, _ = call(service, token, "DELETE", f"/v1/customers/{customer['id']}")
    check(status in (200, 204), f"delete customer: {status}")

    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        with receiver.lock:
            if len(receiver.received) >= EVENTS:
                break
        time.sleep(0.1)
    with receiver.lock:
        received = list(receiver.received)
    check(len(received) == EVENTS, f"{len(received)} deliveries received, {EVENTS} expected")

    status, body = call(service, token, "GET", "/v1/events?limit=100")
    check(status == 200, f"GET /v1/events: {status}")
    feed = json.loads(body)["data"] if status == 200 else []
    # The feed's bytes of each event: json.loads loses them, so cut them out of the page with
    # the decoder's positions.
    raw_events = raw_items(body.decode()) if status == 200 else []
    by_id = {event["id"]: raw for event, raw in zip(feed, raw_events)}
    for headers, raw_body, verified in received:
        check(verified, f"delivery {headers.get('webhook-id')} did not verify (Python library)")
        event_id = headers.get("webhook-id")
        check(
            by_id.get(event_id) == raw_body.decode(),
            f"delivery {event_id}: the body is not the feed's bytes of that event",
        )
        tampered = raw_body[:-1] + (b" " if raw_body[-1:] != b" " else b"\n")
        try:
            Webhook(webhook["secret"]).verify(tampered, headers)
            check(False, f"delivery {event_id}: a changed body verified")
        except WebhookVerificationError:
            check(True, "")
        other = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        try:
            Webhook(other).verify(raw_body, headers)
            check(False, f"delivery {event_id}: another secret verified")
        except WebhookVerificationError:
            check(True, "")

    # The delivery log: every delivery succeeded (the receiver answered 204: it verified).
    status, body = call(service, token, "GET", f"/v1/webhooks/{webhook['id']}/deliveries")
    log = json.loads(body)["data"] if status == 200 else []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while status == 200 and any(d["status"] != "succeeded" for d in log):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
        status, body = call(service, token, "GET", f"/v1/webhooks/{webhook['id']}/deliveries")
        log = json.loads(body)["data"] if status == 200 else []
    check(
        len(log) == EVENTS and all(d["status"] == "succeeded" for d in log),
        f"the delivery log: {[d['status'] for d in log]}",
    )

    with open(arguments.out, "w") as out:
        json.dump(
            {
                "secret": webhook["secret"],
                "deliveries": [
                    {"headers": headers, "body": raw_body.decode()}
                    for headers, raw_body, _ in received
                ],
            },
            out,
        )
    receiver.shutdown()
    print(f"webhook deliveries (Python standardwebhooks): {passed} passed, {len(failures)} failed")
    for failure in failures:
        print("  FAILED: " + failure, file=sys.stderr)
    return 1 if failures else 0


def raw_items(page):
    """The raw text of each item of the page's `data` array, in order."""
    decoder = json.JSONDecoder()
    start = page.index("[", page.index('"data"'))
    items, position = [], start + 1
    while True:
        while page[position] in " \n\r\t,":
            position += 1
        if page[position] == "]":
            return items
        _, end = decoder.raw_decode(page, position)
        items.append(page[position:end])
        position = end


if __name__ == "__main__":
    sys.exit(main())
