"""Just enough of a NATS JetStream client for the failover drill, on the standard library alone:
the drill runs on Debian's python3, which has no NATS client package, and needs only three
JetStream API requests — a stream's info, every stored message of it with its headers
(`$JS.API.STREAM.MSG.GET`), and deleting it.

The NATS protocol is text over TCP (https://docs.nats.io/reference/reference-protocols/nats-protocol):
the server greets with INFO, the client sends CONNECT, subscribes to an inbox and publishes
requests with that inbox as the reply subject; answers come as MSG (or HMSG, with headers).
Requests are pipelined (a window of them in flight), so reading ten thousand messages takes a
fraction of a second on one machine.
"""

import base64
import calendar
import json
import os
import socket
import time


class NatsError(Exception):
    pass


class JetStream:
    def __init__(self, url='nats://127.0.0.1:4222', timeout=5.0):
        hostport = url.split('://', 1)[-1].split(',')[0].rsplit('@', 1)[-1].rstrip('/')
        host, _, port = hostport.rpartition(':')
        self.timeout = timeout
        self.sock = socket.create_connection((host or '127.0.0.1', int(port or 4222)), timeout=timeout)
        self.buf = b''
        self.inbox = '_INBOX.hadrill.%s' % os.urandom(8).hex()
        self.next_id = 0
        op, rest = self._line().split(b' ', 1)
        if op != b'INFO':
            raise NatsError('not a NATS server: %r' % op)
        info = json.loads(rest)
        if not info.get('jetstream'):
            raise NatsError('the NATS server at %s has no JetStream (start it with -js)' % hostport)
        self._send(b'CONNECT ' + json.dumps({
            'verbose': False, 'pedantic': False, 'headers': True, 'no_responders': True,
            'protocol': 1, 'name': 'ha-drill', 'lang': 'python', 'version': '0'}).encode()
            + b'\r\nSUB ' + self.inbox.encode() + b'.* 1\r\nPING\r\n')
        while True:
            frame = self._frame()
            if frame == 'PONG':
                break

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- the wire ----------------------------------------------------------------------------

    def _send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise NatsError('the NATS server closed the connection')
        self.buf += chunk

    def _line(self):
        while b'\r\n' not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def _exactly(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _frame(self):
        """The next frame for us: 'PONG', or (reply-id, headers bytes, payload bytes)."""
        while True:
            line = self._line()
            op = line.split(b' ', 1)[0].upper()
            if op == b'PING':
                self._send(b'PONG\r\n')
            elif op == b'PONG':
                return 'PONG'
            elif op in (b'+OK', b'INFO'):
                pass
            elif op == b'-ERR':
                raise NatsError(line.decode(errors='replace'))
            elif op == b'MSG':      # MSG <subject> <sid> [reply] <bytes>
                parts = line.split()
                return parts[1].decode(), b'', self._exactly(int(parts[-1]))
            elif op == b'HMSG':     # HMSG <subject> <sid> [reply] <header bytes> <total bytes>
                parts = line.split()
                hlen, total = int(parts[-2]), int(parts[-1])
                data = self._exactly(total)
                return parts[1].decode(), data[:hlen], data[hlen:]
            else:
                raise NatsError('unexpected from NATS: %r' % line[:80])

    def _requests(self, subjects_payloads, window=256):
        """Sends the requests, at most `window` in flight; yields (index, answer JSON) in any
        order."""
        pending = {}
        items = list(subjects_payloads)
        sent = 0
        deadline = time.monotonic() + self.timeout + len(items) * 0.01
        while sent < len(items) or pending:
            out = []
            while sent < len(items) and len(pending) < window:
                subject, payload = items[sent]
                token = '%d' % self.next_id
                self.next_id += 1
                pending[token] = sent
                out.append(b'PUB %s %s.%s %d\r\n%s\r\n' % (subject.encode(), self.inbox.encode(),
                                                          token.encode(), len(payload), payload))
                sent += 1
            if out:
                self._send(b''.join(out))
            if time.monotonic() > deadline:
                raise NatsError('JetStream did not answer %d requests' % len(pending))
            frame = self._frame()
            if frame == 'PONG':
                continue
            subject, headers, payload = frame
            i = pending.pop(subject.rsplit('.', 1)[-1], None)
            if i is None:
                continue
            if headers.startswith(b'NATS/1.0 503'):
                raise NatsError('no JetStream responders (is JetStream enabled?)')
            yield i, json.loads(payload) if payload else {}

    def request(self, subject, payload=b''):
        for _, answer in self._requests([(subject, payload)]):
            return answer

    # -- JetStream ---------------------------------------------------------------------------

    def account_info(self):
        return self.request('$JS.API.INFO')

    def stream_info(self, stream):
        """The stream's info, or None when it does not exist."""
        answer = self.request('$JS.API.STREAM.INFO.' + stream)
        if 'error' in answer:
            if answer['error'].get('code') == 404:
                return None
            raise NatsError('stream info %s: %s' % (stream, answer['error']))
        return answer

    def delete_stream(self, stream):
        answer = self.request('$JS.API.STREAM.DELETE.' + stream)
        if 'error' in answer and answer['error'].get('code') != 404:
            raise NatsError('deleting stream %s: %s' % (stream, answer['error']))

    def messages(self, stream):
        """Every message stored in the stream, in stream order: dicts with seq, subject,
        headers (a dict), data (bytes) and time (when the stream stored it, Unix seconds). None
        when the stream does not exist."""
        info = self.stream_info(stream)
        if info is None:
            return None
        state = info['state']
        first, last = state.get('first_seq', 0), state.get('last_seq', 0)
        if state.get('messages', 0) == 0:
            return []
        out = {}
        reqs = [('$JS.API.STREAM.MSG.GET.' + stream, json.dumps({'seq': s}).encode())
                for s in range(first, last + 1)]
        for i, answer in self._requests(reqs):
            if 'error' in answer:
                if answer['error'].get('code') == 404:      # deleted: a gap in the sequence
                    continue
                raise NatsError('message %d of %s: %s' % (first + i, stream, answer['error']))
            m = answer['message']
            out[m['seq']] = {'seq': m['seq'], 'subject': m['subject'],
                             'headers': parse_headers(base64.b64decode(m.get('hdrs') or '')),
                             'data': base64.b64decode(m.get('data') or ''),
                             'time': parse_time(m.get('time'))}
        if len(out) != state['messages']:
            raise NatsError('read %d messages of %s, its state says %d'
                            % (len(out), stream, state['messages']))
        return [out[s] for s in sorted(out)]


def parse_headers(raw):
    """b'NATS/1.0\\r\\nName: value\\r\\n\\r\\n' -> {'Name': 'value'} (the last of repeated names)."""
    headers = {}
    for line in raw.decode(errors='replace').split('\r\n')[1:]:
        name, sep, value = line.partition(':')
        if sep:
            headers[name.strip()] = value.strip()
    return headers


def parse_time(t):
    """'2026-12-02T03:36:58.36799332Z' (RFC 3339, UTC, up to nanoseconds) -> Unix seconds."""
    if not t:
        return None
    whole, _, frac = t.rstrip('Z').partition('.')
    secs = calendar.timegm(time.strptime(whole, '%Y-%m-%dT%H:%M:%S'))
    return secs + (float('0.' + frac) if frac else 0.0)
