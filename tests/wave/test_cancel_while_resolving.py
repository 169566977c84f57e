"""A cancel request that arrives while a run resolves its registry entry ends the run CANCELED, with no incident.

Reproduced in CI: a wave canceled just after its continue-as-new, while the new run was resolving its runbook, ended
FAILED with `CancelledError: Cancelled` and opened an incident, because the look-up turned the activity's cancellation
into an ApplicationError. Here the look-up blocks until it is cancelled, so the cancel lands there every time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.worker import Worker

from activities.catalog import central_activities
from config.registry import Registry
from config.runbooks import runbook_digest
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import Changes
from tests.helpers import wait_for
from workflows.calls import RESOLVE_RUN
from workflows.catalog import WORKFLOW_INTERCEPTORS, WORKFLOWS
from workflows.runbook.models import RunbookRun
from workflows.wave.models import WaveRun

RESOLVING: set[str] = set()  # workflow IDs whose look-up is waiting


@activity.defn(name=RESOLVE_RUN.name)
async def resolve_until_cancelled(ref: Any) -> None:
    """Stands in for the registry look-up: it never answers, so the run is still resolving when the cancel comes."""
    RESOLVING.add(activity.info().workflow_id)
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def resolving_queue(
    temporal_client: Client, settings: Settings, wave_registry: Registry, sandbox: Any
) -> AsyncIterator[str]:
    queue = f"cancel-resolving-{uuid.uuid4().hex[:6]}"
    isolated = settings.model_copy(update={"task_queue": queue})
    async with ServiceNowClient.from_settings(isolated) as sn:
        product = central_activities(temporal_client, isolated, wave_registry, sn)
        activities = [fn for fn in product if activity._Definition.must_from_callable(fn).name != RESOLVE_RUN.name]
        async with Worker(
            temporal_client,
            task_queue=queue,
            workflows=list(WORKFLOWS),
            activities=[*activities, resolve_until_cancelled],
            interceptors=list(WORKFLOW_INTERCEPTORS),
        ):
            yield queue


async def _closed(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
    status = (await handle.describe()).status
    return None if status == WorkflowExecutionStatus.RUNNING else status


@pytest.mark.parametrize("workflow_type", ["PatchWaveWorkflow", "RunbookWorkflow"])
async def test_a_run_canceled_while_it_resolves_its_runbook_ends_canceled_and_opens_no_incident(
    temporal_client: Client,
    resolving_queue: str,
    wave_registry: Registry,
    changes: Changes,
    sn_client: ServiceNowClient,
    workflow_type: str,
) -> None:
    change = await changes.create(template="Patch Linux servers", ci="payments-api")
    name = "patch_wave_paged" if workflow_type == "PatchWaveWorkflow" else "restart_app_service"
    digest = runbook_digest(wave_registry.runbooks[name])
    run: WaveRun | RunbookRun
    if workflow_type == "PatchWaveWorkflow":
        run = WaveRun(
            runbook=name,
            digest=digest,
            variables={"change": change["number"]},
            change_number=change["number"],
            change_sys_id=change["sys_id"],
        )
    else:
        run = RunbookRun(runbook=name, digest=digest, variables={"change": change["number"], "host": "pay-web-01"})
    workflow_id = f"resolving-{workflow_type}-{uuid.uuid4().hex[:8]}"
    handle = await temporal_client.start_workflow(workflow_type, run, id=workflow_id, task_queue=resolving_queue)
    await wait_for(lambda: workflow_id in RESOLVING, timeout=30, message="the run is resolving its runbook")

    await handle.cancel()
    status = await wait_for(lambda: _closed(handle), timeout=30, message="the run ended")

    assert status == WorkflowExecutionStatus.CANCELED
    opened = await sn_client.list("incident", Query().eq("correlation_id", workflow_id), fields=["number"])
    assert opened == [], "a cancellation is no failure: no incident"
