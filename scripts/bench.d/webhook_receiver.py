#!/usr/bin/env python3
"""A webhook receiver for scripts/bench.d/webhooks.sh (standard library only): answers every
request `200 ok` at once on HTTP/1.1 keep-alive connections. asyncio with a bare protocol (no
HTTP framework) so that it stays far from being the bottleneck; it verifies nothing (the tests
verify every delivery with the Standard Webhooks reference library).

  webhook_receiver.py [PORT]    # 127.0.0.1 only; prints 127.0.0.1:PORT on its first line
"""
import asyncio
import sys

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data):
        buf = self.buf
        buf += data
        answers = 0
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            length = 0
            for line in bytes(buf[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
                    break
            if len(buf) < end + 4 + length:
                break
            del buf[:end + 4 + length]
            answers += 1
        if answers:
            self.transport.write(ANSWER * answers)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Receiver, "127.0.0.1", port, backlog=1024)
    print("127.0.0.1:%d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
