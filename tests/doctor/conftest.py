"""An installation as `changeloop doctor` expects it: a worker on the task queue, a shim on a socket, the update set
pointed at the shim (URL and both tokens), the schedules applied. Each test bends one part of it, and everything it
bent is put back afterwards (roles, ACL rules, rate limits, the update set's records, the schedules)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from config.registry import Registry
from config.settings import Settings
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from starter import schedules
from starter.shim.app import create_app
from tests.changes import TEST_REGISTRY
from tests.conftest import ADMIN_USER, WEBHOOK_TOKEN, SandboxControl
from tests.helpers import wait_for
from tests.shim.conftest import LiveServer
from worker import build_worker

INCIDENT_TOKEN = "test-incident-token-5e2b"


@dataclass
class Installation:
    settings: Settings
    shim: LiveServer


async def pollers(client: Client, settings: Settings) -> int:
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace,
            task_queue=TaskQueue(name=settings.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(answer.pollers)


async def put_back(sandbox_control: SandboxControl, shim_url: str) -> None:
    """Roles, ACL rules and rate limits as at start; the update set's records as shipped, pointed at `shim_url`."""
    await sandbox_control._call("POST", "/reset-faults")
    await sandbox_control.set_config(
        shim_url=shim_url, webhook_token=WEBHOOK_TOKEN, incident_token=INCIDENT_TOKEN, change_api=True
    )


@pytest_asyncio.fixture(loop_scope="session")
async def installed(
    settings: Settings, temporal_client: Client, registry: Registry, sandbox_control: SandboxControl
) -> AsyncIterator[Installation]:
    doctor_settings = settings.model_copy(
        update={"task_queue": f"doctor-{uuid.uuid4().hex[:10]}", "runbooks": TEST_REGISTRY}
    )
    # A week between polls: the applied schedule must not start the sandbox's leftover changes during the test.
    quiet = registry.model_copy(update={"poll": registry.poll.model_copy(update={"interval": timedelta(days=7)})})
    before = await sandbox_control.config()
    async with build_worker(temporal_client, doctor_settings, registry):
        async with LiveServer(create_app(doctor_settings, temporal_client, registry)) as shim:
            await put_back(sandbox_control, shim.url)
            await schedules.apply(temporal_client, doctor_settings, quiet)
            await wait_for(lambda: pollers(temporal_client, doctor_settings), timeout=10, message="the worker polls")
            try:
                yield Installation(settings=doctor_settings, shim=shim)
            finally:
                await schedules.delete(temporal_client)
                await sandbox_control._call("POST", "/reset-faults")
                await sandbox_control.set_config(
                    shim_url=before["shim_url"] or "",
                    webhook_token=before["webhook_token"] or "",
                    incident_token=before["incident_token"] or "",
                    change_api=True,
                )


@pytest_asyncio.fixture(loop_scope="session")
async def admin_sn(sandbox_url: str) -> AsyncIterator[ServiceNowClient]:
    async with ServiceNowClient(sandbox_url, BasicAuth(*ADMIN_USER)) as client:
        yield client


async def changeloop_doctor(settings: Settings, *args: str, **env: str) -> tuple[int, str, str]:
    """`changeloop doctor` as an admin runs it, configured through the environment only."""
    assert settings.servicenow_username and settings.servicenow_password
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_")} | {
        "CHANGELOOP_SERVICENOW_URL": settings.servicenow_url,
        "CHANGELOOP_SERVICENOW_USERNAME": settings.servicenow_username,
        "CHANGELOOP_SERVICENOW_PASSWORD": settings.servicenow_password.get_secret_value(),
        "CHANGELOOP_TEMPORAL_ADDRESS": settings.temporal_address,
        "CHANGELOOP_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "CHANGELOOP_TASK_QUEUE": settings.task_queue,
        "CHANGELOOP_RUNBOOKS": str(settings.runbooks or ""),
        "CHANGELOOP_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "COLUMNS": "250",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "changeloop"),
        "doctor",
        *args,
        env=environment,
        cwd=str(Path(__file__).parent),  # no .env from the checkout
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    return process.returncode or 0, out.decode(), err.decode()


async def installed_record(admin_sn: ServiceNowClient, table: str, name: str) -> str:
    """The sys_id of the update set's record `name` in `table`, read as an admin."""
    field = "function_name" if table == "sys_rest_message_fn" else "name"
    record = await admin_sn.first(table, Query().eq(field, name), fields=["sys_id"])
    assert record is not None, f"{table} {name!r} is not installed"
    return str(record["sys_id"])
