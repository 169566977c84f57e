"""The ServiceNow request budget (servicenow/budget.py): a rate, priorities, and a 429 that stops everybody.

The bucket's own rules are checked on the bucket; what the instance sees is checked in the sandbox's request log
(`GET /sandbox/stats/requests`, arrival order) on a sandbox of this module's own, so no other test's calls mix in.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from temporalio.client import Client
from temporalio.service import RPCError

from activities.budget import priority_of
from config.reconcile import ReconcileConfig, config_digest
from config.registry import load_registry
from config.settings import Settings
from sandbox.server import SandboxConfig, SandboxServer
from servicenow.auth import BasicAuth
from servicenow.budget import Priority, RequestBudget, spending
from servicenow.client import ServiceNowClient
from servicenow.errors import RateLimited
from servicenow.query import Query
from tests.changes import TEST_REGISTRY, Changes, start
from tests.conftest import INTEGRATION_USER
from worker import build_worker
from workflows.change.models import ChangeResult, change_workflow_id
from workflows.reconcile.models import ReconcileInput, ReconcileSummary


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(port=0, seed=True)) as server:
        yield server


async def _control(sandbox: SandboxServer, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as http:
        answer = await http.request(method, f"/sandbox{path}", json=body)
        answer.raise_for_status()
        return answer.json() if answer.content else None


@pytest_asyncio.fixture(loop_scope="session")
async def clean_sandbox(own_sandbox: SandboxServer) -> AsyncIterator[SandboxServer]:
    await _control(own_sandbox, "POST", "/stats/reset")
    try:
        yield own_sandbox
    finally:
        await _control(own_sandbox, "PUT", "/rate-limits", {"rules": []})


# -- the bucket ------------------------------------------------------------------------------------------------------


async def test_waiting_requests_are_served_by_priority_then_by_arrival() -> None:
    budget = RequestBudget(rate=20, burst=1)
    await budget.acquire(Priority.RECONCILE)  # spends the one saved token: everything below queues
    order: list[str] = []

    async def request(name: str, priority: Priority) -> None:
        await budget.acquire(priority)
        order.append(name)

    arrivals = [("r1", Priority.RECONCILE), ("r2", Priority.RECONCILE), ("w1", Priority.WAVE)]
    arrivals += [("c1", Priority.CHANGE), ("r3", Priority.RECONCILE), ("c2", Priority.CHANGE)]
    await asyncio.gather(*(request(name, priority) for name, priority in arrivals))

    assert order == ["c1", "c2", "w1", "r1", "r2", "r3"]
    assert budget.granted == {Priority.CHANGE: 2, Priority.WAVE: 1, Priority.RECONCILE: 4}


async def test_the_budget_spends_its_rate_after_its_burst() -> None:
    budget = RequestBudget(rate=50, burst=5)
    began = time.monotonic()
    for _ in range(5):
        await budget.acquire()
    burst = time.monotonic() - began
    for _ in range(20):
        await budget.acquire()
    spent = time.monotonic() - began

    assert burst < 0.05  # saved-up tokens go at once
    assert spent >= 20 / 50 - 0.02  # then one token per 1/rate seconds
    assert budget.waited[Priority.CHANGE] > 0


async def test_a_cancelled_request_gives_its_turn_to_the_next() -> None:
    budget = RequestBudget(rate=20, burst=1)
    await budget.acquire()
    first = asyncio.create_task(budget.acquire(Priority.CHANGE))
    second = asyncio.create_task(budget.acquire(Priority.RECONCILE))
    await asyncio.sleep(0)  # both queued
    first.cancel()
    await second

    assert first.cancelled()
    assert budget.granted[Priority.RECONCILE] == 1 and budget.granted[Priority.CHANGE] == 1


def test_each_activity_spends_at_its_workflows_priority() -> None:
    assert priority_of("ChangeRequestWorkflow", "load_change") == Priority.CHANGE
    assert priority_of("OpenIncidentWorkflow", "open_incident_record") == Priority.CHANGE
    assert priority_of("PatchWaveWorkflow", "add_work_note") == Priority.WAVE
    assert priority_of("ChangeRequestWorkflow", "load_wave_page") == Priority.WAVE
    assert priority_of("ReconcileWorkflow", "reconcile_apply_batch") == Priority.RECONCILE
    assert priority_of(None, "reconcile_pull_cmdb") == Priority.RECONCILE


# -- a low-priority burst over HTTP ----------------------------------------------------------------------------------


async def test_a_low_priority_burst_does_not_delay_a_change_beyond_the_next_token(
    clean_sandbox: SandboxServer,
) -> None:
    """24 reconciliation reads queue on a 4 requests/s budget (6 s of work); a change's call made while they wait
    reaches the instance with at most the grants already in flight before it, not behind the queue."""
    rate, burst = 4.0, 24
    budget = RequestBudget(rate=rate, burst=1)
    async with ServiceNowClient(clean_sandbox.url, BasicAuth(*INTEGRATION_USER), budget=budget) as sn:

        async def bulk_read() -> int:
            with spending(Priority.RECONCILE, "bulk"):
                return await sn.count("cmn_location")

        bulk = [asyncio.create_task(bulk_read()) for _ in range(burst)]
        before = await _log_until(clean_sandbox, lambda log: len(log) >= 3)  # the burst is being served
        mark = max(entry["seq"] for entry in before)
        with spending(Priority.CHANGE, "change"):
            await sn.count("change_request")
        queued_after = sum(1 for task in bulk if not task.done())
        await asyncio.gather(*bulk)

    log = await _control(clean_sandbox, "GET", "/stats/requests")
    [change] = [entry for entry in log if entry["table"] == "change_request"]
    overtaken_by = [e for e in log if e["table"] == "cmn_location" and mark < e["seq"] < change["seq"]]
    assert len(overtaken_by) <= 2, overtaken_by  # the grants in flight when it asked; first come first served: ~20
    assert queued_after >= burst // 2  # the burst was still queueing when the change got through
    assert budget.waited[Priority.CHANGE] <= 2 / rate, budget.waited  # the next token, not the queue's 6 s
    assert sn.spent[("change", "GET", "change_request")] == 1 and sn.spent[("bulk", "GET", "cmn_location")] == burst


# -- a 429 pauses everybody ---------------------------------------------------------------------------------------------


class SendTimes(httpx.AsyncBaseTransport):
    """The client's side of the wire: when each request left, and when each 429 came back with its Retry-After."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.sent: list[float] = []
        self.refusals: list[tuple[float, float]] = []  # (answered at, Retry-After seconds)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(time.monotonic())
        response = await self._inner.handle_async_request(request)
        if response.status_code == 429:
            self.refusals.append((time.monotonic(), float(response.headers["Retry-After"])))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_after_a_429_nobody_calls_before_retry_after(clean_sandbox: SandboxServer) -> None:
    # One request per two-second window: every second request of a window is refused.
    rule = {"name": "one per window", "apply_to": "user", "user": INTEGRATION_USER[0], "limit": 1}
    await _control(clean_sandbox, "PUT", "/rate-limits", {"window_seconds": 2, "rules": [rule]})
    budget = RequestBudget(rate=5, burst=1)
    wire = SendTimes()
    async with ServiceNowClient(clean_sandbox.url, BasicAuth(*INTEGRATION_USER), budget=budget, transport=wire) as sn:
        await asyncio.gather(*(sn.count("cmn_location") for _ in range(4)))

    log = await _control(clean_sandbox, "GET", "/stats/requests")
    refused = [entry["rate_limited"] for entry in log]
    assert refused.count(False) == 4  # every request got through in the end
    assert any(refused) and budget.pauses >= 1  # some were refused (429), and the budget paused for them
    # Once a 429 has come back, nobody sends before its Retry-After has passed. (A request already on the wire when
    # the 429 came back may be refused too: the instance's log alone cannot tell it from one sent too early.)
    assert wire.refusals
    early = [(sent - at, wait) for at, wait in wire.refusals for sent in wire.sent if at < sent < at + wait]
    assert not early, f"requests sent (seconds after a 429, its Retry-After): {early}"


async def test_a_pause_beyond_max_retry_after_fails_at_once_without_a_request(clean_sandbox: SandboxServer) -> None:
    rule = {"name": "two per window", "apply_to": "user", "user": INTEGRATION_USER[0], "limit": 2}
    await _control(clean_sandbox, "PUT", "/rate-limits", {"window_seconds": 1_000_000, "rules": [rule]})
    budget = RequestBudget(rate=100)
    async with ServiceNowClient(
        clean_sandbox.url, BasicAuth(*INTEGRATION_USER), budget=budget, max_retry_after=30
    ) as sn:
        await sn.count("cmn_location")
        await sn.count("cmn_location")
        with pytest.raises(RateLimited):
            await sn.count("cmn_location")  # the instance refuses: the budget pauses for the rest of the window
        with pytest.raises(RateLimited) as refused_here:
            await sn.count("cmn_location")  # refused by the budget itself

    assert refused_here.value.retry_after > 30
    log = await _control(clean_sandbox, "GET", "/stats/requests")
    assert [entry["rate_limited"] for entry in log] == [False, False, True]


# -- a change before a running reconciliation ----------------------------------------------------------------------------

BUDGET = 4.0  # requests per second: low, so the reconciliation's writes queue
NEW_HOSTS = 32


@pytest_asyncio.fixture(loop_scope="session")
async def budget_settings(settings: Settings, own_sandbox: SandboxServer, tmp_path: Path) -> Settings:
    configs = tmp_path / "configs"
    configs.mkdir()
    return settings.model_copy(
        update={
            "servicenow_url": own_sandbox.url,
            "task_queue": "budget-test",
            "servicenow_budget": BUDGET,
            "servicenow_budget_burst": 1.0,
            "reconcile": configs,
            "reconcile_state_dir": tmp_path / "state",
        }
    )


def _reconcile_config(tmp_path: Path, prefix: str) -> ReconcileConfig:
    hosts = [
        {"name": f"{prefix}{n:03d}", "serial_number": f"{prefix}SN-{n:03d}", "ip_address": "", "os": "Linux"}
        for n in range(NEW_HOSTS)
    ]
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(hosts))
    source = {
        "name": "inventory",
        "kind": "command",
        "argv": ["cat", str(inventory)],
        "key_field": "serial_number",
        "ci_class": "cmdb_ci_linux_server",
        "mapping": {"key": "serial_number"},
        "attempts": 1,
    }
    # 8 writes in flight: twice what the budget lets through per second, so they always wait for tokens.
    return ReconcileConfig.model_validate({"sources": [source], "cmdb": {"name_prefix": prefix}, "concurrency": 8})


async def _unused_change(client: Client, changes: Changes) -> dict[str, Any]:
    """A change of this test's own sandbox whose number no earlier test ran on the shared Temporal server: change
    numbers restart with every sandbox, and a change workflow ID that ran once is never started again (it answers
    the earlier run's outcome)."""
    for _ in range(50):
        change = await changes.create(template="Restart application service")
        try:
            await client.get_workflow_handle(change_workflow_id(change["number"])).describe()
        except RPCError:
            return change  # not found: nobody ran this number here
    raise AssertionError("no change number left that the shared Temporal server has not run")


async def _log_until(sandbox: SandboxServer, seen: Any, within: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        log: list[dict[str, Any]] = await _control(sandbox, "GET", "/stats/requests")
        if seen(log):
            return log
        await asyncio.sleep(0.05)
    raise AssertionError("the sandbox never saw what the test waits for")


async def test_a_change_is_served_before_a_running_reconciliations_writes(
    temporal_client: Client, budget_settings: Settings, own_sandbox: SandboxServer, tmp_path: Path
) -> None:
    """With 4 requests/s, a reconciliation keeps 8 writes waiting; a change started meanwhile gets the next token
    for each of its ticket calls, instead of queueing behind the writes."""
    prefix = f"budget{int(time.time())}-"
    config = _reconcile_config(tmp_path, prefix)
    assert budget_settings.reconcile is not None
    (Path(budget_settings.reconcile) / "budget.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json", by_alias=True))
    )
    await _control(own_sandbox, "POST", "/stats/reset")
    is_write = lambda e: e["method"] == "POST" and e["table"] == "cmdb_ci_linux_server"  # noqa: E731
    is_ticket = lambda e: e["table"] == "change_request"  # noqa: E731

    async with (
        ServiceNowClient(own_sandbox.url, BasicAuth(*INTEGRATION_USER)) as maker,
        ServiceNowClient.from_settings(budget_settings) as sn,
    ):
        change = await _unused_change(temporal_client, Changes(maker))
        await _control(own_sandbox, "POST", "/stats/reset")
        async with build_worker(temporal_client, budget_settings, load_registry(TEST_REGISTRY), sn):
            reconcile = await temporal_client.start_workflow(
                "ReconcileWorkflow",
                ReconcileInput(config="budget", digest=config_digest(config)),
                id=f"reconcile-{prefix}",
                task_queue=budget_settings.task_queue,
                result_type=ReconcileSummary,
            )
            await _log_until(own_sandbox, lambda log: sum(map(is_write, log)) >= 2)  # the writes are queueing
            handle = await start(temporal_client, budget_settings, change["number"])
            result: ChangeResult = await handle.result()
            summary = await reconcile.result()
        assert sn.budget is not None
        waited = {p: sn.budget.waited[p] / max(1, sn.budget.granted[p]) for p in (Priority.CHANGE, Priority.RECONCILE)}

    assert result.outcome.value == "successful" and summary.created_total == NEW_HOSTS
    log = await _control(own_sandbox, "GET", "/stats/requests")
    tickets = [i for i, entry in enumerate(log) if is_ticket(entry)]
    writes = [i for i, entry in enumerate(log) if is_write(entry)]
    assert len(writes) == NEW_HOSTS
    assert writes[0] < tickets[0] and writes[-1] > tickets[-1], "the change ran while the reconciliation wrote"
    # Between two consecutive ticket calls the reconciliation gets the tokens the change leaves (while a workflow
    # task or a runbook step runs), never the 7 waiting writes a first-come-first-served queue would put first.
    between = [sum(1 for w in writes if a < w < b) for a, b in itertools.pairwise(tickets)]
    print(f"ticket calls {len(tickets)}, writes between consecutive ones {between}, mean wait per grant {waited}")
    assert statistics.median(between) <= 1, between
    # The change waits for the next token at most; a write waits behind the other writes.
    assert waited[Priority.CHANGE] <= 2 / BUDGET and waited[Priority.RECONCILE] > 4 * waited[Priority.CHANGE], waited
    async with ServiceNowClient(own_sandbox.url, BasicAuth(*INTEGRATION_USER)) as reader:
        assert await reader.count("cmdb_ci_linux_server", Query().startswith("name", prefix)) == NEW_HOSTS
