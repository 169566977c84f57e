"""A minimal keep-alive HTTP/1.1 client for load generation.

httpx costs the bench process more CPU per request than the shim spends answering it, and on two cores that CPU
is taken from the server under test. This client writes pre-encoded requests on asyncio streams and reads just
the status line, headers and Content-Length body: enough to drive the shim, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json


class Connection:
    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()

    async def post_json(self, path: str, body: object) -> tuple[int, bytes]:
        try:
            return await self._post_json(path, body)
        except (ConnectionError, IndexError):
            # The server closed an idle keep-alive connection (uvicorn does after 5 s): reconnect once.
            await self.close()
            await self.open()
            return await self._post_json(path, body)

    async def _post_json(self, path: str, body: object) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.fixed}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)
