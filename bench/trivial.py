"""A trivial keep-alive HTTP server answering ``{}`` to everything: the client's ceiling.

Run as ``python -m bench.trivial PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

from bench.client import new_event_loop

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\n\r\n{}"


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self._buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            if self._transport is not None:
                self._transport.write(RESPONSE)


def main() -> None:
    port = int(sys.argv[1])
    loop = new_event_loop()
    server = loop.run_until_complete(loop.create_server(_Protocol, "127.0.0.1", port))
    try:
        loop.run_until_complete(server.serve_forever())
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
