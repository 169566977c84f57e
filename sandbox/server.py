"""Running the sandbox: in the foreground (`changeloop sandbox`) or in a background thread (tests, `changeloop dev`).

`SandboxServer` binds the socket itself so port 0 yields a free port whose number is known before uvicorn
starts, then waits until the instance answers — callers get a `.url` that works.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

__all__ = ["SandboxConfig", "SandboxServer", "run_sandbox", "serve"]


def _uvicorn_config(app: FastAPI, config: SandboxConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=config.log_level,
        # A request hanging in an injected timeout must not hold shutdown for its full hang.
        timeout_graceful_shutdown=1,
        lifespan="off",
    )


def serve(config: SandboxConfig) -> None:
    """Serve in the foreground until interrupted (Ctrl-C)."""
    server_config = _uvicorn_config(create_app(config), config)
    server_config.host, server_config.port = config.host, config.port
    uvicorn.Server(server_config).run()


def run_sandbox(host: str = "127.0.0.1", port: int = 8080, db_path: str = ":memory:", **config: Any) -> None:
    """Shorthand for `serve(SandboxConfig(...))`."""
    serve(SandboxConfig(host=host, port=port, db_path=db_path, **config))


class SandboxServer:
    """A sandbox instance in a background thread. Sync and async context manager; `.url` once started."""

    def __init__(self, config: SandboxConfig | None = None, **overrides: Any) -> None:
        base = config or SandboxConfig(port=0)
        self.config = base.model_copy(update=overrides) if overrides else base
        self.app: FastAPI | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.url = ""

    @property
    def app_state(self) -> SandboxState:
        """The running instance's state (store, auth, faults …) for in-process assertions."""
        assert self.app is not None, "start() the server first"
        state: SandboxState = self.app.state.sandbox
        return state

    def start(self, timeout: float = 15.0) -> SandboxServer:
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
        # without it every answer waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        self._socket = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.app = create_app(self.config)
        self._server = uvicorn.Server(_uvicorn_config(self.app, self.config))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._thread is not None and not self._thread.is_alive():
                raise RuntimeError("sandbox server thread exited during start")
            try:
                if httpx.get(f"{self.url}/sandbox/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"sandbox did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SandboxServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
