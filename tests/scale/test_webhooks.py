"""Two workers on one queue take 200 webhooks: every change runs once and closes once, whichever worker took it.

The worker processes are the product's (`changeloop worker`); the webhooks go through the starter shim as the
Business Rule sends them, each delivered twice (ServiceNow may fire a rule again), against a sandbox of the test's
own. Counted where the work lands: ServiceNow (read as admin) for the closed changes, Temporal for one change and one
runbook execution per change and one step run in each.

Throughput is measured twice on this machine, on as many changes each time - one worker alone on 200 changes, then
two workers on 200 others - and printed (`pytest -s`); it is a figure to read, not asserted: on two shared cores the
dev server, the sandbox, the shim and the workers compete for the same CPU.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from config.registry import load_registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from starter.shim.app import create_app
from tests.changes import Changes
from tests.conftest import WEBHOOK_TOKEN
from tests.helpers import wait_for
from tests.scale.conftest import WorkerProcess, change_number, started
from tests.shim.conftest import webhook_body
from workflows.change.models import change_workflow_id
from workflows.runbook.models import runbook_workflow_id

SCALE_REGISTRY = Path(__file__).with_name("runbooks.yaml")
ALONE = 200  # changes one worker takes alone first: its throughput, on as many changes as the two take
TOGETHER = 200  # the webhooks two workers take
DELIVERIES = 2  # each webhook arrives twice
CONCURRENCY = 16  # webhooks in flight, as several Business Rule threads send them


async def _create(changes: Changes, count: int) -> list[dict[str, str]]:
    made = []
    for _ in range(count):
        made.append(await changes.create(category="Scale", ci="payments-api", number=change_number()))
    return made


async def _deliver(shim: httpx.AsyncClient, changes: list[dict[str, str]]) -> list[bool]:
    """Every change's webhook, DELIVERIES times, CONCURRENCY at once; answers `duplicate` of each answer."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(change: dict[str, str]) -> bool:
        async with gate:
            body = webhook_body(change["number"], sys_id=change["sys_id"], category="Scale")
            answer = await shim.post("/api/servicenow/change", json=body)
            assert answer.status_code == 202, answer.text
            return bool(answer.json().get("duplicate", False))

    return await asyncio.gather(*(one(c) for c in changes for _ in range(DELIVERIES)))


async def _closed(client: Client, queue: str) -> int:
    query = f"TaskQueue = '{queue}' AND WorkflowType = 'ChangeRequestWorkflow' AND ExecutionStatus = 'Completed'"
    return (await client.count_workflows(query)).count


async def _take(client: Client, shim: httpx.AsyncClient, queue: str, changes: list[dict[str, str]], done: int) -> float:
    """Deliver the webhooks and wait until every change's workflow completed: changes per second."""
    began = time.monotonic()
    duplicates = await _deliver(shim, changes)
    assert Counter(duplicates) == {False: len(changes), True: len(changes) * (DELIVERIES - 1)}

    async def all_closed() -> bool:
        return await _closed(client, queue) >= done + len(changes)

    await wait_for(all_closed, timeout=240, interval=0.2, message=f"{len(changes)} changes closed")
    return len(changes) / (time.monotonic() - began)


async def _step_runs(client: Client, number: str) -> list[tuple[int, str]]:
    """Each start of the runbook's step: (attempt, the worker's identity). Once is [(1, <a worker>)]."""
    steps, runs = set(), []
    async for event in client.get_workflow_handle(runbook_workflow_id(number)).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == "run_step":
                steps.add(event.event_id)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in steps:
                runs.append((started.attempt, started.identity))
    return runs


@pytest.mark.timeout(420)  # 1 1/2-2 1/2 min of work on two cores; its own wait (240 s) is the real bound
async def test_two_workers_take_200_webhooks_and_every_change_runs_once(
    temporal_client: Client,
    scale_settings: Settings,
    scale_sn: ServiceNowClient,
    scale_admin: ServiceNowClient,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    settings = scale_settings.model_copy(update={"runbooks": SCALE_REGISTRY})
    queue = settings.task_queue
    first, second = (WorkerProcess(name, settings, tmp_path / name) for name in ("first", "second"))
    workers.extend([first, second])
    await started(first)
    changes = Changes(scale_sn)
    alone, together = await _create(changes, ALONE), await _create(changes, TOGETHER)
    app = create_app(settings, temporal_client, load_registry(SCALE_REGISTRY))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://shim",
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        timeout=30,
    ) as shim:
        one_worker = await _take(temporal_client, shim, queue, alone, 0)
        await started(second)
        two_workers = await _take(temporal_client, shim, queue, together, ALONE)
    print(
        f"\nthroughput, webhook to closed change (one step each): one worker {one_worker:.1f} changes/s "
        f"({ALONE} changes), two workers {two_workers:.1f} changes/s ({TOGETHER} changes)"
    )

    # ServiceNow, read as admin: each of the 200 changes closed, successful.
    numbers = [c["number"] for c in together]
    closed = await scale_admin.list(
        "change_request", Query().in_("number", numbers), fields=["number", "state", "close_code"]
    )
    assert Counter(c["number"] for c in closed) == Counter(numbers)
    assert {(c["state"], c["close_code"]) for c in closed} == {("3", "successful")}

    # Temporal: one change and one runbook execution per change (the duplicate deliveries started nothing), one step
    # run in each, and both workers took a share.
    executions = [e async for e in temporal_client.list_workflows(f"TaskQueue = '{queue}'")]
    assert Counter(e.id for e in executions) == Counter(
        [change_workflow_id(n) for n in [*numbers, *(c["number"] for c in alone)]]
        + [runbook_workflow_id(n) for n in [*numbers, *(c["number"] for c in alone)]]
    )
    seen = await asyncio.gather(*(_step_runs(temporal_client, n) for n in numbers))
    assert [[attempt for attempt, _ in runs] for runs in seen] == [[1]] * TOGETHER
    took = Counter(identity for runs in seen for _, identity in runs)
    assert set(took) == {first.identity, second.identity}, took
    print(f"steps run by each worker: {dict(took)}")
