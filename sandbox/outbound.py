"""The outbound side of the Business Rules: POST a JSON body to the shim, in the background, with a log.

Like `RESTMessageV2.executeAsync()` on an instance, sending never blocks (or fails) the Table API write that
triggered it; a refused connection is retried a few times (the shim may be starting), then given up.
`GET /sandbox/outbound` shows every attempt so tests can assert what was sent. Which rule sends what, and when,
is sandbox/outbound_rules.py.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
from pydantic import BaseModel

_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)


class OutboundMessage(BaseModel):
    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    rule: str = ""  # the sys_script name of the Business Rule that sent it
    status: int | None = None  # None while pending or when every attempt failed to connect
    attempts: int = 0
    error: str | None = None
    done: bool = False


class WebhookEmitter:
    def __init__(self) -> None:
        self._sent: list[OutboundMessage] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    @property
    def messages(self) -> list[OutboundMessage]:
        with self._lock:
            return [m.model_copy() for m in self._sent]

    def clear(self) -> None:
        with self._lock:
            self._sent.clear()

    def emit(self, url: str, token: str, body: dict[str, Any], rule: str = "") -> None:
        """Queue one POST with `Authorization: Bearer <token>`."""
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        message = OutboundMessage(url=url, body=body, headers=headers, rule=rule)
        with self._lock:
            self._sent.append(message)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Called from plain Python (a script driving `Instance` directly): send from a thread of its own.
            threading.Thread(target=asyncio.run, args=(self._send(message),), daemon=True).start()
            return
        task = loop.create_task(self._send(message))
        # Keep a reference: the loop only holds weak references to tasks.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, message: OutboundMessage) -> None:
        async with httpx.AsyncClient(timeout=10.0) as client:
            for delay in (*_RETRY_DELAYS, None):
                message.attempts += 1
                try:
                    response = await client.post(message.url, json=message.body, headers=message.headers)
                except httpx.TransportError as exc:
                    message.error = f"{type(exc).__name__}: {exc}"
                    if delay is None:
                        break
                    await asyncio.sleep(delay)
                    continue
                message.status, message.error = response.status_code, None
                break
        message.done = True
