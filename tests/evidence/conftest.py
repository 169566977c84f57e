"""Evidence fixtures: a worker on its own task queue with the test workflows beside the product's, a small
attachment cap and step output cap, and a ServiceNow client that gives up on a hung answer after 2 s (so a write whose answer is lost
is retried within the test); helpers that run one write and read the instance back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.catalog import central_activities
from config.registry import load_registry
from config.settings import Settings
from ops import scrub
from servicenow import attachments
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import TEST_REGISTRY
from tests.evidence.evidence_workflows import EVIDENCE_TEST_WORKFLOWS
from workflows.catalog import WORKFLOW_INTERCEPTORS, WORKFLOWS

ATTACHMENT_CAP = 4096
STEP_OUTPUT_CAP = 2048  # what a step returns of its output (CHANGELOOP_STEP_OUTPUT_MAX_BYTES)


@pytest.fixture(scope="session")
def evidence_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "task_queue": "evidence-test",
            "attachment_max_bytes": ATTACHMENT_CAP,
            "step_output_max_bytes": STEP_OUTPUT_CAP,
        }
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def evidence_worker(temporal_client: Client, evidence_settings: Settings, sandbox: Any) -> AsyncIterator[Worker]:
    scrub.install(evidence_settings)  # what worker.py does at start: the one scrubber knows the worker's secrets
    async with ServiceNowClient.from_settings(evidence_settings, timeout=3.0) as sn:
        activities = central_activities(temporal_client, evidence_settings, load_registry(TEST_REGISTRY), sn)
        async with Worker(
            temporal_client,
            task_queue=evidence_settings.task_queue,
            workflows=[*WORKFLOWS, *EVIDENCE_TEST_WORKFLOWS],
            activities=activities,
            interceptors=list(WORKFLOW_INTERCEPTORS),
        ) as running:
            yield running


class Evidence:
    """Runs one evidence write as a workflow and reads what the instance holds."""

    def __init__(self, client: Client, settings: Settings, sn: ServiceNowClient) -> None:
        self.client, self.settings, self.sn = client, settings, sn

    async def run(self, workflow: str, request: Any, result_type: type) -> tuple[Any, int]:
        """The write's result and how many attempts its activity made."""
        handle: WorkflowHandle[Any, Any] = await self.client.start_workflow(
            workflow,
            request,
            id=f"evidence-test-{uuid.uuid4().hex[:8]}",
            task_queue=self.settings.task_queue,
            result_type=result_type,
        )
        result = await handle.result()
        history = await handle.fetch_history()
        attempts = max(
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        )
        return result, attempts

    async def files(self, table: str, sys_id: str, file_name: str = "") -> list[attachments.Attachment]:
        return await attachments.list_attachments(self.sn, table, sys_id, file_name)

    async def tasks(self, change_sys_id: str) -> list[dict[str, Any]]:
        query = Query().eq("change_request", change_sys_id).order_by("number")
        return await self.sn.list("change_task", query, exclude_reference_link=True)


@pytest_asyncio.fixture(loop_scope="session")
async def evidence(
    temporal_client: Client, evidence_settings: Settings, evidence_worker: Worker, sn_client: ServiceNowClient
) -> Evidence:
    return Evidence(temporal_client, evidence_settings, sn_client)
