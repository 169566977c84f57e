"""`changeloop change create --template NAME --ci CI`: a pre-approved standard change that the instance's Business
Rule sends to a live shim, and that then runs and closes, through the Change Management API and through the Table
API fallback. Bad input creates nothing."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.client import Client

from config.registry import Registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from servicenow.standard_change import StandardChangeRequest, create_standard_change
from starter.devstack.walkthrough import wait_for_state
from starter.shim.app import create_app
from tests.conftest import WEBHOOK_TOKEN, SandboxControl
from tests.shim.conftest import LiveServer

TEMPLATE = "Restart application service"


class Recorder(httpx.AsyncHTTPTransport):
    """The real transport, keeping `METHOD path` of every request: which API created the change is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return await super().handle_async_request(request)

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for r in self.requests if r.startswith(f"{method} {prefix}"))


@pytest_asyncio.fixture(loop_scope="session")
async def rules_to_shim(
    settings: Settings, temporal_client: Client, registry: Registry, sandbox_control: SandboxControl, worker: Any
) -> AsyncIterator[LiveServer]:
    """A shim on the session worker's task queue, served on a socket, with the instance's rules pointed at it."""
    before = await sandbox_control.config()
    async with LiveServer(create_app(settings, temporal_client, registry)) as shim:
        await sandbox_control.set_config(shim_url=shim.url, webhook_token=WEBHOOK_TOKEN)
        try:
            yield shim
        finally:
            await sandbox_control.set_config(
                shim_url=before["shim_url"] or "", webhook_token=before["webhook_token"] or ""
            )


@pytest_asyncio.fixture(loop_scope="session")
async def change_api_off(sandbox_control: SandboxControl) -> AsyncIterator[None]:
    """The instance answers like one without the sn_chg_rest plugin."""
    await sandbox_control.set_config(change_api=False)
    try:
        yield
    finally:
        await sandbox_control.set_config(change_api=True)


async def _changeloop(settings: Settings, *args: str, change_api: str = "auto") -> tuple[int, str, str]:
    assert settings.servicenow_username and settings.servicenow_password
    env = os.environ | {
        "CHANGELOOP_SERVICENOW_URL": settings.servicenow_url,
        "CHANGELOOP_SERVICENOW_USERNAME": settings.servicenow_username,
        "CHANGELOOP_SERVICENOW_PASSWORD": settings.servicenow_password.get_secret_value(),
        "CHANGELOOP_CHANGE_API": change_api,
        "COLUMNS": "200",
    }
    for name in ("CHANGELOOP_SERVICENOW_CLIENT_ID", "CHANGELOOP_SERVICENOW_CLIENT_SECRET"):
        env.pop(name, None)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "changeloop"),
        "change",
        "create",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def _template_version(sn: ServiceNowClient) -> str:
    version = await sn.first("std_change_producer_version", Query().eq("name", TEMPLATE), fields=["sys_id"])
    assert version is not None
    return str(version["sys_id"])


async def _ci(sn: ServiceNowClient, name: str) -> str:
    ci = await sn.first("cmdb_ci", Query().eq("name", name), fields=["sys_id"])
    assert ci is not None
    return str(ci["sys_id"])


async def test_created_through_the_change_api_the_webhook_runs_it_to_closed(
    rules_to_shim: LiveServer, settings: Settings, sn_client: ServiceNowClient
) -> None:
    recorder = Recorder()
    assert settings.servicenow_password is not None
    async with ServiceNowClient.from_settings(settings, transport=recorder) as sn:
        created = await create_standard_change(
            sn, StandardChangeRequest(template=TEMPLATE, ci="payments-api", short_description="create via API"), "on"
        )

    assert created.route == "change_api"
    producer = await sn_client.first("std_change_record_producer", Query().eq("name", TEMPLATE), fields=["sys_id"])
    assert producer is not None
    assert recorder.count("POST", f"/api/sn_chg_rest/change/standard/{producer['sys_id']}") == 1
    assert recorder.count("POST", "/api/now/table/change_request") == 0
    assert recorder.count("PATCH", "") == 0, "created straight into Scheduled: no Request Approval move needed"
    assert (created.state, created.approval) == ("-2", "approved")
    assert created.number.startswith("CHG") and created.link.endswith(created.sys_id)

    record = await sn_client.get("change_request", created.sys_id, exclude_reference_link=True)
    assert record["type"] == "standard"
    assert record["std_change_producer_version"] == await _template_version(sn_client)
    assert record["cmdb_ci"] == await _ci(sn_client, "payments-api")
    assert record["risk"] == "4", "the template's values were applied"

    closed = await wait_for_state(sn_client, created.sys_id, {"3"}, within=30, interval=0.2)
    assert closed["close_code"] == "successful"
    assert closed["correlation_id"] == f"change-{created.number}"


async def test_without_the_change_api_the_cli_falls_back_to_the_table_api_and_the_change_runs(
    rules_to_shim: LiveServer, change_api_off: None, settings: Settings, sn_client: ServiceNowClient
) -> None:
    code, out, err = await _changeloop(
        settings, "--template", TEMPLATE, "--ci", "web-storefront", "--short-description", "create via table", "--json"
    )

    assert code == 0, err
    created = json.loads(out)
    assert created["route"] == "table_api"
    assert "not installed" in created["route_reason"]
    assert (created["state"], created["approval"]) == ("-2", "approved")
    record = await sn_client.get("change_request", created["sys_id"], exclude_reference_link=True)
    assert record["short_description"] == "create via table"
    assert record["std_change_producer_version"] == await _template_version(sn_client)
    assert record["cmdb_ci"] == await _ci(sn_client, "web-storefront")
    assert record["risk"] == "4" and record["implementation_plan"], "the template's values were applied"

    closed = await wait_for_state(sn_client, created["sys_id"], {"3"}, within=30, interval=0.2)
    assert closed["close_code"] == "successful"


async def test_the_cli_prints_number_state_and_link(settings: Settings, sn_client: ServiceNowClient) -> None:
    code, out, err = await _changeloop(
        settings, "--template", TEMPLATE, "--ci", "internal-wiki", "--start", "2031-01-02T03:04:05+01:00"
    )

    assert code == 0, err
    found = await sn_client.first(
        "change_request",
        Query()
        .eq("short_description", "Restart the service of an application on each of its servers: internal-wiki")
        .eq("start_date", "2031-01-02 02:04:05"),
        fields=["number", "sys_id"],
    )
    assert found is not None, out
    for shown in (
        found["number"],
        found["sys_id"],
        "Scheduled",
        "approval approved",
        "change api",
        f"sys_id={found['sys_id']}",
    ):
        assert shown in out, (shown, out)
    # No shim listens here: cancel it, so no later poll runs it.
    await sn_client.update("change_request", found["sys_id"], {"state": "4"})


async def test_bad_input_is_refused_and_creates_nothing(
    settings: Settings, sn_client: ServiceNowClient, sandbox_control: SandboxControl
) -> None:
    before = await sn_client.count("change_request")

    code, _, err = await _changeloop(settings, "--template", "No such template", "--ci", "payments-api")
    assert code == 2
    assert "unknown standard change template 'No such template'" in err and TEMPLATE in err

    code, _, err = await _changeloop(settings, "--template", TEMPLATE, "--ci", "no-such-ci")
    assert code == 2
    assert "unknown configuration item 'no-such-ci'" in err

    code, _, err = await _changeloop(
        settings,
        "--template",
        TEMPLATE,
        "--ci",
        "payments-api",
        "--start",
        "2031-01-02 10:00",
        "--end",
        "2031-01-02 09:00",
    )
    assert code == 2
    assert "end must be after" in err

    await sandbox_control.set_config(change_api=False)
    try:
        code, _, err = await _changeloop(settings, "--template", TEMPLATE, "--ci", "payments-api", change_api="on")
    finally:
        await sandbox_control.set_config(change_api=True)
    assert code == 2
    assert "CHANGELOOP_CHANGE_API=on" in err and "absent" in err

    code, _, err = await _changeloop(
        settings, "--template", "No such template", "--ci", "payments-api", change_api="off"
    )
    assert code == 2 and "unknown standard change template" in err

    assert await sn_client.count("change_request") == before
