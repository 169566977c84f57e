"""A reconciliation canceled mid-run ends CANCELED: an activity's cancellation is the run's cancel request, never a
failed source or a failed Slack copy (either would let the run go on as if nothing happened and complete).

Mid-scan: the source's command never ends by itself (a stand-in for a slow inventory), so the cancel lands while it
runs; the worker kills it when its activity is cancelled. At the summary: the Slack post blocks until cancelled
(a worker of the test's own with that one activity replaced), where the run used to turn the cancellation into
`slack: failed` and complete.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.worker import Worker

from activities.catalog import central_activities
from config.reconcile import ReconcileConfig, config_digest
from config.registry import load_registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.changes import TEST_REGISTRY
from tests.helpers import wait_for
from tests.reconcile.conftest import Scenario
from workflows.calls import POST_SUMMARY, SCAN_SOURCE
from workflows.catalog import WORKFLOW_INTERCEPTORS, WORKFLOWS
from workflows.reconcile.models import ReconcileInput, ReconcileSummary

NEVER_ENDS = [sys.executable, "-c", "import time; time.sleep(3600)"]
POSTING: set[str] = set()  # workflow IDs whose summary post is waiting


@activity.defn(name=POST_SUMMARY.name)
async def post_until_cancelled(summary: Any) -> str:
    """Stands in for the Slack post: it never answers, so the run is still reporting when the cancel comes."""
    POSTING.add(activity.info().workflow_id)
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def posting_queue(temporal_client: Client, reconcile_settings: Settings, sandbox: Any) -> AsyncIterator[str]:
    queue = f"reconcile-cancel-{uuid.uuid4().hex[:6]}"
    isolated = reconcile_settings.model_copy(update={"task_queue": queue})
    async with ServiceNowClient.from_settings(isolated) as sn:
        product = central_activities(temporal_client, isolated, load_registry(TEST_REGISTRY), sn)
        activities = [fn for fn in product if activity._Definition.must_from_callable(fn).name != POST_SUMMARY.name]
        async with Worker(
            temporal_client,
            task_queue=queue,
            workflows=list(WORKFLOWS),
            activities=[*activities, post_until_cancelled],
            interceptors=list(WORKFLOW_INTERCEPTORS),
        ):
            yield queue


async def _start(scenario: Scenario, config: ReconcileConfig, queue: str, **options: Any) -> WorkflowHandle[Any, Any]:
    return await scenario.client.start_workflow(
        "ReconcileWorkflow",
        ReconcileInput(config=scenario.publish(config), digest=config_digest(config), **options),
        id=f"reconcile-test-{scenario.prefix}{uuid.uuid4().hex[:6]}",
        task_queue=queue,
        result_type=ReconcileSummary,
    )


async def _ended(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
    status = (await handle.describe()).status
    return None if status == WorkflowExecutionStatus.RUNNING else status


async def test_a_run_canceled_mid_scan_ends_canceled_and_writes_nothing(scenario: Scenario) -> None:
    gone = await scenario.ci("gone")  # missing from every source: a run that went on would open its incident
    config = scenario.config(
        scenario.source("slow", [], argv=NEVER_ENDS, timeout="5m"),
        scenario.source("quick", [scenario.host("new")]),
    )
    handle = await _start(scenario, config, scenario.settings.task_queue)

    async def scanning() -> bool:
        pending = (await handle.describe()).raw_description.pending_activities
        return any(
            a.activity_type.name == SCAN_SOURCE.name and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for a in pending
        )

    await wait_for(scanning, timeout=30, interval=0.1, message="the slow source's scan started")
    await handle.cancel()

    status = await wait_for(lambda: _ended(handle), timeout=30, interval=0.1, message="the run ended")
    assert status == WorkflowExecutionStatus.CANCELED
    assert await scenario.incidents_for(gone["sys_id"]) == []
    assert [ci["name"] for ci in await scenario.cis()] == [gone["name"]]  # the quick source's host was not created


async def test_a_run_canceled_while_it_posts_its_summary_ends_canceled(scenario: Scenario, posting_queue: str) -> None:
    config = scenario.config(scenario.source("quick", [scenario.host("new")]))
    handle = await _start(scenario, config, posting_queue, dry_run=True)
    await wait_for(lambda: handle.id in POSTING, timeout=30, message="the run is posting its summary")

    await handle.cancel()

    status = await wait_for(lambda: _ended(handle), timeout=30, interval=0.1, message="the run ended")
    assert status == WorkflowExecutionStatus.CANCELED
