"""HAProxy in front of the drill's instances (scripts/scale-drill): round robin, each instance
checked with `GET /readyz`, and the answering instance named in a response header.

How the balancer learns an instance is leaving: at SIGTERM the instance answers `/readyz` with
503 (draining) for `server.drain_delay` while it goes on serving everything; HAProxy checks every
CHECK_INTER and marks a server down after FALL failed checks, so within CHECK_INTER x FALL (plus
one check's own time) it routes nothing new there. The drill's drain delay is longer than that
(DRAIN_DELAY), so the listener closes only once HAProxy has stopped sending. A killed instance
refuses connections at once: HAProxy retries such a request on another server (`retries`,
`option redispatch`: nothing was sent), and marks the server down after FALL checks.
"""

import os
import socket
import subprocess
import time

mono = time.monotonic

CHECK_INTER_MS = int(os.environ.get('SCALE_CHECK_INTER_MS', '1000'))
# A check that takes longer fails: /readyz answers within acquire_timeout (2 s) at worst.
CHECK_TIMEOUT_MS = int(os.environ.get('SCALE_CHECK_TIMEOUT_MS', '2000'))
FALL = int(os.environ.get('SCALE_CHECK_FALL', '2'))
RISE = int(os.environ.get('SCALE_CHECK_RISE', '2'))
HAPROXY = os.environ.get('SCALE_HAPROXY', '/usr/sbin/haproxy')


def config(port, stats_socket, servers):
    """servers: [(name, port)]."""
    lines = [
        'global',
        '    stats socket %s mode 600 level admin' % stats_socket,
        # One line per request, with its termination state (haproxy.log in the drill's logs).
        '    log stdout format raw local0 info',
        'defaults',
        '    mode http',
        '    log global',
        '    option httplog',
        '    timeout connect 1s',
        '    timeout client 60s',
        '    timeout server 60s',
        '    timeout http-keep-alive 10s',
        '    timeout check %dms' % CHECK_TIMEOUT_MS,
        # A connection refused (an instance killed, or stopped) is tried again on another server:
        # nothing was sent, so this is safe for a PATCH too.
        '    retries 3',
        '    option redispatch',
        'frontend api',
        '    bind 127.0.0.1:%d' % port,
        '    default_backend instances',
        'backend instances',
        '    balance roundrobin',
        '    option httpchk GET /readyz',
        '    http-check expect status 200',
        # Which instance answered (the drill counts an instance's own 503s by it).
        '    http-response set-header X-Served-By %s',
        '    default-server inter %dms fall %d rise %d' % (CHECK_INTER_MS, FALL, RISE),
    ]
    lines += ['    server %s 127.0.0.1:%d check' % (name, p) for name, p in servers]
    return '\n'.join(lines) + '\n'


class Balancer:
    def __init__(self, workdir, port, servers):
        self.port = port
        self.stats = os.path.join(workdir, 'haproxy.sock')
        cfg = os.path.join(workdir, 'haproxy.cfg')
        with open(cfg, 'w') as f:
            f.write(config(port, self.stats, servers))
        if subprocess.run([HAPROXY, '-c', '-q', '-f', cfg]).returncode != 0:
            raise SystemExit('HAProxy refuses %s' % cfg)
        self.proc = subprocess.Popen([HAPROXY, '-db', '-f', cfg], stdin=subprocess.DEVNULL,
                                     stdout=open(os.path.join(workdir, 'haproxy.log'), 'wb'),
                                     stderr=subprocess.STDOUT)
        deadline = mono() + 10
        while mono() < deadline:
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit('HAProxy did not listen on %d' % port)

    def states(self):
        """{server: 'UP' | 'DOWN' | 'UP 1/2' ...} from the stats socket, or {} when it does not answer."""
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(self.stats)
            s.sendall(b'show stat\n')
            data = b''
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
        except OSError:
            return {}
        out = {}
        for line in data.decode(errors='replace').splitlines():
            f = line.split(',')
            if len(f) > 17 and f[0] == 'instances' and f[1] not in ('BACKEND', 'FRONTEND'):
                out[f[1]] = f[17]
        return out

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
