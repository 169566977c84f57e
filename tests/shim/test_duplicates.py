"""The same change delivered again and again is one execution: the server's ID policy decides, not a lookup."""

from __future__ import annotations

import asyncio

import httpx
from temporalio.client import Client

from settings import Settings
from tests.helpers import wait_for
from tests.shim.conftest import change_number, count_on_queue, webhook_body


async def test_five_deliveries_of_one_change_start_it_once(
    api: httpx.AsyncClient, temporal_client: Client, shim_settings: Settings
) -> None:
    number = change_number()
    body = webhook_body(number)
    # Concurrent, as a Business Rule retrying on a slow answer would deliver them.
    responses = await asyncio.gather(*(api.post("/api/servicenow/change", json=body) for _ in range(5)))
    answers = [r.json() for r in responses]
    assert {r.status_code for r in responses} == {202}
    assert {a["executionId"] for a in answers} == {f"change-{number}"}
    assert len({a["runId"] for a in answers}) == 1
    assert sum(1 for a in answers if a.get("duplicate")) == 4
    first = next(a for a in answers if not a.get("duplicate"))
    assert first["status"] == "RUNNING"
    assert first["url"].endswith(f"/workflows/change-{number}/{first['runId']}/history")

    # A late repeat still names the same execution.
    again = (await api.post("/api/servicenow/change", json=body)).json()
    assert again["duplicate"] is True and again["runId"] == first["runId"]

    async def counted() -> int:
        return await count_on_queue(temporal_client, shim_settings.task_queue)

    await wait_for(counted, timeout=10)
    assert await counted() == 1
    found = await temporal_client.count_workflows(f"ChangeNumber = '{number}'")
    assert found.count == 1
