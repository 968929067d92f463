"""Webhook deliveries across the failovers of scripts/ha-drill (drill.py uses this module).

Before the first event each service gets a webhook of every event type pointing at a receiver of
its own on 127.0.0.1 (http:// and loopback are allowed for the drill by
webhooks.allow_http and webhooks.allow_private_networks). The receiver answers 204 to every
delivery and notes its `webhook-id` (the event id, the same on every attempt). After the last
event, once every committed event has arrived (or DRILL_WEBHOOK_SETTLE_MAX, 120 s, has passed),
the drill compares the ids with the tenant's committed event rows. It does not stop early when
the deliveries go quiet: a claim whose answer a failover cut off holds its delivery for the
claim's lease (webhooks.timeout plus the round limit, 32 s by default) before any instance
attempts it again, so a quiet spell shorter than that proves nothing (CI's run of 2026-12-06 gave
up after 15 s quiet with one delivery still leased). What the database holds for each event still
missing at the end is printed (`explain`), so that a leased or retrying delivery is told apart
from one never made:
  missing        a committed event that was never delivered
  not committed  a delivery of an event id with no committed row
  duplicates     an event delivered more than once (allowed: delivery is at least once, and a
                 receiver deduplicates by webhook-id; counted, not a failure)
"""

import collections
import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

mono = time.monotonic


class Receiver:
    """A webhook endpoint on 127.0.0.1 that acknowledges everything and remembers what came."""

    def __init__(self):
        self.seen = collections.Counter()   # event id -> deliveries
        self.last = None                    # monotonic time of the last delivery
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self):  # noqa: N802 (the name http.server calls)
                self.rfile.read(int(self.headers.get('Content-Length') or 0))
                with lock:
                    receiver.seen[self.headers.get('webhook-id', '')] += 1
                    receiver.last = mono()
                self.send_response(204)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = 'http://127.0.0.1:%d/hook' % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def service_env():
    """What the service needs to deliver to a receiver on loopback over plain HTTP."""
    return {'CUSTOMERS_API__WEBHOOKS__ALLOW_HTTP': 'true',
            'CUSTOMERS_API__WEBHOOKS__ALLOW_PRIVATE_NETWORKS': 'true'}


def register(svc, url):
    """Creates the service tenant's webhook to `url` (every event type); returns its id."""
    key = 'hook-%d-%d' % (os.getpid(), random.getrandbits(40))
    body = json.dumps({'url': url, 'description': 'ha-drill receiver'})
    deadline = mono() + 30
    while True:
        s, _, b, conn = svc.request('POST', '/v1/webhooks', body=body,
                                    headers={'Content-Type': 'application/json', 'Idempotency-Key': key})
        if conn:
            conn.close()
        if s in (200, 201):
            return json.loads(b)['id']
        if mono() > deadline:
            raise SystemExit('could not create the %s webhook: %s %s' % (svc.mode, s, b[:300]))
        time.sleep(0.5)


def settle_and_check(receiver, committed, settle_max, explain=None):
    """Waits for the deliveries of `committed` (event ids), then compares; returns a summary.
    `explain(event_ids)` returns lines on what the database holds for events still missing."""
    t0 = mono()
    while set(committed) - set(receiver.seen) and mono() - t0 <= settle_max:
        time.sleep(0.5)
    seen = dict(receiver.seen)
    missing = sorted(set(committed) - set(seen))
    stray = sorted(set(seen) - set(committed))
    dups = {i: n for i, n in seen.items() if n > 1}
    failures = []
    if missing:
        failures.append('%d committed events never delivered (e.g. %s)' % (len(missing), missing[0]))
        if explain:
            failures += explain(missing[:5])
    if stray:
        failures.append('%d deliveries of no committed event (e.g. %s)' % (len(stray), stray[0]))
    return dict(committed=len(committed), delivered=len(set(seen) & set(committed)),
                deliveries=sum(seen.values()), missing=len(missing), not_committed=len(stray),
                duplicates=sum(n - 1 for n in dups.values()), settle=mono() - t0, failures=failures)


def table(summaries):
    head = ('| mode | events committed | delivered | deliveries | missing | not committed '
            '| duplicates | settled after s | result |')
    lines = [head, '|' + ' --- |' * (head.count('|') - 1)]
    for mode, m in summaries.items():
        lines.append('| %s | %d | %d | %d | %d | %d | %d | %.1f | %s |' % (
            mode, m['committed'], m['delivered'], m['deliveries'], m['missing'], m['not_committed'],
            m['duplicates'], m['settle'], 'FAIL' if m['failures'] else 'ok'))
    return '\n'.join(lines)
