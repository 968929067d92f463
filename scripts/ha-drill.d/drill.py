"""The failover drill of scripts/ha-drill (issue 14): keyed write load on customers-api across
Patroni failovers, in two connection modes at once, checked against the database afterwards.

Run by scripts/ha-drill with Debian's python3 (psycopg2 comes with the cluster's packages) in a
virtualenv with nats-py (scripts/scale-drill.d/venv), which jetstream.py reads the streams with.
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

Events (issue 14): each service publishes its events to NATS JetStream (DRILL_NATS_URL), into a
stream and subjects of its own per run and mode (HA_<nonce>_<MODE>, ha<nonce><mode>.>), and each
mode has a database of its own (customers_drill_<mode>): the relay publishes every tenant of its
database, so two services on one database would split the events between their streams. After
the last event the drill waits until each relay's backlog (`events_unpublished` in /metrics) is 0,
at most DRILL_SETTLE_MAX (60 s), reads every message of each stream with its headers
(jetstream.py, beside this file) and every committed event row of the tenant from the new
primary, and checks, per event (each event's customers are its own):
  not in stream  a committed event row whose id is not a message's Nats-Msg-Id (lost)
  not committed  a message whose Nats-Msg-Id is not a committed event row
  duplicates     a Nats-Msg-Id more than once in the stream (after JetStream's de-duplication)
  out of order   a customer whose messages are not in version order in the stream
  acked w/o event an acknowledged PATCH (status 200, ETag version v) with no event of version v
                 in the database and the stream that carries its Idempotency-Key and its value
  history gaps   a customer whose event rows are not exactly versions 1..its version
The streams are deleted at the end.

Webhooks (DRILL_WEBHOOKS=1, the default): each service delivers its tenant's events to a receiver
on 127.0.0.1 throughout the drill; after the last event every committed event must have been
delivered (webhooks.py, beside this file, says how it is counted).
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

import jetstream
import webhooks

mono = time.monotonic
WALL = time.time() - mono()      # mono() + WALL: the wall clock, which NATS and PostgreSQL stamp with
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
DB = env('DRILL_DATABASE', 'customers_drill')     # the probes' table; each mode has DB_<mode>
NATS_URL = env('DRILL_NATS_URL', 'nats://127.0.0.1:4222')   # empty: no publishing, no event checks
SETTLE_MAX = float(env('DRILL_SETTLE_MAX', '60'))
WEBHOOKS = env('DRILL_WEBHOOKS', '1') == '1'
WEBHOOK_SETTLE_MAX = float(env('DRILL_WEBHOOK_SETTLE_MAX', '120'))
NONCE = '%s%s' % (os.urandom(2).hex(), '%x' % (os.getpid() % 4096))
NODES = int(env('HA_NODES', '3'))
PROXY_PORT = int(env('HA_PROXY_PORT', '5440'))
PG_PORT = int(env('HA_PG_PORT', '5441'))
REST_PORT = int(env('HA_REST_PORT', '8008'))
PORTS = [PG_PORT + i for i in range(NODES)]


def mode_db(mode):
    return '%s_%s' % (DB, mode)


URLS = {
    'proxy': 'postgres://postgres:postgres@127.0.0.1:%d/%s' % (PROXY_PORT, mode_db('proxy')),
    'multihost': 'postgres://postgres:postgres@%s/%s?target_session_attrs=read-write'
                 % (','.join('127.0.0.1:%d' % p for p in PORTS), mode_db('multihost')),
}


def check_dsn(db=DB):
    """Through the proxy: the current primary."""
    return 'host=127.0.0.1 port=%d user=postgres password=postgres dbname=%s connect_timeout=2' % (PROXY_PORT, db)


def deliveries_of(db, event_ids):
    """What webhook_deliveries holds for `event_ids`, one line per delivery (none: never made)."""
    c = check_connect(db)
    try:
        with c.cursor() as cur:
            cur.execute("""SELECT e.id, d.id, d.status, d.attempts, d.claims,
                                  round(extract(epoch FROM d.next_attempt_at - now())::numeric, 1),
                                  round(extract(epoch FROM d.leased_until - now())::numeric, 1)
                             FROM unnest(%s::text[]) AS e(id)
                             LEFT JOIN webhook_deliveries d ON d.event_id = e.id""", (list(event_ids),))
            return ['%s: %s' % (e, 'no delivery was made' if d is None else
                                '%s %s, %d attempts, %d claims, due in %s s, leased for %s s more'
                                % (d, st, att, cl, due, lease))
                    for e, d, st, att, cl, due, lease in cur.fetchall()]
    finally:
        c.close()


def check_connect(db=DB):
    for _ in range(50):
        try:
            return psycopg2.connect(check_dsn(db))
        except Exception:
            time.sleep(0.5)
    return psycopg2.connect(check_dsn(db))


def stream_of(mode):
    return 'HA_%s_%s' % (NONCE, mode.upper())


def prefix_of(mode):
    return 'ha%s%s' % (NONCE, mode)


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
        raise SystemExit('%s %s failed:\n%s' % (HA, ' '.join(args), r.stdout))
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
        if NATS_URL:
            e.update({'CUSTOMERS_API__EVENTS__NATS_URL': NATS_URL,
                      'CUSTOMERS_API__EVENTS__STREAM': stream_of(mode),
                      'CUSTOMERS_API__EVENTS__SUBJECT_PREFIX': prefix_of(mode)})
        if WEBHOOKS:
            e.update(webhooks.service_env())
        scopes = 'customers:read customers:write webhooks:manage'
        self.token = subprocess.run([BIN, 'token', '--org', self.org, '--scope', scopes, '--ttl', '3h'],
                                    env=e, cwd=REPO,
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

    def unpublished(self):
        """`events_unpublished` of /metrics, or None (no answer, or the backlog not counted)."""
        s, b = self.get('/metrics', timeout=5)
        if s != 200:
            return None
        for line in b.decode(errors='replace').splitlines():
            if line.startswith('events_unpublished '):
                return int(float(line.split()[1]))
        return None

    def create_customers(self, n):
        ids, conn = [], None
        key = None
        while len(ids) < n:
            # A retry keeps its key: a creation that committed unseen is not made twice.
            key = key or 'c-%d-%d' % (os.getpid(), random.getrandbits(48))
            s, h, b, conn = self.request('POST', '/v1/customers', body='{}', conn=conn,
                                         headers={'Content-Type': 'application/json', 'Idempotency-Key': key})
            if s in (200, 201):
                ids.append(json.loads(b)['id'])
                key = None
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
    return results, runs


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
    conn = check_connect(mode_db(mode))
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
             flip_wall=(flip + WALL) if flip is not None else None,
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


# ---------------------------------------------------------------------------------------------
# Events: the outbox relay across the same failovers
# ---------------------------------------------------------------------------------------------

def settle(services):
    """Waits until every relay's backlog is 0, at most SETTLE_MAX; {mode: (seconds, backlog)}."""
    t0, out = mono(), {}
    while True:
        for mode, svc in services.items():
            if mode in out:
                continue
            n = svc.unpublished()
            if n == 0:
                out[mode] = (mono() - t0, 0)
            elif mono() - t0 > SETTLE_MAX:
                out[mode] = (mono() - t0, n)
        if len(out) == len(services):
            return out
        time.sleep(0.25)


def check_events(mode, svc, history, settled):
    """Compares the mode's stream with its committed event rows and the acknowledged writes.
    `history` is [(event, run)] for this mode; adds the figures to each event's result and
    returns the mode's summary."""
    conn = check_connect(mode_db(mode))
    cur = conn.cursor()
    cur.execute('SELECT id, customer_id, version, type, body::text, EXTRACT(EPOCH FROM recorded_at)::float8 '
                'FROM customer_events WHERE org_id = %s', (svc.org,))
    rows = {i: dict(customer=c, version=v, type=t, body=b, recorded=rec)
            for i, c, v, t, b, rec in cur.fetchall()}
    customers = [c for _, run in history for c in run['customers']]
    cur.execute('SELECT id, version FROM customers WHERE id = ANY(%s)', (customers,))
    versions = dict(cur.fetchall())
    conn.close()
    summary = dict(mode=mode, stream=stream_of(mode), committed=len(rows), settle=settled[0],
                   unpublished=settled[1], messages=None, unattributed=0, missing=0, uncommitted=0,
                   duplicates=0, failures=[])
    if settled[1] != 0:
        summary['failures'].append('the relay did not catch up within %g s (events_unpublished %s)'
                                   % (SETTLE_MAX, settled[1]))
    js = None
    try:
        js = jetstream.JetStream(NATS_URL)
        messages = js.messages(stream_of(mode))
    except (OSError, jetstream.NatsError) as e:
        messages = None
        summary['failures'].append('cannot read the stream %s: %s' % (stream_of(mode), e))
    finally:
        if js:
            js.close()
    if messages is None:
        messages = []
        if not summary['failures']:
            summary['failures'].append('the stream %s does not exist' % stream_of(mode))
    summary['messages'] = len(messages)
    owner = {c: event for event, run in history for c in run['customers']}
    # The stream, per customer, in stream order: (msg id, version as the body says, body).
    in_stream = collections.Counter()
    by_customer = collections.defaultdict(list)
    for m in messages:
        mid = m['headers'].get('Nats-Msg-Id')
        in_stream[mid] += 1
        try:
            body = json.loads(m['data'])
            customer, version = body['customerId'], body['version']
        except (ValueError, KeyError, TypeError):
            customer, version = None, None
        by_customer[customer].append((mid, version, m['data'], m['time']))
    # The whole stream against all the tenant's rows, whoever they belong to.
    summary['missing'] = sum(1 for i in rows if not in_stream[i])
    summary['uncommitted'] = sum(n for i, n in in_stream.items() if i not in rows)
    summary['duplicates'] = sum(n - 1 for n in in_stream.values())
    for what in ('missing', 'uncommitted', 'duplicates'):
        if summary[what]:
            summary['failures'].append('%d %s in all' % (summary[what], {
                'missing': 'committed events not in the stream', 'uncommitted': 'messages of no committed event',
                'duplicates': 'duplicate messages'}[what]))
    stray = [x for c, xs in by_customer.items() if c not in owner for x in xs]
    if stray:
        summary['unattributed'] = len(stray)
        summary['failures'].append('%d messages of no customer of the drill (e.g. %s)' % (len(stray), stray[0][0]))
    rows_by_customer = collections.defaultdict(dict)
    for i, r in rows.items():
        rows_by_customer[r['customer']][r['version']] = (i, r)
    for event, run in history:
        res = run['result']
        missing = uncommitted = dups = disorder = without = gaps = mismatch = committed = streamed = 0
        examples, lags, stored_at = [], [], []
        for c in run['customers']:
            crows = rows_by_customer.get(c, {})
            committed += len(crows)
            for i, r in crows.values():
                if not in_stream[i]:
                    missing += 1
                    examples.append('not in stream: %s %s v%d' % (i, c, r['version']))
            msgs = by_customer.get(c, [])
            streamed += len(msgs)
            seen = set()
            for mid, _, data, t in msgs:
                if t is not None:
                    stored_at.append(t)
                    if mid in rows:
                        lags.append(t - rows[mid]['recorded'])
                if mid not in rows:
                    uncommitted += 1
                    examples.append('not committed: %s on %s' % (mid, c))
                elif data.decode(errors='replace') != rows[mid]['body']:
                    mismatch += 1
                    examples.append('body differs from its row: %s' % mid)
                if mid in seen:
                    dups += 1
                    examples.append('duplicate: %s on %s' % (mid, c))
                seen.add(mid)
            vs = [v for _, v, _, _ in msgs]
            if any(not isinstance(v, int) for v in vs) or any(a >= b for a, b in zip(vs, vs[1:])):
                disorder += 1
                examples.append('out of order: %s versions in the stream %s' % (c, vs))
            if sorted(crows) != list(range(1, versions.get(c, 0) + 1)):
                gaps += 1
                examples.append('history: %s at version %s has events %s' % (c, versions.get(c), sorted(crows)))
        for ws in run['writes']:
            for w in ws:
                if w.status != 200:
                    continue
                i, r = rows_by_customer.get(w.customer, {}).get(w.version, (None, None))
                ok = r is not None and r['type'] == 'customer.updated' and in_stream[i] > 0
                if ok:
                    b = json.loads(r['body'])
                    ok = (b.get('idempotencyKey') == w.key and
                          (b.get('data', {}).get('object', {}).get('metadata') or {}).get('s%d' % w.slot) == str(w.seq))
                if not ok:
                    without += 1
                    examples.append('acknowledged without its event: %s v%s key %s (row %s)'
                                    % (w.customer, w.version, w.key, i))
        # How the relay fared across the failover (figures, not checks): the longest time from an
        # event's commit to its message in the stream, and from the flip (the new primary took
        # writes) to the first message the stream stored after it.
        flip = res.get('flip_wall')
        after = [t for t in stored_at if flip is not None and t >= flip]
        ev = dict(committed=committed, streamed=streamed, missing=missing, uncommitted=uncommitted,
                  duplicates=dups, disorder=disorder, acked_without_event=without, history_gaps=gaps,
                  body_mismatch=mismatch, max_lag=max(lags) if lags else None,
                  relay_back=(min(after) - flip) if after else None, examples=examples[:5])
        res['events'] = ev
        for n, what in ((missing, 'committed events not in the stream'),
                        (uncommitted, 'messages of no committed event'),
                        (dups, 'duplicate messages'),
                        (disorder, 'customers out of version order in the stream'),
                        (without, 'acknowledged PATCHes without their event'),
                        (gaps, 'customers whose event rows are not versions 1..version'),
                        (mismatch, 'messages whose body is not their row\'s')):
            if n:
                res['failures'].append('%d %s' % (n, what))
    return summary


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


def events_table(results, summaries):
    head = ('| event | mode | events committed | in stream | not in stream | not committed | duplicates '
            '| out of order | acked PATCH without event | max publication lag s | relay publishing again s | result |')
    lines = [head, '|' + ' --- |' * (head.count('|') - 1)]
    for r in results:
        e = r.get('events')
        if e is None:
            continue
        bad = (e['missing'] or e['uncommitted'] or e['duplicates'] or e['disorder']
               or e['acked_without_event'] or e['history_gaps'] or e['body_mismatch'])
        lines.append('| %s | %s | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s |' % (
            r['event'], r['mode'], e['committed'], e['streamed'], e['missing'], e['uncommitted'],
            e['duplicates'], e['disorder'], e['acked_without_event'], fmt(e['max_lag']),
            fmt(e['relay_back']), 'FAIL' if bad else 'ok'))
    for m in summaries:
        lines.append('| all | %s | %d | %s | %d | %d | %d | | | | | %s |' % (
            m['mode'], m['committed'], '-' if m['messages'] is None else m['messages'],
            m['missing'], m['uncommitted'], m['duplicates'],
            'FAIL' if m['failures'] or any(r['failures'] for r in results
                                           if r['mode'] == m['mode'] and r.get('events')) else 'ok'))
    return '\n'.join(lines)


def main():
    logdir = env('DRILL_LOGS', '/tmp')
    c = psycopg2.connect(check_dsn())
    c.autocommit = True
    cur = c.cursor()
    cur.execute('CREATE TABLE IF NOT EXISTS ha_drill_probe (id bigserial PRIMARY KEY, '
                'at timestamptz DEFAULT clock_timestamp(), port int DEFAULT inet_server_port())')
    for mode in MODES:
        # A database per mode: the relay publishes every tenant of its database.
        cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % mode_db(mode))
        cur.execute('CREATE DATABASE %s' % mode_db(mode))
    c.close()
    if NATS_URL:
        try:
            js = jetstream.JetStream(NATS_URL)
            js.account_info()
            js.close()
        except (OSError, jetstream.NatsError) as e:
            raise SystemExit('NATS JetStream at %s is not usable (%s); set DRILL_NATS_URL= to run '
                             'without publishing' % (NATS_URL, e))
        log('publishing to %s: streams %s' % (NATS_URL, ', '.join(stream_of(m) for m in MODES)))
    services = {}
    history = {mode: [] for mode in MODES}
    summaries = []
    results = []
    receivers, hook_summaries = {}, {}
    t0 = mono()
    try:
        for mode in MODES:
            services[mode] = Service(mode, logdir)
        log('services up in %.1fs (%s)' % (mono() - t0, ', '.join(MODES)))
        if WEBHOOKS:
            for mode, svc in services.items():
                receivers[mode] = webhooks.Receiver()
                log('%s: webhook %s to %s' % (mode, webhooks.register(svc, receivers[mode].url), receivers[mode].url))
        for n, event in enumerate(EVENTS):
            t = mono()
            res, runs = run_event(event, services, n)
            results += res
            for r in res:
                runs[r['mode']]['result'] = r
                history[r['mode']].append((event, runs[r['mode']]))
            for r in res:
                log('%s/%s: gap %.2fs, statuses %s, lost %d, exactly-once %d, db gap %s, serve again %s%s' % (
                    r['event'], r['mode'], r['gap'], r['statuses'], r['lost'], r['exactly_once'],
                    fmt(r['db_gap']), fmt(r['serve_again']),
                    '; FAILED: ' + '; '.join(r['failures']) if r['failures'] else ''))
                for e in r['examples']:
                    log('   ' + e)
            log('--- %s took %.1fs' % (event, mono() - t))
        if NATS_URL:
            t = mono()
            settled = settle(services)
            log('relays settled: %s' % ', '.join('%s %.1fs (backlog %s)' % (m, x[0], x[1])
                                                 for m, x in settled.items()))
            for mode, svc in services.items():
                m = check_events(mode, svc, history[mode], settled[mode])
                summaries.append(m)
                log('%s: %d events committed, %d messages in %s%s' % (
                    mode, m['committed'], m['messages'] or 0, m['stream'],
                    '; FAILED: ' + '; '.join(m['failures']) if m['failures'] else ''))
                for r in results:
                    if r['mode'] == mode and r.get('events'):
                        for e in r['events']['examples']:
                            log('   %s/%s %s' % (r['event'], mode, e))
            log('event checks took %.1fs (settling included)' % (mono() - t))
        for mode, receiver in receivers.items():
            c = check_connect(mode_db(mode))
            with c.cursor() as cur:
                cur.execute('SELECT id FROM customer_events WHERE org_id = %s', (services[mode].org,))
                committed = [r[0] for r in cur.fetchall()]
            c.close()
            m = hook_summaries[mode] = webhooks.settle_and_check(
                receiver, committed, WEBHOOK_SETTLE_MAX, explain=lambda ids, db=mode_db(mode): deliveries_of(db, ids))
            log('%s: %d events committed, %d delivered (%d deliveries) after %.1fs%s' % (
                mode, m['committed'], m['delivered'], m['deliveries'], m['settle'],
                '; FAILED: ' + '; '.join(m['failures']) if m['failures'] else ''))
    finally:
        for receiver in receivers.values():
            receiver.close()
        for svc in services.values():
            svc.stop()
        if NATS_URL and env('DRILL_KEEP_STREAMS', '0') != '1':
            try:
                js = jetstream.JetStream(NATS_URL)
                for mode in MODES:
                    js.delete_stream(stream_of(mode))
                js.close()
            except (OSError, jetstream.NatsError) as e:
                log('could not delete the streams %s: %s' % (', '.join(stream_of(m) for m in MODES), e))
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
    if summaries:
        print()
        print(events_table(results, summaries))
        print()
        print('Relay backlog 0 after the last event: %s' % ', '.join(
            '%s %s' % (m['mode'], 'in %.1f s' % m['settle'] if m['unpublished'] == 0
                       else 'NOT within %g s (%s left)' % (SETTLE_MAX, m['unpublished'])) for m in summaries))
    elif not NATS_URL:
        print('Events: not published (DRILL_NATS_URL is empty), not checked')
    if hook_summaries:
        print()
        print(webhooks.table(hook_summaries))
    failed = [r for r in results if r['failures']]
    for r in failed:
        print('FAILED %s/%s: %s' % (r['event'], r['mode'], '; '.join(r['failures'])))
    for m in summaries:
        if m['failures']:
            print('FAILED events/%s: %s' % (m['mode'], '; '.join(m['failures'])))
    with open(os.path.join(logdir, 'ha-drill.json'), 'w') as f:
        json.dump({'results': results, 'events': summaries, 'webhooks': hook_summaries}, f, indent=1)
    for mode, m in hook_summaries.items():
        if m['failures']:
            print('FAILED webhooks/%s: %s' % (mode, '; '.join(m['failures'])))
    return 1 if (failed or lost_lines or any(m['failures'] for m in summaries)
                 or any(m['failures'] for m in hook_summaries.values())) else 0


if __name__ == '__main__':
    sys.exit(main())
