"""`POST /api/flows/{flow}/run`: 202 at once, status polling to the end, and the signed callback."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request

from config.registry import Registry, load_registry, parse_registry
from config.settings import Settings
from tests.helpers import wait_for
from tests.shim.conftest import LiveServer

FAILING = """
runbooks:
  broken_flow:
    inputs: [host]
    steps:
      - name: look around
        command: ["{python}", "-c", "print('fine')"]
      - name: fall over
        command: ["{python}", "-c", "import sys; print('disk full', file=sys.stderr); sys.exit(3)"]
        retries: 0
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The shipped runbooks plus one that fails at its second step."""
    shipped = load_registry()
    broken = parse_registry(FAILING, "<test>")
    return shipped.model_copy(update={"runbooks": shipped.runbooks | broken.runbooks})


class Receiver:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, str]]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> dict[str, str]:
            self.calls.append((await request.body(), dict(request.headers)))
            return {"ok": "yes"}


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rx = Receiver()
    async with LiveServer(rx.app) as server:
        yield rx, f"{server.url}/hook"


async def _final_status(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        response = await api.get(f"/api/executions/{execution_id}/status")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] != "RUNNING" else None

    return await wait_for(finished, timeout=30, interval=0.1, message=f"{execution_id} finished")


async def test_flow_run_answers_at_once_then_status_and_signed_callback(
    api: httpx.AsyncClient, worker: None, receiver: tuple[Receiver, str], shim_settings: Settings
) -> None:
    rx, hook = receiver
    run = {"inputs": {"host": "pay-web-01"}, "callbackUrl": hook, "key": "job-42"}
    response = await api.post("/api/flows/restart_app_service/run", json=run)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["executionId"] == "flow-restart_app_service-job-42"
    assert started["status"] == "RUNNING"

    # The caller's key is an idempotency key: the same key again is the same execution.
    again = (await api.post("/api/flows/restart_app_service/run", json=run)).json()
    assert again["executionId"] == started["executionId"] and again["duplicate"] is True

    status = await _final_status(api, started["executionId"])
    assert status["status"] == "COMPLETED"
    assert status["result"]["succeeded"] is True
    assert status["progress"] == {"done": 3, "total": 3}
    assert status["step"] == "health check"
    assert status["url"].startswith("http://127.0.0.1:8233/namespaces/")

    await wait_for(lambda: rx.calls, timeout=15, message="callback received")
    body, headers = rx.calls[0]
    # Signed with the callback key, its own secret: a receiver holds nothing that lets it call the shim.
    assert shim_settings.callback_signing_key is not None
    key = shim_settings.callback_signing_key.get_secret_value()
    expected = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-changeloop-signature"], expected)
    payload = json.loads(body)
    assert payload["executionId"] == started["executionId"] and payload["succeeded"] is True


async def test_flow_without_key_gets_a_fresh_execution_each_time(api: httpx.AsyncClient, worker: None) -> None:
    ids = set()
    for _ in range(2):
        response = await api.post("/api/flows/restart_app_service/run", json={"inputs": {"host": "web-01"}})
        assert response.status_code == 202
        ids.add(response.json()["executionId"])
    assert len(ids) == 2 and all(i.startswith("flow-restart_app_service-") for i in ids)
    for execution_id in ids:
        assert (await _final_status(api, execution_id))["status"] == "COMPLETED"


async def test_failed_flow_status_names_the_failing_step(api: httpx.AsyncClient, worker: None) -> None:
    response = await api.post("/api/flows/broken_flow/run", json={"inputs": {"host": "web-01"}})
    assert response.status_code == 202, response.text
    status = await _final_status(api, response.json()["executionId"])
    assert status["status"] == "FAILED"
    assert "fall over" in status["error"]
    assert status["progress"]["done"] == 1
