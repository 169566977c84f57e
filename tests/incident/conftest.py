"""Incident-test fixtures: a worker on its own task queue whose settings route CIs without a group to a configured
default that differs from every seeded group fallback, post to the sandbox's Slack capture, and give up on a hung
create after 2 s; helpers to read incidents back from the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from activities.catalog import central_activities
from config.registry import load_registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import TEST_REGISTRY, Changes, start
from tests.helpers import wait_for
from tests.incident.report_twice import ReportTwiceWorkflow
from workflows.catalog import WORKFLOW_INTERCEPTORS, WORKFLOWS

DEFAULT_GROUP = "Change Advisory Board"  # no seeded CI names it as support or managed-by group


@pytest.fixture(scope="session")
def incident_settings(settings: Settings, sandbox_url: str) -> Settings:
    return settings.model_copy(
        update={
            "task_queue": "incidents-test",
            "incident_default_group": DEFAULT_GROUP,
            "slack_webhook_url": SecretStr(f"{sandbox_url}/sandbox/slack"),
            "incident_create_timeout": timedelta(seconds=2),
        }
    )


def incident_worker_for(client: Client, settings: Settings, sn: ServiceNowClient) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[*WORKFLOWS, ReportTwiceWorkflow],
        activities=central_activities(client, settings, load_registry(TEST_REGISTRY), sn),
        interceptors=list(WORKFLOW_INTERCEPTORS),
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def incident_worker(temporal_client: Client, incident_settings: Settings, sandbox: Any) -> AsyncIterator[Worker]:
    async with ServiceNowClient.from_settings(incident_settings) as sn:
        async with incident_worker_for(temporal_client, incident_settings, sn) as running:
            yield running


class Incidents:
    """Reads what the incident path wrote, the way a ServiceNow user would see it."""

    def __init__(self, sn: ServiceNowClient, sandbox_url: str) -> None:
        self.sn = sn
        self.sandbox_url = sandbox_url

    async def for_execution(self, workflow_id: str) -> list[dict[str, Any]]:
        return await self.sn.list(
            "incident",
            Query().eq("correlation_id", workflow_id).order_by("sys_created_on"),
            exclude_reference_link=True,
        )

    async def one_for(self, workflow_id: str) -> dict[str, Any]:
        found = await self.for_execution(workflow_id)
        assert len(found) == 1, f"{len(found)} incidents for {workflow_id}"
        return found[0]

    async def sys_id(self, table: str, name: str) -> str:
        found = await self.sn.first(table, Query().eq("name", name), fields=["sys_id"])
        assert found, f"{table} {name!r} is not seeded"
        return str(found["sys_id"])

    async def slack(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as http:
            messages: list[dict[str, Any]] = (await http.get(f"{self.sandbox_url}/sandbox/slack")).json()
        return messages

    async def slack_about(self, number: str) -> dict[str, Any]:
        async def posted() -> dict[str, Any] | None:
            return next((m for m in await self.slack() if number in str(m.get("text", ""))), None)

        return await wait_for(posted, timeout=10, message=f"Slack message naming {number}")


@pytest_asyncio.fixture(loop_scope="session")
async def incidents(sn_client: ServiceNowClient, sandbox_url: str) -> Incidents:
    return Incidents(sn_client, sandbox_url)


@pytest_asyncio.fixture(loop_scope="session")
async def changes(sn_client: ServiceNowClient) -> Changes:
    return Changes(sn_client)


async def fail_change(
    client: Client, settings: Settings, changes: Changes, ci: str
) -> tuple[WorkflowHandle[Any, Any], dict[str, Any], WorkflowFailureError]:
    """A change on `ci` whose runbook fails at 'migrate schema'; returns its handle, ticket and failure."""
    change = await changes.create(category="Failing", ci=ci)
    handle = await start(client, settings, change["number"])
    try:
        await handle.result()
    except WorkflowFailureError as failure:
        return handle, change, failure
    raise AssertionError(f"{change['number']} did not fail")
