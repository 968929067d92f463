#!/usr/bin/env python3
"""Helpers of scripts/bench.d/webhooks.sh (standard library only).

  webhooks.py create BASE TOKEN URL...            -> creates one webhook per URL (every event
                                                     type), prints their ids
  webhooks.py write BASE TOKEN IDS_FILE RATE CONC -> one PATCH per customer id of IDS_FILE, from
                                                     CONC threads on keep-alive connections, at
                                                     RATE requests/s overall (0: as fast as they
                                                     go); prints JSON: requests, errors, seconds
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse


def connection(base):
    u = urllib.parse.urlsplit(base)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def create(base, token, urls):
    conn = connection(base)
    for url in urls:
        body = json.dumps({"url": url, "events": [], "description": "bench"})
        conn.request("POST", "/v1/webhooks", body, {
            "Authorization": "Bearer " + token, "Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read()
        if resp.status != 201:
            sys.exit("create webhook: %s %s" % (resp.status, text[:300]))
        print(json.loads(text)["id"])


def write(base, token, ids_file, rate, concurrency):
    with open(ids_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    rate, concurrency = float(rate), int(concurrency)
    lock = threading.Lock()
    state = {"next": 0, "errors": 0, "done": 0}
    start = time.monotonic()

    def worker():
        conn = connection(base)
        while True:
            with lock:
                i = state["next"]
                if i >= len(ids):
                    return
                state["next"] = i + 1
            if rate > 0:
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            body = '{"policy":{"limits":{"perDay":%d}}}' % (60001 + i % 90000)
            try:
                conn.request("PATCH", "/v1/customers/" + ids[i], body, {
                    "Authorization": "Bearer " + token,
                    "Content-Type": "application/merge-patch+json"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except OSError:
                conn.close()
                conn = connection(base)
                ok = False
            with lock:
                state["done"] += 1
                if not ok:
                    state["errors"] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"requests": state["done"], "errors": state["errors"],
                      "seconds": round(time.monotonic() - start, 3)}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "create":
        create(args[0], args[1], args[2:])
    elif cmd == "write":
        write(*args)
    else:
        sys.exit(__doc__)
