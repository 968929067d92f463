"""The scale-out drill of scripts/scale-drill (issue 21): INSTANCES service processes on one
database behind HAProxy (balancer.py), keyed writers through the balancer, and events fired
under that load, each checked against the database and the JetStream stream afterwards.

Events (SCALE_EVENTS, in order):
  kill              SIGKILL one instance (a different one each time) with requests in flight,
                    start it again, wait until it is back in the balancer's rotation
  rolling           a rolling restart: for each instance in turn SIGTERM, wait for its exit,
                    start it again, wait for /readyz, wait until the balancer routes to it
  nats-kill-leader  (on nats-cluster, beside this file) SIGKILL the NATS server leading the stream,
                    start it again
  nats-freeze       SIGSTOP a NATS server (the stream's leader) for SCALE_NATS_FREEZE (20 s), SIGCONT
  nats-restart      stop a NATS server that is not the leader (SIGTERM), start it again

A writer is the failover drill's (scripts/ha-drill.d/drill.py): PATCHes one after another, each
with its own Idempotency-Key, each setting one metadata slot of a customer to the request's
sequence number, retried with the same key after a 502/503/504, a 409 (key in flight) or a
dropped connection, until a definite answer. Checked per event:
  500               any 500 seen by a client (must be 0)
  lost              an acknowledged PATCH whose slot does not hold its value (0)
  applied twice     a customer whose version is not 1 + its acknowledged keys (0)
  failed            attempts not answered 200 (rolling: 0, the restart is invisible; figures
                    for the others)
  503 in flight     an instance's own 503 (X-Served-By set) to a request sent to it before its
                    SIGTERM and answered after it (0: in-flight requests finish)
  longest gap s     the longest time no writer had a write acknowledged (figure: "seconds until
                    serving again" from the clients' side)
  rejoined s        from an instance's start to its first request served through the balancer
And, once every relay's backlog is 0, per event's customers: committed events missing from the
stream, duplicated, out of version order, messages of no committed event (all 0), and the
publication lag (stream time - commit time). After a NATS event:
  lag before s      the longest lag of the commits 3 s or more before the event (what this
                    machine manages at all: 2 shared cores running everything); over 5 s the
                    event cannot be judged and the run fails
  lag back after leader s   from the stream having a leader again (another than the server
                    disrupted) to the last commit whose lag was 1 s or more (or more than `lag
                    before`, if that is longer): at most 5 s
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'ha-drill.d'))

import psycopg2  # noqa: E402

import balancer  # noqa: E402
import stream  # noqa: E402
import jetstream  # noqa: E402  (scripts/ha-drill.d)
import webhooks  # noqa: E402  (scripts/ha-drill.d)

mono = time.monotonic
WALL = time.time() - mono()
env = os.environ.get

BIN = env('SCALE_BIN')
REPO = env('SCALE_REPO', '.')
LOGS = env('SCALE_LOGS', '/tmp')
PG = env('SCALE_PG', 'postgres://postgres@127.0.0.1:5432')
DB = env('SCALE_DATABASE', 'customers_scale')
INSTANCES = int(env('SCALE_INSTANCES', '3'))
EVENTS = env('SCALE_EVENTS', 'kill rolling').split()
CLIENTS = int(env('SCALE_CLIENTS', '8'))
RATE = float(env('SCALE_RATE', '10'))            # new writes per second per writer
WARMUP = float(env('SCALE_WARMUP', '2'))
TAIL = float(env('SCALE_TAIL', '3'))             # seconds of load after the event's last step
EVENT_MAX = float(env('SCALE_EVENT_MAX', '90'))
DRAIN_DELAY = float(env('SCALE_DRAIN_DELAY', '3'))
RETRY_PAUSE = 0.1
SLOTS = 40
NATS_URL = env('SCALE_NATS_URL', 'nats://127.0.0.1:4222')
NATS_CLUSTER = env('SCALE_NATS_CLUSTER', '')     # the cluster's control script, when on one
REPLICAS = int(env('SCALE_STREAM_REPLICAS', '1'))
NATS_FREEZE = float(env('SCALE_NATS_FREEZE', '20'))
SETTLE_MAX = float(env('SCALE_SETTLE_MAX', '60'))
WEBHOOKS = env('SCALE_WEBHOOKS', '1') == '1'
WEBHOOK_SETTLE_MAX = float(env('SCALE_WEBHOOK_SETTLE_MAX', '120'))
NONCE = '%s%x' % (os.urandom(2).hex(), os.getpid() % 4096)
STREAM = 'SCALE_%s' % NONCE.upper()
PREFIX = 'scale%s' % NONCE
ORG = 'org_scale_%d' % os.getpid()
# Longest answer allowed: a request's own bound (acquire 2 s + statement 5 s) plus the drain.
BOUND = 7 + DRAIN_DELAY + 5


def log(*a):
    print(time.strftime('%H:%M:%S'), *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def database_url():
    return '%s/%s' % (PG.rstrip('/'), DB)


def connect_db():
    return psycopg2.connect(database_url())


# ---------------------------------------------------------------------------------------------
# The instances
# ---------------------------------------------------------------------------------------------

def service_env(port):
    e = {'PATH': os.environ['PATH'], 'HOST': '127.0.0.1', 'PORT': str(port),
         'DATABASE_URL': database_url(), 'RUST_LOG': env('SCALE_RUST_LOG', 'info,sqlx=warn'),
         'CUSTOMERS_API__SERVER__DRAIN_DELAY': '%gs' % DRAIN_DELAY,
         'CUSTOMERS_API__DATABASE__MAX_CONNECTIONS': env('SCALE_POOL', '8')}
    if NATS_URL:
        e.update({'CUSTOMERS_API__EVENTS__NATS_URL': NATS_URL,
                  'CUSTOMERS_API__EVENTS__STREAM': STREAM,
                  'CUSTOMERS_API__EVENTS__SUBJECT_PREFIX': PREFIX,
                  'CUSTOMERS_API__EVENTS__STREAM_REPLICAS': str(REPLICAS)})
    if WEBHOOKS:
        e.update(webhooks.service_env())
    return e


class Instance:
    def __init__(self, idx):
        self.name = 'i%d' % idx
        self.port = free_port()
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        path = os.path.join(LOGS, 'instance-%s-%d.log' % (self.name, self.starts))
        self.log_path = path
        self.proc = subprocess.Popen([BIN], env=service_env(self.port), cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=open(path, 'wb'), stderr=subprocess.STDOUT)
        self.started = mono()

    def ready(self):
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/readyz' % self.port, timeout=3) as r:
                return r.status == 200
        except Exception:
            return False

    def wait_ready(self, limit=60):
        deadline = mono() + limit
        while not self.ready():
            if self.proc.poll() is not None:
                raise SystemExit('instance %s exited at start; see %s' % (self.name, self.log_path))
            if mono() > deadline:
                raise SystemExit('instance %s not ready within %g s' % (self.name, limit))
            time.sleep(0.1)
        return mono() - self.started

    def unpublished(self):
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % self.port, timeout=5) as r:
                text = r.read().decode(errors='replace')
        except Exception:
            return None
        for line in text.splitlines():
            if line.startswith('events_unpublished '):
                return int(float(line.split()[1]))
        return None

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, limit=60):
        """SIGTERM, then waits for the exit: (exit code, seconds)."""
        t = mono()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, mono() - t

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.terminate(30)


class Client:
    """Requests through the balancer, as ha-drill's Service does (webhooks.register uses it)."""

    mode = 'balancer'

    def __init__(self, port, token):
        self.port, self.token = port, token

    def request(self, method, path, body=None, headers=None, conn=None, timeout=BOUND + 10):
        """(status or 'drop', headers, body, conn)."""
        h = {'Authorization': 'Bearer ' + self.token}
        h.update(headers or {})
        try:
            if conn is None:
                conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            if r.getheader('Connection', '').lower() == 'close':
                conn.close()
                conn = None
            return r.status, r.headers, data, conn
        except (OSError, http.client.HTTPException):
            try:
                conn.close()
            except Exception:
                pass
            return 'drop', {}, b'', None

    def create_customers(self, n):
        ids, conn, key = [], None, None
        deadline = mono() + 60
        while len(ids) < n:
            key = key or 'c-%d-%d' % (os.getpid(), random.getrandbits(48))
            s, h, b, conn = self.request('POST', '/v1/customers', body='{}', conn=conn,
                                         headers={'Content-Type': 'application/json', 'Idempotency-Key': key})
            if s in (200, 201):
                ids.append(json.loads(b)['id'])
                key = None
            elif mono() > deadline:
                raise SystemExit('could not create customers: %s %s' % (s, b[:200]))
            else:
                time.sleep(0.2)
        if conn:
            conn.close()
        return ids


# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------

class Write:
    __slots__ = ('customer', 'slot', 'seq', 'key', 'attempts', 'status', 'version')

    def __init__(self, customer, slot, seq, key):
        self.customer, self.slot, self.seq, self.key = customer, slot, seq, key
        self.attempts = []          # (t0, t1, status, instance or None)
        self.status = self.version = None


RETRIED = (502, 503, 504, 'drop')


def writer(client, tag, customers, stop, writes):
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
            s, h, b, conn = client.request('PATCH', '/v1/customers/' + customer, body=body, headers=hdr, conn=conn)
            w.attempts.append((t0, mono(), s, h.get('X-Served-By') if s != 'drop' else None))
            if s == 200:
                w.status = 200
                w.version = int(h.get('ETag', '"0"').strip('"'))
                break
            if s in RETRIED or (s == 409 and b'idempotency_request_in_progress' in b):
                if mono() > give_up:
                    break
                time.sleep(RETRY_PAUSE)
                continue
            w.status = s
            break
        seq += 1
        nxt = max(nxt + 1.0 / RATE, mono() - 1.0 / RATE)
        time.sleep(max(0.0, nxt - mono()))
    if conn:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------

def nats(*args):
    r = subprocess.run([NATS_CLUSTER, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise SystemExit('%s %s failed: %s' % (NATS_CLUSTER, ' '.join(args), r.stdout))
    return r.stdout.strip()


def wait_leader(exclude=None, limit=60):
    """Waits until the stream has a leader other than `exclude` (the server just killed or
    frozen, which the others name until they have elected another); (wall time, leader)."""
    deadline = mono() + limit
    while mono() < deadline:
        r = subprocess.run([NATS_CLUSTER, 'leader', STREAM], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
        leader = r.stdout.strip()
        if r.returncode == 0 and leader and leader != exclude:
            return time.time(), leader
        time.sleep(0.1)
    return None, None


def wait_rejoined(inst, run, limit=60):
    """Until the balancer routed a request to `inst` again; seconds from its start."""
    deadline = mono() + limit
    while mono() < deadline:
        for ws in run['writes']:
            for w in list(ws)[-3:]:
                if any(a[3] == inst.name and a[0] >= inst.started for a in w.attempts):
                    return mono() - inst.started
        time.sleep(0.05)
    return None


def fire(event, instances, run, round_no):
    """Runs the event; returns what it did: steps with times, terms {instance: mono at SIGTERM}."""
    info = {'terms': {}, 'rejoined': [], 'steps': []}
    if event.startswith('nats-') and wait_leader()[0] is None:
        raise SystemExit('the stream %s has no leader before %s' % (STREAM, event))
    if event == 'kill':
        victim = instances[round_no % len(instances)]
        info['steps'].append('SIGKILL %s' % victim.name)
        victim.kill()
        time.sleep(1)
        victim.start()
        victim.wait_ready()
        info['rejoined'].append(wait_rejoined(victim, run))
    elif event == 'rolling':
        for inst in instances:
            info['terms'][inst.name] = mono()
            code, took = inst.terminate()
            info['steps'].append('%s exit %s after %.1fs' % (inst.name, code, took))
            if code != 0:
                info.setdefault('bad_exits', []).append('%s exited %s' % (inst.name, code))
            inst.start()
            inst.wait_ready()
            info['rejoined'].append(wait_rejoined(inst, run))
    elif event == 'nats-kill-leader':
        t = mono()
        leader = nats('kill-leader', STREAM)
        info['steps'].append('SIGKILL NATS %s (leader)' % leader)
        info['leader_wall'], new = wait_leader(exclude=leader)
        info['steps'].append('new leader %s after %.1f s' % (new, info['leader_wall'] - (t + WALL)))
        time.sleep(2)
        nats('start', leader)
    elif event == 'nats-freeze':
        leader = nats('leader', STREAM)
        info['steps'].append('SIGSTOP NATS %s (leader) %g s' % (leader, NATS_FREEZE))
        t = threading.Thread(target=nats, args=('freeze-node', leader, '%g' % NATS_FREEZE), daemon=True)
        t.start()
        t0 = mono()
        info['leader_wall'], new = wait_leader(exclude=leader)
        info['steps'].append('new leader %s after %.1f s' % (new, info['leader_wall'] - (t0 + WALL)))
        t.join()
    elif event == 'nats-restart':
        leader = nats('leader', STREAM)
        other = next(n for n in ('n1', 'n2', 'n3') if n != leader)
        info['steps'].append('restart NATS %s (follower)' % other)
        nats('stop-node', other)
        time.sleep(1)
        nats('start', other)
        info['leader_wall'], _ = wait_leader()
    else:
        raise SystemExit('unknown event %s' % event)
    return info


def run_event(event, client, instances, round_no):
    duration = EVENT_MAX if event != 'nats-freeze' else EVENT_MAX + NATS_FREEZE
    need = int((duration + max(WARMUP, 6)) * RATE / SLOTS) + 2
    custs = client.create_customers(need * CLIENTS)
    run = {'customers': custs, 'writes': [[] for _ in range(CLIENTS)]}
    stop = threading.Event()
    threads = []
    for c in range(CLIENTS):
        t = threading.Thread(target=writer, daemon=True, args=(
            client, 's%d-%s-%d-%d' % (os.getpid(), event, round_no, c),
            custs[c * need:(c + 1) * need], stop, run['writes'][c]))
        t.start()
        threads.append(t)
    # Before a NATS event, long enough to see the publication lag before it (lag before s).
    time.sleep(max(WARMUP, 6) if event.startswith('nats-') else WARMUP)
    log('--- %s: firing' % event)
    t_event = mono()
    info = fire(event, instances, run, round_no)
    info['fired_wall'] = t_event + WALL
    t_done = mono()
    time.sleep(TAIL)
    stop.set()
    for t in threads:
        t.join(BOUND + 130)
    run['info'] = info
    return judge(event, run, t_event, t_done), run


def judge(event, run, t_event, t_done):
    writes = [w for ws in run['writes'] for w in ws]
    atts = [a for w in writes for a in w.attempts]
    statuses = collections.Counter(str(a[2]) for a in atts)
    oks = sorted(a[1] for a in atts if a[2] == 200)
    window = [t for t in oks if t >= t_event - 1]
    gap = max((b - a for a, b in zip(window, window[1:])), default=None)
    terms = run['info']['terms']
    in_flight_503 = [a for a in atts if a[2] == 503 and a[3] in terms and a[0] < terms[a[3]] <= a[1]]
    instance_503 = [a for a in atts if a[2] == 503 and a[3]]
    failed = [a for a in atts if a[2] != 200]
    unsettled = [w for w in writes if w.status is None]
    by_customer = collections.defaultdict(list)
    for w in writes:
        by_customer[w.customer].append(w)
    conn = connect_db()
    cur = conn.cursor()
    cur.execute('SELECT id, version, metadata FROM customers WHERE id = ANY(%s)', (list(by_customer),))
    stored = {i: (v, m) for i, v, m in cur.fetchall()}
    conn.close()
    lost = twice = 0
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
            twice += 1
            examples.append('applied twice: %s version %d, %d acknowledged keys' % (customer, version, len(acked)))
    rejoined = [x for x in run['info']['rejoined'] if x is not None]
    r = dict(event=event, writes=len(writes), attempts=len(atts), statuses=dict(statuses),
             e500=statuses.get('500', 0), lost=lost, twice=twice, failed=len(failed),
             instance_503=len(instance_503), in_flight_503=len(in_flight_503), unsettled=len(unsettled),
             gap=gap, rejoined=max(rejoined) if rejoined else None, seconds=t_done - t_event,
             slowest=max((a[1] - a[0] for a in atts), default=0), steps=run['info']['steps'],
             leader_wall=run['info'].get('leader_wall'), fired_wall=run['info']['fired_wall'],
             examples=examples[:5])
    failures = []
    if r['e500']:
        failures.append('%d answers 500' % r['e500'])
    if lost:
        failures.append('%d acknowledged writes lost' % lost)
    if twice:
        failures.append('%d customers with a keyed request applied twice' % twice)
    if unsettled:
        failures.append('%d writes never got a definite answer' % len(unsettled))
    other = [s for s in statuses if s not in ('200', '409', '502', '503', '504', 'drop')]
    if other:
        failures.append('unexpected statuses %s' % other)
    if in_flight_503:
        failures.append('%d requests in flight at SIGTERM answered 503 by their instance' % len(in_flight_503))
    if event == 'rolling' and failed:
        failures.append('%d failed attempts (%s)' % (len(failed), dict(collections.Counter(str(a[2]) for a in failed))))
    if len(rejoined) != len(run['info']['rejoined']):
        failures.append('an instance never served through the balancer again')
    failures += run['info'].get('bad_exits', [])
    r['failures'] = failures
    return r


# ---------------------------------------------------------------------------------------------
# The stream
# ---------------------------------------------------------------------------------------------

def settle(instances):
    t0 = mono()
    while True:
        n = instances[0].unpublished()
        if n == 0 or mono() - t0 > SETTLE_MAX:
            return mono() - t0, n
        time.sleep(0.25)


def check_events(results, runs):
    """The tenant's committed event rows against the stream (stream.py)."""
    conn = connect_db()
    cur = conn.cursor()
    cur.execute('SELECT id, customer_id, version, EXTRACT(EPOCH FROM recorded_at)::float8 '
                'FROM customer_events WHERE org_id = %s', (ORG,))
    rows = {i: dict(customer=c, version=v, recorded=t) for i, c, v, t in cur.fetchall()}
    conn.close()
    return stream.check(rows, stream.read(NATS_URL, STREAM, log), results, runs, log)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

def fmt(x, p=2):
    return '-' if x is None else '%.*f' % (p, x)


def table(results):
    head = ('| event | s | writes | attempts | 200 | 502 | 503 | 504 | 409 | dropped | 500 | 503 in flight '
            '| lost | applied twice | longest gap s | rejoined s | missing | duplicated | out of order '
            '| max lag s | lag before s | lag back after leader s | result |')
    lines = [head, '|' + ' --- |' * (head.count('|') - 1)]
    for r in results:
        s, e = r['statuses'], r.get('events') or {}
        lines.append('| %s | %.0f | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            r['event'], r['seconds'], r['writes'], r['attempts'], s.get('200', 0), s.get('502', 0),
            s.get('503', 0), s.get('504', 0), s.get('409', 0), s.get('drop', 0), r['e500'], r['in_flight_503'],
            r['lost'], r['twice'], fmt(r['gap']), fmt(r['rejoined']), e.get('missing', '-'),
            e.get('duplicates', '-'), e.get('disorder', '-'), fmt(e.get('max_lag')),
            fmt(e.get('lag_before')), fmt(e.get('lag_ok_after_leader'), 1),
            'FAIL' if r['failures'] else 'lag not met' if r.get('lag_not_met') else 'ok'))
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------

def main():
    # scripts/scale-drill bounds the whole run (SCALE_MAX) with SIGTERM: stop what was started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit('stopped: the drill ran out of its time (SCALE_MAX)'))
    c = psycopg2.connect('%s/postgres' % PG.rstrip('/'))
    c.autocommit = True
    c.cursor().execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % DB)
    c.cursor().execute('CREATE DATABASE %s' % DB)
    c.close()
    instances = [Instance(i + 1) for i in range(INSTANCES)]
    proxy_port = free_port()
    lb = None
    receiver = None
    results, runs, summary, hooks = [], [], None, None
    t0 = mono()
    try:
        # One at a time: each migrates at start (an advisory lock), the first does the work.
        for inst in instances:
            inst.start()
            inst.wait_ready()
        lb = balancer.Balancer(LOGS, proxy_port, [(i.name, i.port) for i in instances])
        scopes = 'customers:read customers:write webhooks:manage'
        token = subprocess.run([BIN, 'token', '--org', ORG, '--scope', scopes, '--ttl', '3h'],
                               env=service_env(0), cwd=REPO, check=True, stdout=subprocess.PIPE,
                               text=True).stdout.strip()
        client = Client(proxy_port, token)
        deadline = mono() + 20
        while set(lb.states().values()) != {'UP'}:
            if mono() > deadline:
                raise SystemExit('HAProxy never saw every instance up: %s' % lb.states())
            time.sleep(0.2)
        log('%d instances behind HAProxy on %d (drain_delay %g s, checks every %d ms, fall %d), up in %.1fs'
            % (INSTANCES, proxy_port, DRAIN_DELAY, balancer.CHECK_INTER_MS, balancer.FALL, mono() - t0))
        if WEBHOOKS:
            receiver = webhooks.Receiver()
            log('webhook %s to %s' % (webhooks.register(client, receiver.url), receiver.url))
        for n, event in enumerate(EVENTS):
            t = mono()
            r, run = run_event(event, client, instances, n)
            results.append(r)
            runs.append(run)
            log('%s: %s; statuses %s, lost %d, applied twice %d, 503 in flight %d, longest gap %s s, '
                'rejoined %s s%s' % (event, '; '.join(r['steps']), r['statuses'], r['lost'], r['twice'],
                                     r['in_flight_503'], fmt(r['gap']), fmt(r['rejoined']),
                                     '; FAILED: ' + '; '.join(r['failures']) if r['failures'] else ''))
            for e in r['examples']:
                log('   ' + e)
            log('--- %s took %.1fs' % (event, mono() - t))
        if NATS_URL:
            took, left = settle(instances)
            log('relay backlog %s after %.1fs' % (left, took))
            summary = check_events(results, runs)
            if left != 0:
                summary['failures'].append('the relays did not catch up within %g s' % SETTLE_MAX)
        if receiver:
            conn = connect_db()
            cur = conn.cursor()
            cur.execute('SELECT id FROM customer_events WHERE org_id = %s', (ORG,))
            committed = [x[0] for x in cur.fetchall()]
            conn.close()
            hooks = webhooks.settle_and_check(receiver, committed, WEBHOOK_SETTLE_MAX)
    finally:
        if receiver:
            receiver.close()
        for inst in instances:
            inst.stop()
        if lb:
            lb.close()
        if NATS_URL and env('SCALE_KEEP_STREAM', '0') != '1':
            try:
                js = jetstream.JetStream(NATS_URL)
                js.delete_stream(STREAM)
                js.close()
            except (OSError, jetstream.NatsError) as e:
                log('could not delete the stream %s: %s' % (STREAM, e))
    panics = [i.name for i in instances if 'panicked' in open(i.log_path, errors='replace').read()]
    print(table(results))
    if summary:
        print()
        print('Stream %s: %d events committed, %d messages, %d missing, %d not committed, %d duplicated%s' % (
            STREAM, summary['committed'], summary['messages'], summary['missing'], summary['uncommitted'],
            summary['duplicates'], '' if not summary['failures'] else ' — FAILED: ' + '; '.join(summary['failures'])))
    if hooks:
        print()
        print(webhooks.table({'balancer': hooks}))
    for r in results:
        if r['failures']:
            print('FAILED %s: %s' % (r['event'], '; '.join(r['failures'])))
        if r.get('lag_not_met'):
            print('NOT MET (SCALE_LAG_STRICT=0: reported, not failed) %s: %s'
                  % (r['event'], '; '.join(r['lag_not_met'])))
    for p in panics:
        print('FAILED: instance %s panicked (see its log in %s)' % (p, LOGS))
    with open(os.path.join(LOGS, 'scale-drill.json'), 'w') as f:
        json.dump({'results': results, 'events': summary, 'webhooks': hooks}, f, indent=1, default=str)
    bad = (any(r['failures'] for r in results) or panics or (summary and summary['failures'])
           or (hooks and hooks['failures']))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
