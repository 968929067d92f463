"""The scale-out drill's checks of the JetStream stream (scripts/scale-drill.d/drill.py): every
committed event of the drill's tenant in the stream once, each customer's in version order, and
the publication lag (the stream's storage time minus the commit's `recorded_at`) around each
event, read with nats-py (scripts/ha-drill.d/jetstream.py).
"""

import collections
import json
import os
import time

import jetstream

mono = time.monotonic


def read(nats_url, name, log):
    """Every message of the stream `name`."""
    # Right after a NATS event a cluster may still answer 'JetStream system temporarily
    # unavailable' for a few seconds: asked again, for at most 30 s.
    deadline = mono() + 30
    while True:
        try:
            js = jetstream.JetStream(nats_url)
            try:
                messages = js.messages(name) or []
            finally:
                js.close()
            break
        except jetstream.NatsError as e:
            if mono() > deadline:
                raise
            log('reading the stream: %s; again' % e)
            time.sleep(1)
    return messages


class LagRule:
    """The lag rule's verdicts: failures, or with SCALE_LAG_STRICT=0 (a machine too busy for
    the rule) printed as not met."""

    def __init__(self):
        self.strict = os.environ.get('SCALE_LAG_STRICT', '1') != '0'

    def append(self, result, what):
        key = 'failures' if self.strict else 'lag_not_met'
        result.setdefault(key, []).append(what)


lag_rule = LagRule()


def check(rows, messages, results, runs, log):
    """`rows`: {event id: {customer, version, recorded}}; adds each event's figures and failures
    to its result (`results` and `runs` in the same order); returns the whole stream's summary."""
    in_stream = collections.Counter()
    by_customer = collections.defaultdict(list)
    for m in messages:
        mid = m['headers'].get('Nats-Msg-Id')
        in_stream[mid] += 1
        try:
            body = json.loads(m['data'])
            by_customer[body['customerId']].append((mid, body['version'], m['time']))
        except (ValueError, KeyError, TypeError):
            by_customer[None].append((mid, None, m['time']))
    summary = dict(committed=len(rows), messages=len(messages),
                   missing=sum(1 for i in rows if not in_stream[i]),
                   uncommitted=sum(n for i, n in in_stream.items() if i not in rows),
                   duplicates=sum(n - 1 for n in in_stream.values()), failures=[])
    for what in ('missing', 'uncommitted', 'duplicates'):
        if summary[what]:
            summary['failures'].append('%d %s in the whole stream' % (summary[what], what))
    rows_by_customer = collections.defaultdict(list)
    for i, r in rows.items():
        rows_by_customer[r['customer']].append(i)
    for r, run in zip(results, runs):
        committed = streamed = missing = dups = disorder = 0
        lags = []   # (recorded, lag)
        for c in run['customers']:
            ids = rows_by_customer.get(c, [])
            committed += len(ids)
            missing += sum(1 for i in ids if not in_stream[i])
            msgs = by_customer.get(c, [])
            streamed += len(msgs)
            seen = set()
            for mid, _, t in msgs:
                if mid in seen:
                    dups += 1
                seen.add(mid)
                if mid in rows and t is not None:
                    lags.append((rows[mid]['recorded'], t - rows[mid]['recorded']))
            vs = [v for _, v, _ in msgs]
            if any(not isinstance(v, int) for v in vs) or any(a >= b for a, b in zip(vs, vs[1:])):
                disorder += 1
        ev = dict(committed=committed, streamed=streamed, missing=missing, duplicates=dups, disorder=disorder,
                  max_lag=max((x for _, x in lags), default=None))
        # After a NATS event: the last commit whose publication took 1 s or more, in seconds
        # after the stream had a leader again (must be within 5 s).
        if r.get('leader_wall'):
            # Back under 1 s, or under what it was before the event on a machine too busy for 1 s
            # (2 shared cores running the load, 3 instances, PostgreSQL and 3 NATS servers).
            # (Commits of the last 3 s before it may wait for the server about to fail.)
            before = [lag for rec, lag in lags if rec < r['fired_wall'] - 3]
            ev['lag_before'] = max(before, default=None)
            bar = max(1.0, ev['lag_before'] or 0.0)
            if bar > 5:
                # A relay already that far behind says nothing about the event: not judged.
                lag_rule.append(r, 'the publication lag was already %.1f s before the event '
                                '(the machine is too busy to judge it)' % bar)
            late = [rec for rec, lag in lags if lag >= bar]
            buckets = collections.defaultdict(float)
            for rec, lag in lags:
                b = int((rec - r['leader_wall']) // 1)
                buckets[b] = max(buckets[b], lag)
            log('%s: the longest publication lag of the events committed in each second from the '
                'stream having a leader again: %s' % (r['event'], ', '.join(
                    '%+d:%.1f' % (b, buckets[b]) for b in sorted(buckets) if -25 <= b <= 25)))
            ev['lag_ok_after_leader'] = max(0.0, max(late) - r['leader_wall']) if late else 0.0
            if ev['lag_ok_after_leader'] > 5:
                lag_rule.append(r, 'publication lag >= %.1f s until %.1f s after the stream had a leader'
                                % (bar, ev['lag_ok_after_leader']))
        r['events'] = ev
        for n, what in ((missing, 'committed events not in the stream'), (dups, 'duplicate messages'),
                        (disorder, 'customers out of version order in the stream')):
            if n:
                r['failures'].append('%d %s' % (n, what))
    return summary
