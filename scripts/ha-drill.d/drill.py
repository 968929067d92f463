"""The failover drill of scripts/ha-drill (issue 14): keyed write load on customers-api across
Patroni failovers, in two connection modes at once, checked against the database afterwards.

Run by scripts/ha-drill with Debian's python3 (psycopg2 comes with the cluster's packages).
For each mode (through HAProxy, and with a multi-host URL) one service process runs, with
CLIENTS writers of its own. For each EVENT in turn: wait until the cluster is settled, create
customers, start the load, fire the event, keep the load running until the service has written
again for a while (and, for freeze-node, until well after the thaw), drain, check.

A writer sends PATCHes one after another, each with its own Idempotency-Key, and retries the
same request with the same key after a 503, a 409 (key still in flight) or a dropped connection,
until it gets a definite answer. Each PATCH sets one metadata slot of a customer to the
request's sequence number; a customer gets SLOTS writes, each to its own slot, so every
acknowledged change can be looked up afterwards:
  lost           an acknowledged PATCH whose slot does not hold its value
  exactly-once   a customer's version is not 1 + the number of distinct keys that succeeded on
                 it, or two acknowledged PATCHes on it report the same version
"""

import collections
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import psycopg2

mono = time.monotonic
env = os.environ.get

BIN = env('DRILL_BIN')
HA = env('DRILL_HA')
REPO = env('DRILL_REPO', '.')
EVENTS = env('DRILL_EVENTS', 'kill-primary kill-node freeze-node switchover').split()
MODES = env('DRILL_MODES', 'proxy multihost').split()
CLIENTS = int(env('DRILL_CLIENTS', '8'))
RATE = float(env('DRILL_RATE', '10'))             # new writes per second per client
WARMUP = float(env('DRILL_WARMUP', '3'))
TAIL = float(env('DRILL_TAIL', '5'))              # seconds of writes after the service is back
EVENT_MAX = float(env('DRILL_EVENT_MAX', '60'))
FREEZE = float(env('HA_FREEZE_SECONDS', '20'))
RETRY_PAUSE = float(env('DRILL_RETRY_PAUSE', '0.2'))
SERVE_AGAIN_MAX = float(env('DRILL_SERVE_AGAIN_MAX', '2'))
ACQUIRE = float(env('DRILL_ACQUIRE_TIMEOUT', '2'))
STATEMENT = float(env('DRILL_STATEMENT_TIMEOUT', '5'))
BOUND = ACQUIRE + STATEMENT                      # no answer may take longer
SLOTS = 40
DB = env('DRILL_DATABASE', 'customers_drill')
NODES = int(env('HA_NODES', '3'))
PROXY_PORT = int(env('HA_PROXY_PORT', '5440'))
PG_PORT = int(env('HA_PG_PORT', '5441'))
REST_PORT = int(env('HA_REST_PORT', '8008'))
PORTS = [PG_PORT + i for i in range(NODES)]
URLS = {
    'proxy': 'postgres://postgres:postgres@127.0.0.1:%d/%s' % (PROXY_PORT, DB),
    'multihost': 'postgres://postgres:postgres@%s/%s?target_session_attrs=read-write'
                 % (','.join('127.0.0.1:%d' % p for p in PORTS), DB),
}
CHECK_DSN = 'host=127.0.0.1 port=%d user=postgres password=postgres dbname=%s connect_timeout=2' % (PROXY_PORT, DB)


def log(*a):
    print(time.strftime('%H:%M:%S'), *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ha(*args, check=True):
    r = subprocess.run([HA, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise SystemExit('patroni-cluster.sh %s failed:\n%s' % (' '.join(args), r.stdout))
    return r


def primary_port():
    for i in range(NODES):
        try:
            urllib.request.urlopen('http://127.0.0.1:%d/primary' % (REST_PORT + i), timeout=1)
            return PORTS[i]
        except Exception:
            pass
    return None


# ---------------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------------

class Service:
    def __init__(self, mode, logdir):
        self.mode, self.port = mode, free_port()
        self.org = 'org_drill_%s_%d' % (mode, os.getpid())
        self.log_path = os.path.join(logdir, 'service-%s.log' % mode)
        e = {'PATH': os.environ['PATH'], 'HOST': '127.0.0.1', 'PORT': str(self.port),
             'DATABASE_URL': URLS[mode], 'RUST_LOG': 'info,sqlx=warn',
             'CUSTOMERS_API__DATABASE__ACQUIRE_TIMEOUT': '%gs' % ACQUIRE,
             'CUSTOMERS_API__DATABASE__STATEMENT_TIMEOUT': '%gs' % STATEMENT}
        self.token = subprocess.run([BIN, 'token', '--org', self.org, '--ttl', '3h'], env=e, cwd=REPO,
                                    check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        self.proc = subprocess.Popen([BIN], env=e, cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=open(self.log_path, 'wb'), stderr=subprocess.STDOUT)
        deadline = mono() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit('the %s service exited at start; see %s' % (mode, self.log_path))
            if self.get('/readyz', timeout=3)[0] == 200:
                break
            if mono() > deadline:
                raise SystemExit('the %s service did not become ready' % mode)
            time.sleep(0.2)

    def request(self, method, path, body=None, headers=None, conn=None, timeout=BOUND + 10):
        """(status or 'drop', headers, body, conn) — conn is reused when given."""
        h = {'Authorization': 'Bearer ' + self.token}
        h.update(headers or {})
        try:
            if conn is None:
                conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, r.headers, data, conn
        except (OSError, http.client.HTTPException):
            try:
                conn.close()
            except Exception:
                pass
            return 'drop', {}, b'', None

    def get(self, path, timeout=BOUND + 10):
        s, h, b, c = self.request('GET', path, timeout=timeout)
        if c:
            c.close()
        return s, b

    def create_customers(self, n):
        ids, conn = [], None
        while len(ids) < n:
            s, h, b, conn = self.request('POST', '/v1/customers', body='{}', conn=conn,
                                         headers={'Content-Type': 'application/json',
                                                  'Idempotency-Key': 'c-%d-%d' % (os.getpid(), random.getrandbits(48))})
            if s in (200, 201):
                ids.append(json.loads(b)['id'])
            else:
                time.sleep(0.2)
        if conn:
            conn.close()
        return ids

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Load, probes
# ---------------------------------------------------------------------------------------------

class Write:
    __slots__ = ('customer', 'slot', 'seq', 'key', 'attempts', 'status', 'version', 'replayed')

    def __init__(self, customer, slot, seq, key):
        self.customer, self.slot, self.seq, self.key = customer, slot, seq, key
        self.attempts = []          # (t0, t1, status)
        self.status = self.version = None
        self.replayed = False


def writer(svc, tag, customers, stop, writes):
    conn, seq, nxt = None, 0, mono()
    while not stop.is_set() and seq < len(customers) * SLOTS:
        customer, slot = customers[seq // SLOTS], seq % SLOTS
        w = Write(customer, slot, seq, '%s-%d' % (tag, seq))
        writes.append(w)
        body = json.dumps({'metadata': {'s%d' % slot: str(seq)}})
        hdr = {'Content-Type': 'application/merge-patch+json', 'Idempotency-Key': w.key}
        give_up = mono() + 120
        while True:
            t0 = mono()
            s, h, b, conn = svc.request('PATCH', '/v1/customers/' + customer, body=body, headers=hdr, conn=conn)
            w.attempts.append((t0, mono(), s))
            if s == 200:
                w.status, w.replayed = 200, h.get('Idempotent-Replayed') == 'true'
                w.version = int(h.get('ETag', '"0"').strip('"'))
                break
            if s == 503 or s == 'drop' or (s == 409 and b'idempotency_request_in_progress' in b):
                if mono() > give_up:
                    break        # unsettled: counted and failed
                time.sleep(RETRY_PAUSE)
                continue
            w.status = s         # a definite answer that is not a success: 500, 4xx
            break
        seq += 1
        nxt = max(nxt + 1.0 / RATE, mono() - 1.0 / RATE)
        time.sleep(max(0.0, nxt - mono()))
    if conn:
        conn.close()


def readyz_poller(svc, stop, out):
    while not stop.is_set():
        t0 = mono()
        s, _ = svc.get('/readyz', timeout=BOUND + 5)
        out.append((t0, mono(), s))
        time.sleep(0.25)


def node_prober(port, stop, out):
    """Records (t, port) each time `port` took a write (an INSERT on a primary)."""
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = psycopg2.connect(host='127.0.0.1', port=port, user='postgres', password='postgres',
                                        dbname=DB, connect_timeout=2, application_name='ha-drill-probe')
                conn.autocommit = True
            cur = conn.cursor()
            cur.execute('SELECT pg_is_in_recovery(), inet_server_port()')
            rec, srv = cur.fetchone()
            if not rec:
                cur.execute('INSERT INTO ha_drill_probe DEFAULT VALUES')
                out.append((mono(), srv))
        except Exception:
            try:
                conn and conn.close()
            except Exception:
                pass
            conn = None
            time.sleep(0.05)
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# One event
# ---------------------------------------------------------------------------------------------

def first_after(times, t):
    return next((x for x in times if x >= t), None)


def run_event(event, services, round_no):
    log('--- %s: waiting for a settled cluster' % event)
    ha('wait')
    old = primary_port()
    need = int((EVENT_MAX + WARMUP + (FREEZE if event == 'freeze-node' else 0)) * RATE / SLOTS) + 2
    runs = {}
    for mode, svc in services.items():
        custs = svc.create_customers(need * CLIENTS)
        runs[mode] = {'customers': custs, 'writes': [[] for _ in range(CLIENTS)], 'readyz': []}
    stop_load, stop_probe = threading.Event(), threading.Event()
    probes = {p: [] for p in PORTS + [PROXY_PORT]}
    threads = []
    for p, out in probes.items():
        t = threading.Thread(target=node_prober, args=(p, stop_probe, out), daemon=True)
        t.start()
    for mode, svc in services.items():
        r = runs[mode]
        for c in range(CLIENTS):
            t = threading.Thread(target=writer, daemon=True, args=(
                svc, 'd%d-%s-%s-%d-%d' % (os.getpid(), event, mode, round_no, c),
                r['customers'][c * need:(c + 1) * need], stop_load, r['writes'][c]))
            t.start()
            threads.append(t)
        t = threading.Thread(target=readyz_poller, args=(svc, stop_load, r['readyz']), daemon=True)
        t.start()
        threads.append(t)
    time.sleep(WARMUP)
    log('--- %s: firing (primary on port %s)' % (event, old))
    t_event = mono()
    out = ha(event).stdout
    t_fired = mono()
    # Keep the load on until every mode wrote again for TAIL seconds after its last failure
    # (and, for a frozen primary, until TAIL seconds after the thaw).
    min_end = t_event + (FREEZE + 8 if event == 'freeze-node' else TAIL)
    while True:
        time.sleep(0.5)
        now = mono()
        if now - t_event > EVENT_MAX + (FREEZE if event == 'freeze-node' else 0):
            log('--- %s: still failing after the maximum; stopping' % event)
            break
        if now < min_end:
            continue
        done = True
        for mode in services:
            atts = [a for ws in runs[mode]['writes'] for w in list(ws) for a in w.attempts if a[0] >= t_event]
            fails = [a[1] for a in atts if a[2] != 200]
            oks = [a[1] for a in atts if a[2] == 200]
            last_fail = max(fails) if fails else t_event
            if not oks or max(oks) < last_fail or now - last_fail < TAIL:
                done = False
        if done:
            break
    stop_load.set()
    for t in threads:
        t.join(130)
    stop_probe.set()
    t_end = mono()
    if event == 'kill-node':
        log('--- %s: bringing the killed node back' % event)
        ha('up')
    results = []
    for mode in services:
        results.append(judge(event, mode, runs[mode], probes, old, t_event, t_fired, t_end))
    return results, out


def judge(event, mode, run, probes, old, t_event, t_fired, t_end):
    writes = [w for ws in run['writes'] for w in ws]
    atts = [a for w in writes for a in w.attempts]
    statuses = collections.Counter(str(a[2]) for a in atts)
    oks = sorted(a[1] for a in atts if a[2] == 200)
    # Unavailability: the longest time without an acknowledged write, around the event.
    window = [t for t in oks if t >= t_event - 2]
    gap, gap_end = 0.0, None
    for a, b in zip(window, window[1:]):
        if b - a > gap:
            gap, gap_end = b - a, b
    # What a bare libpq client saw, writing every 50 ms through the proxy (proxy mode) or on
    # each node (multi-host mode): its last write on the old primary, and its first on the new
    # one (the flip).
    seen = probes[PROXY_PORT] if mode == 'proxy' else sorted(x for port in PORTS for x in probes[port])
    flips = [t for t, p in seen if t >= t_event and p != old]
    flip = flips[0] if flips else None
    down = max((t for t, p in seen if p == old and (flip is None or t < flip)), default=t_event)
    first_ok = first_after(oks, flip) if flip is not None else None
    serve_again = (first_ok - flip) if first_ok is not None else None
    if serve_again is not None and gap_end is not None and gap_end < flip:
        serve_again = 0.0      # never stopped serving past the flip
    slow = [a for a in atts if a[1] - a[0] > BOUND]
    unsettled = [w for w in writes if w.status is None]
    # Against the database.
    by_customer = collections.defaultdict(list)
    for w in writes:
        by_customer[w.customer].append(w)
    conn = None
    for _ in range(50):
        try:
            conn = psycopg2.connect(CHECK_DSN)
            break
        except Exception:
            time.sleep(0.5)
    cur = conn.cursor()
    cur.execute('SELECT id, version, metadata FROM customers WHERE id = ANY(%s)', (list(by_customer),))
    stored = {i: (v, m) for i, v, m in cur.fetchall()}
    conn.close()
    lost = dup = 0
    examples = []
    for customer, ws in by_customer.items():
        version, metadata = stored.get(customer, (1, {}))
        acked = [w for w in ws if w.status == 200]
        for w in acked:
            if metadata.get('s%d' % w.slot) != str(w.seq):
                lost += 1
                examples.append('lost: %s slot %d seq %d' % (customer, w.slot, w.seq))
        open_ = len([w for w in ws if w.status is None])
        versions = [w.version for w in acked]
        extra = version - 1 - len(acked)
        if not (0 <= extra <= open_) or len(set(versions)) != len(versions):
            dup += 1
            examples.append('exactly-once: %s version %d, %d acknowledged keys, %d unsettled, versions %s'
                            % (customer, version, len(acked), open_, sorted(versions)))
    rz = run['readyz']
    rz_503 = [x for x in rz if x[2] == 503 and x[0] >= t_event]
    rz_back = None
    if rz_503 and flip is not None:
        last_bad = max(x[1] for x in rz_503)
        back = first_after([x[1] for x in rz if x[2] == 200], last_bad)
        rz_back = back - flip if back is not None else None
    rz_slowest = max((x[1] - x[0] for x in rz if x[0] >= t_event), default=0)
    replays_after_failure = sum(1 for w in writes if w.replayed and len(w.attempts) > 1)
    r = dict(event=event, mode=mode, writes=len(writes), gap=gap, statuses=dict(statuses),
             lost=lost, exactly_once=dup, e500=statuses.get('500', 0), slow=len(slow),
             slowest=max((a[1] - a[0] for a in atts), default=0), unsettled=len(unsettled),
             db_gap=(flip - down) if flip is not None else None, serve_again=serve_again,
             readyz_503=len(rz_503), readyz_back=rz_back, readyz_slowest=rz_slowest,
             replays_after_failure=replays_after_failure, examples=examples[:5],
             other=sum(n for s, n in statuses.items() if s not in ('200', '503', '409', 'drop')))
    failures = []
    if lost:
        failures.append('%d acknowledged writes lost' % lost)
    if dup:
        failures.append('%d customers violate exactly-once' % dup)
    if r['e500']:
        failures.append('%d answers 500' % r['e500'])
    if slow:
        failures.append('%d answers slower than %.1f s' % (len(slow), BOUND))
    if unsettled:
        failures.append('%d writes never got a definite answer' % len(unsettled))
    if r['other']:
        failures.append('%d unexpected statuses' % r['other'])
    if serve_again is None:
        failures.append('the database or the service never took writes again')
    elif serve_again > SERVE_AGAIN_MAX:
        failures.append('served again %.2f s after the flip (target %.1f s)' % (serve_again, SERVE_AGAIN_MAX))
    # /readyz waits up to acquire_timeout for a primary: a shorter outage may pass unnoticed.
    if r['db_gap'] is not None and r['db_gap'] > ACQUIRE + 1 and not rz_503:
        failures.append('/readyz never said 503 during the outage')
    r['failures'] = failures
    return r


def fmt(x, p=2):
    return '-' if x is None else ('%.*f' % (p, x))


def table(results):
    head = ('| event | mode | writes | unavailable s | 200 | 503 | 409 | dropped | 500 | lost | exactly-once '
            '| slowest s | > %g s | db unavailable s | serve again s | /readyz 503 | /readyz 200 again s | result |'
            % BOUND)
    lines = [head, '|' + ' --- |' * (head.count('|') - 1)]
    for r in results:
        s = r['statuses']
        lines.append('| %s | %s | %d | %s | %d | %d | %d | %d | %d | %d | %d | %s | %d | %s | %s | %d | %s | %s |' % (
            r['event'], r['mode'], r['writes'], fmt(r['gap']), s.get('200', 0), s.get('503', 0),
            s.get('409', 0), s.get('drop', 0), r['e500'], r['lost'], r['exactly_once'],
            fmt(r['slowest']), r['slow'], fmt(r['db_gap']), fmt(r['serve_again']), r['readyz_503'],
            fmt(r['readyz_back']), 'ok' if not r['failures'] else 'FAIL'))
    return '\n'.join(lines)


def main():
    logdir = env('DRILL_LOGS', '/tmp')
    c = psycopg2.connect(CHECK_DSN)
    c.autocommit = True
    c.cursor().execute('CREATE TABLE IF NOT EXISTS ha_drill_probe (id bigserial PRIMARY KEY, '
                       'at timestamptz DEFAULT clock_timestamp(), port int DEFAULT inet_server_port())')
    c.close()
    services = {}
    t0 = mono()
    try:
        for mode in MODES:
            services[mode] = Service(mode, logdir)
        log('services up in %.1fs (%s)' % (mono() - t0, ', '.join(MODES)))
        results = []
        for n, event in enumerate(EVENTS):
            t = mono()
            res, _ = run_event(event, services, n)
            results += res
            for r in res:
                log('%s/%s: gap %.2fs, statuses %s, lost %d, exactly-once %d, db gap %s, serve again %s%s' % (
                    r['event'], r['mode'], r['gap'], r['statuses'], r['lost'], r['exactly_once'],
                    fmt(r['db_gap']), fmt(r['serve_again']),
                    '; FAILED: ' + '; '.join(r['failures']) if r['failures'] else ''))
                for e in r['examples']:
                    log('   ' + e)
            log('--- %s took %.1fs' % (event, mono() - t))
    finally:
        for svc in services.values():
            svc.stop()
    lost_lines = 0
    for svc in services.values():
        with open(svc.log_path, errors='replace') as f:
            text = f.read()
        if 'postgres:postgres@' in text or 'panicked' in text:
            lost_lines += 1
            log('the %s service log holds a URL with a password or a panic: %s' % (svc.mode, svc.log_path))
    print(table(results))
    print()
    print('Retried writes that had in fact committed (answered by a replay): %s' % ', '.join(
        '%s/%s %d' % (r['event'], r['mode'], r['replays_after_failure']) for r in results))
    print('Slowest /readyz during the events: %.2f s' % max((r['readyz_slowest'] for r in results), default=0))
    failed = [r for r in results if r['failures']]
    for r in failed:
        print('FAILED %s/%s: %s' % (r['event'], r['mode'], '; '.join(r['failures'])))
    with open(os.path.join(logdir, 'ha-drill.json'), 'w') as f:
        json.dump(results, f, indent=1)
    return 1 if failed or lost_lines else 0


if __name__ == '__main__':
    sys.exit(main())
