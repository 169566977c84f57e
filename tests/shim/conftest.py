"""Shim fixtures: the app under test on its own task queue, an authenticated HTTP client, a real uvicorn, a worker.

Each test gets a fresh task queue, so "nothing was started" is a count over that queue alone and no other test's
workflows (nor a running schedule) can blur it.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from config.registry import Registry, load_registry
from config.settings import Settings
from starter.shim.app import create_app
from tests.conftest import OPERATOR_TOKEN, PRINCIPAL_TOKENS, WEBHOOK_TOKEN
from tests.helpers import wait_for


@pytest.fixture
def shim_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"task_queue": f"shim-{uuid.uuid4().hex[:10]}"})


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


@pytest.fixture
def token() -> str:
    """The operator's token: every scope, so the contract tests below reach every route."""
    return OPERATOR_TOKEN


@pytest.fixture
def webhook_token(shim_settings: Settings) -> str:
    """The Business Rules' token: CHANGELOOP_WEBHOOK_TOKEN, the principal `servicenow` (change:webhook only)."""
    assert shim_settings.webhook_token is not None
    return shim_settings.webhook_token.get_secret_value()


@pytest.fixture
def app(shim_settings: Settings, temporal_client: Client, registry: Registry) -> FastAPI:
    return create_app(shim_settings, temporal_client, registry)


@pytest_asyncio.fixture(loop_scope="session")
async def api(app: FastAPI, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """In-process client (ASGI transport): same code path as uvicorn minus the socket."""
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://shim", headers=headers, timeout=30) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A uvicorn server on a free 127.0.0.1 port, in the test's own event loop (the Temporal client lives there)."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", port))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveServer:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        await wait_for(lambda: self.server.started, timeout=10, message="uvicorn started")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)
        self.sock.close()


def principal_client(app: FastAPI, name: str) -> httpx.AsyncClient:
    """An in-process client that calls the shim as one of the test principals (tests/conftest.py)."""
    token = WEBHOOK_TOKEN if name == "servicenow" else PRINCIPAL_TOKENS[name]
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shim", headers=headers, timeout=30
    )


@pytest_asyncio.fixture(loop_scope="session")
async def live_shim(app: FastAPI) -> AsyncIterator[LiveServer]:
    async with LiveServer(app) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def worker(temporal_client: Client, shim_settings: Settings, registry: Registry) -> AsyncIterator[None]:
    from worker import build_worker

    async with build_worker(temporal_client, shim_settings, registry):
        yield


async def count_on_queue(client: Client, task_queue: str) -> int:
    return (await client.count_workflows(f"TaskQueue = '{task_queue}'")).count


def change_number() -> str:
    """A number no seeded or other test's change uses: CHG9 + 6 random digits."""
    return f"CHG9{uuid.uuid4().int % 1_000_000:06d}"


def webhook_body(number: str, **overrides: str) -> dict[str, str]:
    body = {
        "sys_id": uuid.uuid4().hex,
        "number": number,
        "state": "-2",
        "type": "standard",
        "approval": "approved",
        "category": "Software",
        "short_description": "test change",
        "cmdb_ci": uuid.uuid4().hex,
        "cmdb_ci_name": "payments-api",
        "std_change_producer_version": uuid.uuid4().hex,
        "std_change_producer_version_name": "Restart application service",
    }
    body.update(overrides)
    return body


def assert_envelope(response: httpx.Response, status: int, *names: str) -> str:
    """The ServiceNow error envelope with `status`; every name in `names` appears in the detail."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "failure"
    assert set(body["error"]) == {"message", "detail"}
    detail: str = body["error"]["detail"]
    for name in names:
        assert name in detail, f"{name!r} not named in {detail!r}"
    return detail
