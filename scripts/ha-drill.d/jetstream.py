"""What the drills read of NATS JetStream, on nats-py, the maintained Python client
(https://github.com/nats-io/nats.py): a stream's info, every stored message of it with its
headers and the time the stream stored it, and deleting it. Used by scripts/ha-drill
(drill.py) and scripts/scale-drill (scale-drill.d/drill.py), which run in a virtualenv with
nats-py installed (scripts/scale-drill.d/venv makes it).

nats-py is asynchronous; the drills are threads and blocking calls, so this wraps it in a
synchronous class with an event loop of its own. Messages are read with an ordered push consumer
(an ephemeral consumer the client recreates from the last sequence it saw if a message is
missed), which streams the whole stream in one pass instead of one request per message.
"""

import asyncio

import nats
import nats.errors
import nats.js.errors
from nats.js.api import DeliverPolicy


class NatsError(Exception):
    pass


async def _quiet(_error):
    """nats-py prints every connection error with its traceback; a failure is raised instead."""


class JetStream:
    def __init__(self, url='nats://127.0.0.1:4222', timeout=5.0):
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        servers = [u.strip() for u in url.split(',') if u.strip()]
        try:
            self.nc = self._run(nats.connect(servers=servers, name='drill', connect_timeout=timeout,
                                             allow_reconnect=True, max_reconnect_attempts=3,
                                             error_cb=_quiet))
        except (OSError, nats.errors.Error, asyncio.TimeoutError) as e:
            self.loop.close()
            raise NatsError('cannot connect to NATS at %s: %s' % (url, e or type(e).__name__))
        self.js = self.nc.jetstream(timeout=timeout)

    def _run(self, coroutine, timeout=None):
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout or self.timeout * 3))
        except nats.js.errors.NotFoundError:
            raise
        except (nats.errors.Error, asyncio.TimeoutError) as e:
            raise NatsError('%s: %s' % (type(e).__name__, e))

    def close(self):
        try:
            self.loop.run_until_complete(self.nc.close())
        except Exception:
            pass
        self.loop.close()

    def account_info(self):
        """Raises NatsError when the server has no JetStream."""
        try:
            return self._run(self.js.account_info())
        except nats.js.errors.NotFoundError as e:
            raise NatsError('no JetStream: %s' % e)

    def stream_info(self, stream):
        """The stream's info (nats.js.api.StreamInfo), or None when it does not exist."""
        try:
            return self._run(self.js.stream_info(stream))
        except nats.js.errors.NotFoundError:
            return None

    def delete_stream(self, stream):
        try:
            self._run(self.js.delete_stream(stream))
        except nats.js.errors.NotFoundError:
            pass

    def messages(self, stream):
        """Every message stored in the stream, in stream order: dicts with seq, subject, headers
        (a dict), data (bytes) and time (when the stream stored it, Unix seconds). None when the
        stream does not exist."""
        info = self.stream_info(stream)
        if info is None:
            return None
        expected = info.state.messages
        if expected == 0:
            return []
        subjects = info.config.subjects or []
        if len(subjects) != 1:
            raise NatsError('stream %s has subjects %s: one filter subject expected' % (stream, subjects))
        out = self._run(self._read(stream, subjects[0], expected), timeout=self.timeout * 3 + expected * 0.01)
        if len(out) < expected:
            raise NatsError('read %d messages of %s, its state says %d' % (len(out), stream, expected))
        return [out[s] for s in sorted(out)]

    async def _read(self, stream, subject, expected):
        sub = await self.js.subscribe(subject, stream=stream, ordered_consumer=True,
                                      deliver_policy=DeliverPolicy.ALL)
        out = {}
        try:
            while True:
                msg = await sub.next_msg(timeout=self.timeout)
                meta = msg.metadata
                out[meta.sequence.stream] = {
                    'seq': meta.sequence.stream, 'subject': msg.subject,
                    'headers': dict(msg.headers or {}), 'data': msg.data,
                    'time': meta.timestamp.timestamp() if meta.timestamp else None}
                if meta.num_pending == 0 and len(out) >= expected:
                    return out
        finally:
            await sub.unsubscribe()
