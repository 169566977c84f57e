"""The whole loop over real sockets: the sandbox's Business Rule POSTs an approved change to a uvicorn-served shim,
the runbook runs, and the ticket closes with the execution reference."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from config.settings import Settings
from servicenow.client import ServiceNowClient
from starter.devstack.walkthrough import open_standard_change, schedule_preapproved, ticket_report, wait_for_state
from tests.conftest import SandboxControl
from tests.helpers import wait_for
from tests.shim.conftest import LiveServer


@pytest_asyncio.fixture(loop_scope="session")
async def rule_to_shim(sandbox_control: SandboxControl, live_shim: LiveServer, token: str) -> AsyncIterator[LiveServer]:
    """Point the instance's outbound rule at this test's shim, and back at what it was afterwards."""
    before = await sandbox_control.config()
    await sandbox_control.set_config(webhook_url=f"{live_shim.url}/api/servicenow/change", webhook_token=token)
    try:
        yield live_shim
    finally:
        await sandbox_control.set_config(webhook_url=before["webhook_url"], webhook_token=before["webhook_token"])


async def test_approved_standard_change_runs_and_closes_its_ticket(
    rule_to_shim: LiveServer,
    worker: None,
    sn_client: ServiceNowClient,
    sandbox_control: SandboxControl,
    shim_settings: Settings,
) -> None:
    change = await open_standard_change(
        sn_client, "Restart application service", "payments-api", "shim loop: restart payments-api"
    )
    await schedule_preapproved(sn_client, change["sys_id"])

    async def delivered() -> dict[str, Any] | None:
        messages = await sandbox_control._call("GET", "/outbound")
        mine = [m for m in messages if m["body"].get("number") == change["number"] and m["done"]]
        return mine[0] if mine else None

    message = await wait_for(delivered, timeout=15, message="the Business Rule delivered the change")
    assert message["status"] == 202, message

    closed = await wait_for_state(sn_client, change["sys_id"], {"3"}, within=30, interval=0.2)
    assert closed["close_code"] == "successful"
    assert closed["correlation_id"] == f"change-{change['number']}"
    report = await ticket_report(sn_client, change["sys_id"])
    link = shim_settings.execution_url(f"change-{change['number']}")
    assert any(link in note for note in report.work_notes), report.work_notes
