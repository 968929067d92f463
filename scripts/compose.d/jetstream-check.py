#!/usr/bin/env python3
"""Checks that a NATS server answers with JetStream, with nats-py, the maintained Python client
(https://github.com/nats-io/nats.py; the drills' virtualenv has it: scripts/scale-drill.d/venv).

  jetstream-check.py HOST:PORT create   make the file-backed stream SMOKE (subjects smoke.>)
                                        and publish one message to it through JetStream
  jetstream-check.py HOST:PORT verify   the stream SMOKE exists and holds that one message
                                        (after a restart: the store lives on a volume)

Used by scripts/compose-smoke. Exits non-zero with a message on any failure.
"""

import asyncio
import sys

import nats
import nats.errors
import nats.js.errors
from nats.js.api import StorageType

STREAM = "SMOKE"
TIMEOUT = 5.0


class Failed(Exception):
    """A check that failed; main() turns it into the exit message (SystemExit raised inside the
    event loop would be printed as a task's traceback)."""


async def quiet(_error):
    """nats-py prints every connection error with its traceback; a failure is raised instead."""


async def check(address, action):
    nc = await nats.connect(f"nats://{address}", name="compose-smoke", connect_timeout=TIMEOUT,
                            allow_reconnect=False, error_cb=quiet)
    try:
        js = nc.jetstream(timeout=TIMEOUT)
        try:
            await js.account_info()
        except (nats.js.errors.NotFoundError, nats.js.errors.ServiceUnavailableError,
                nats.errors.NoRespondersError) as e:
            raise Failed(f"NATS {nc.connected_server_version} answers without JetStream: {e}")
        if action == "create":
            await js.add_stream(name=STREAM, subjects=["smoke.>"], storage=StorageType.FILE)
            ack = await js.publish("smoke.check", b'{"hello":"jetstream"}')
            if ack.stream != STREAM or ack.seq != 1:
                raise Failed(f"unexpected publish acknowledgement: {ack}")
        try:
            info = await js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            raise Failed(f"stream {STREAM} does not exist")
        if info.state.messages != 1:
            raise Failed(f"stream {STREAM} holds {info.state.messages} messages, expected 1")
        print(f"NATS {nc.connected_server_version}, JetStream on, stream {STREAM} holds 1 message")
    finally:
        await nc.close()


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("create", "verify"):
        raise SystemExit(__doc__)
    try:
        asyncio.run(asyncio.wait_for(check(sys.argv[1], sys.argv[2]), TIMEOUT * 4))
    except Failed as e:
        raise SystemExit(str(e))
    except asyncio.TimeoutError:
        raise SystemExit(f"NATS at {sys.argv[1]}: no answer within {TIMEOUT * 4:.0f} s")
    except (OSError, nats.errors.Error) as e:
        raise SystemExit(f"NATS at {sys.argv[1]}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
