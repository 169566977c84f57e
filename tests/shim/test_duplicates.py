"""The same change delivered again and again is one execution: the server's ID policy decides, not a lookup."""

from __future__ import annotations

import asyncio

import httpx
from temporalio.client import Client

from config.settings import Settings
from servicenow.client import ServiceNowClient
from starter.devstack.walkthrough import open_standard_change, schedule_preapproved, ticket_report, wait_for_state
from tests.helpers import listed_runs, wait_for
from tests.shim.conftest import change_number, count_on_queue, webhook_body
from workflows.poll.models import PollInput, PollResult


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


async def test_a_change_delivered_five_times_and_found_by_the_poll_runs_once(
    api: httpx.AsyncClient,
    worker: None,
    temporal_client: Client,
    shim_settings: Settings,
    sn_client: ServiceNowClient,
) -> None:
    change = await open_standard_change(sn_client, "Restart application service", "payments-api", "delivered 5x + poll")
    await schedule_preapproved(sn_client, change["sys_id"])
    body = webhook_body(change["number"], sys_id=change["sys_id"])

    responses = await asyncio.gather(*(api.post("/api/servicenow/change", json=body) for _ in range(5)))
    poll = await temporal_client.execute_workflow(
        "ChangePollWorkflow",
        PollInput(),
        id=f"poll-{change['number']}",
        task_queue=shim_settings.task_queue,
        result_type=PollResult,
    )

    assert {r.status_code for r in responses} == {202}
    assert {r.json()["executionId"] for r in responses} == {f"change-{change['number']}"}
    assert change["number"] not in poll.started, "the poll found it but must not start it again"
    closed = await wait_for_state(sn_client, change["sys_id"], {"3"}, within=30, interval=0.2)
    assert closed["close_code"] == "successful"
    runs = await listed_runs(temporal_client, f"change-{change['number']}")
    assert len(runs) == 1
    report = await ticket_report(sn_client, change["sys_id"])
    assert sum(note.startswith("Started by changeloop") for note in report.work_notes) == 1
