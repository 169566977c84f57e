"""The worker's health probes: a tiny HTTP server, `/healthz` (the worker runs) and `/readyz` (and Temporal
answers). For docker-compose / Kubernetes probes; the image has no curl, so `changeloop probe URL` checks it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

Check = Callable[[], Awaitable[tuple[bool, str]]]


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


class HealthServer:
    def __init__(self, address: str, live: Check, ready: Check) -> None:
        self.host, self.port = split_address(address)
        self.checks = {"/healthz": live, "/readyz": ready}
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HealthServer:
        self._server = await asyncio.start_server(self._answer, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            check = self.checks.get(path)
            if check is None:
                status, body = 404, {"status": "not found", "paths": sorted(self.checks)}
            else:
                try:
                    ok, detail = await asyncio.wait_for(check(), 5)
                except Exception as exc:  # a probe answers, it never crashes
                    ok, detail = False, f"{type(exc).__name__}: {exc}"
                status, body = (200 if ok else 503), {"status": "ok" if ok else "unavailable", "detail": detail}
            data = json.dumps(body).encode()
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + data)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
