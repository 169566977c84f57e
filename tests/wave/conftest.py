"""Patch-wave fixtures: a worker on its own task queue, the sandbox fleet's control panel, and a way to run a
patching change to its end and read back everything a user would look at (result, ticket, notes, wave status).

The fleet's hosts are shared by every test in the session, so each wave test starts by resetting the fleet
(`fleet` fixture) and never relies on what an earlier test left behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError

from config.registry import Registry, load_registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.changes import TEST_REGISTRY, Changes, start
from worker import build_worker
from workflows.change.models import ChangeResult
from workflows.status import QUERY_STATUS
from workflows.wave.models import WaveStatus, wave_workflow_id

TARGET = "2025.06"  # tests/runbooks.yaml's target_level
BASELINE = "2025.01"  # the fleet's level after a reset
FLEET = [f"fleet-{n:02d}" for n in range(1, 21)]


class FleetControl:
    """The sandbox fleet's /fleet/* endpoints."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=f"{base_url}/fleet", timeout=10)

    async def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = await self.http.request(method, path, json=json)
        response.raise_for_status()
        return response.json()

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def configure(self, **config: Any) -> None:
        await self._call("PUT", "/config", config)

    async def set_faults(self, host: str, **faults: Any) -> None:
        await self._call("PUT", f"/hosts/{host}/faults", faults)

    async def host(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/hosts/{name}")
        return result

    async def hosts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/hosts")
        return result

    async def counters(self, names: list[str]) -> dict[str, dict[str, int]]:
        return {name: (await self.host(name))["counters"] for name in names}

    async def patch_by_hand(self, host: str, level: str) -> None:
        """What an admin does outside any change: the host agent's own patch call."""
        await self._call("POST", f"/hosts/{host}/patch", {"level": level})


@pytest_asyncio.fixture(loop_scope="session")
async def fleet(sandbox_url: str) -> AsyncIterator[FleetControl]:
    control = FleetControl(sandbox_url)
    await control.reset()
    try:
        yield control
    finally:
        await control.http.aclose()


@pytest.fixture(scope="session")
def wave_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"task_queue": "changeloop-wave-test"})


@pytest.fixture(scope="session")
def wave_registry() -> Registry:
    return load_registry(TEST_REGISTRY)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def wave_worker(temporal_client: Client, wave_settings: Settings, wave_registry: Registry) -> AsyncIterator[Any]:
    async with ServiceNowClient.from_settings(wave_settings) as sn:
        async with build_worker(temporal_client, wave_settings, wave_registry, sn) as running:
            yield running


@pytest_asyncio.fixture(loop_scope="session")
async def changes(sn_client: ServiceNowClient) -> Changes:
    return Changes(sn_client)


@dataclass
class WaveRun:
    change: dict[str, Any]
    result: ChangeResult | None
    error: BaseException | None
    ticket: dict[str, Any]
    notes: list[str]
    status: WaveStatus

    @property
    def number(self) -> str:
        return str(self.change["number"])

    def summary(self) -> str:
        head = f"Patch wave {wave_workflow_id(self.number)} summary"
        found = [note for note in self.notes if note.startswith(head)]
        assert len(found) == 1, f"expected one summary note, got {len(found)}"
        return found[0]


async def run_wave(
    client: Client, settings: Settings, changes: Changes, *, app: str = "fleet", category: str = ""
) -> WaveRun:
    """Create an approved "Patch Linux servers" change on `app`, run it to the end, read back what a user sees."""
    change = await changes.create(template="Patch Linux servers", category=category, ci=app)
    handle = await start(client, settings, change["number"])
    result: ChangeResult | None = None
    error: BaseException | None = None
    try:
        result = await handle.result()
    except WorkflowFailureError as failure:
        error = failure
    wave = client.get_workflow_handle(wave_workflow_id(change["number"]))
    status = await wave.query(QUERY_STATUS, result_type=WaveStatus)
    return WaveRun(
        change=change,
        result=result,
        error=error,
        ticket=await changes.get(change["sys_id"]),
        notes=await changes.work_notes(change["sys_id"]),
        status=status,
    )
