"""Standard changes for the benches: a registry whose runbook has three steps that do nothing (the benches measure
changeloop, not the steps), changes made in a sandbox the way ServiceNow users make them, webhooks sent to a shim
process, and the moments a change's history records (first activity, Implement, closed).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench.common import INTEGRATION, SHIM_TOKEN, event_time
from bench.loadgen import Connection
from workflows import calls

TEMPLATE = "Restart application service"  # seeded in the sandbox (sandbox/seed.yaml)
REGISTRY = """
defaults: {production: false, timeout: 10m}
runbooks:
  bench_three_steps:
    description: three steps that do nothing
    optional_inputs: [host]
    steps:
      - {name: stop service, command: ["true"]}
      - {name: start service, command: ["true"]}
      - {name: health check, command: ["true"]}
match:
  - template: Restart application service
    runbook: bench_three_steps
"""


def worker_settings(sandbox_url: str, registry: Path, **more: str) -> dict[str, str]:
    """CHANGELOOP_* settings (lower case, without the prefix) of a worker process for these changes."""
    return {
        "servicenow_url": sandbox_url,
        "servicenow_username": INTEGRATION[0],
        "servicenow_password": INTEGRATION[1],
        "runbooks": str(registry),
    } | more


def write_registry(directory: Path) -> Path:
    path = directory / "bench-runbooks.yaml"
    path.write_text(REGISTRY)
    return path


async def make_changes(sandbox_url: str, count: int, lanes: int = 16) -> list[dict[str, str]]:
    """`count` standard changes from the template, pre-approved into Scheduled (as the template does on an
    instance): each is POSTed, then moved New -> Scheduled, by the integration user."""
    async with httpx.AsyncClient(base_url=sandbox_url, auth=INTEGRATION, timeout=120) as http:
        found = await http.get(
            "/api/now/table/std_change_producer_version",
            params={"sysparm_query": f"name={TEMPLATE}", "sysparm_fields": "sys_id", "sysparm_limit": "1"},
        )
        template = found.json()["result"][0]["sys_id"]
        made: list[dict[str, str]] = []
        todo = asyncio.Queue[int]()
        for n in range(count):
            todo.put_nowait(n)

        async def lane() -> None:
            while not todo.empty():
                n = todo.get_nowait()
                body = {
                    "type": "standard",
                    "short_description": f"bench change {n}",
                    "std_change_producer_version": template,
                }
                created = (await http.post("/api/now/table/change_request", json=body)).json()["result"]
                await http.patch(
                    f"/api/now/table/change_request/{created['sys_id']}", json={"state": "-2", "approval": "approved"}
                )
                made.append({"number": created["number"], "sys_id": created["sys_id"]})

        await asyncio.gather(*(lane() for _ in range(lanes)))
    return made


def webhook_body(change: dict[str, str]) -> dict[str, str]:
    """What the Business Rule sends (deploy/servicenow/): a hint, number and sys_id."""
    return {"number": change["number"], "sys_id": change["sys_id"], "state": "-2", "type": "standard"}


class Webhooks:
    """Keep-alive connections to a shim process, used in turn (bench/loadgen.py)."""

    def __init__(self, port: int, lanes: int = 16) -> None:
        self.port = port
        self.pool: asyncio.Queue[Connection] = asyncio.Queue()
        self.lanes = lanes
        self.connections: list[Connection] = []

    async def __aenter__(self) -> Webhooks:
        for _ in range(self.lanes):
            connection = Connection("127.0.0.1", self.port, {"Authorization": f"Bearer {SHIM_TOKEN}"})
            await connection.open()
            self.connections.append(connection)
            self.pool.put_nowait(connection)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in self.connections:
            await connection.close()

    async def send(self, change: dict[str, str]) -> float:
        """POST the webhook; answers when it was sent (time.time())."""
        connection = await self.pool.get()
        try:
            sent = time.time()
            status, body = await connection.post_json("/api/servicenow/change", webhook_body(change))
        finally:
            self.pool.put_nowait(connection)
        if status != 202:
            raise RuntimeError(f"shim answered {status}: {body.decode(errors='replace')}")
        return sent


@dataclass
class Moments:
    """When a change's history says things happened (UNIX seconds, server clock)."""

    first_activity: float = float("nan")  # the first activity started
    implement: float = float("nan")  # begin_implementation completed: the ticket is in Implement
    closed: float = float("nan")  # the workflow completed
    activities: int = 0  # activities the workflow ran (its own, not its children's)


async def moments(
    client: Client, workflow_id: str, implement_activity: str | int = calls.BEGIN_IMPLEMENTATION.name
) -> Moments:
    """Read one workflow's history. `implement_activity` is the activity whose completion counts as Implement: a
    name, or (for a baseline that has no names) the position of the activity in the history (1-based)."""
    found = Moments()
    names: dict[int, str] = {}
    order: dict[int, int] = {}
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        at = event_time(event)
        if event.HasField("activity_task_scheduled_event_attributes"):
            found.activities += 1
            names[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
            order[event.event_id] = found.activities
        elif event.HasField("activity_task_started_event_attributes") and math.isnan(found.first_activity):
            found.first_activity = at
        elif event.HasField("activity_task_completed_event_attributes"):
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            if implement_activity in (names.get(scheduled), order.get(scheduled)):
                found.implement = at
        elif event.HasField("workflow_execution_completed_event_attributes"):
            found.closed = at
    return found


async def all_moments(
    client: Client, workflow_ids: list[str], implement_activity: str | int, lanes: int = 8
) -> list[Moments]:
    gate = asyncio.Semaphore(lanes)

    async def one(workflow_id: str) -> Moments:
        async with gate:
            return await moments(client, workflow_id, implement_activity)

    return list(await asyncio.gather(*(one(w) for w in workflow_ids)))


async def wait_closed(client: Client, workflow_ids: list[str], within: float) -> None:
    """Until every workflow has completed (each handle's result), or raise after `within` seconds."""

    async def one(workflow_id: str) -> Any:
        return await client.get_workflow_handle(workflow_id).result()

    await asyncio.wait_for(asyncio.gather(*(one(w) for w in workflow_ids)), timeout=within)
