"""One failure, one incident: a create retried after its write landed (answer late or lost) or after it timed out
before writing, a failure reported twice by the same run, a second start of the incident workflow, a fresh
incident workflow for a failure whose incident is still open, and look-ups under ACLs that hide rows."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.worker import Worker

from activities.lookups import HIDDEN_RECORD
from config.settings import Settings
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import Changes
from tests.conftest import ADMIN_USER, SandboxControl
from tests.helpers import wait_for
from tests.incident.conftest import Incidents, fail_change
from workflows.incident.models import (
    INCIDENT_WORKFLOW,
    QUERY_INCIDENT,
    IncidentRef,
    IncidentRequest,
    IncidentStatus,
    incident_workflow_id,
)

# How the instance can spoil the create (a POST): each one makes the create's first attempt fail for the caller.
CREATE_FAULTS = {
    # The instance writes the incident, then answers after 4 s: longer than the create's 2 s start_to_close.
    "commit then hang": {"mode": "timeout_after_write", "hang_seconds": 4},
    # The instance writes the incident, then the gateway answers 502: the caller sees a failure.
    "commit then 5xx": {"mode": "error_after_write"},
    # The instance hangs 4 s before writing anything (then 504): the create times out and nothing was written.
    "timeout before write": {"mode": "timeout_before_write", "hang_seconds": 4},
}


@pytest.mark.parametrize("fault", list(CREATE_FAULTS))
async def test_a_create_whose_first_attempt_fails_for_the_caller_opens_exactly_one_incident(
    fault: str,
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
    reset_faults: SandboxControl,
) -> None:
    await reset_faults.set_faults(rules=[{"method": "POST", "table": "incident", "count": 1} | CREATE_FAULTS[fault]])
    handle, change, _ = await fail_change(temporal_client, incident_settings, changes, "reporting-etl")

    incident = await incidents.one_for(handle.id)
    assert incident["number"] in (await changes.get(change["sys_id"]))["close_notes"]
    history = await temporal_client.get_workflow_handle(incident_workflow_id(handle.id)).fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert max(attempts) >= 2, "the create was not retried: the fault did not bite"
    assert (await reset_faults.faults())["rules"] == []


async def test_a_failure_reported_twice_by_the_same_run_opens_one_incident(
    temporal_client: Client, incident_settings: Settings, incident_worker: Worker, incidents: Incidents
) -> None:
    # A user-registered workflow reports its failure itself, then fails: the interceptor reports it again.
    handle = await temporal_client.start_workflow(
        "ReportTwiceWorkflow",
        "fleet-03",
        id=f"report-twice-{uuid.uuid4().hex[:8]}",
        task_queue=incident_settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    incident = await incidents.one_for(handle.id)
    assert (incident["impact"], incident["urgency"]) == ("2", "3")  # fleet: 3 - less critical
    assert f"(incident {incident['number']})" in str(failure.value.cause)  # the interceptor named it
    assert (await handle.query(QUERY_INCIDENT, result_type=IncidentRef)).number == incident["number"]


async def test_second_start_and_fresh_incident_workflow_find_the_open_incident(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    handle, _, _ = await fail_change(temporal_client, incident_settings, changes, "data-01")
    first = await incidents.one_for(handle.id)
    request = IncidentRequest(failed_workflow_id=handle.id, workflow_type="ChangeRequestWorkflow", ci_names=["data-01"])
    incident_id = incident_workflow_id(handle.id)

    with pytest.raises(WorkflowAlreadyStartedError):
        await temporal_client.start_workflow(
            INCIDENT_WORKFLOW, request, id=incident_id, task_queue=incident_settings.task_queue
        )

    # Even a new incident workflow (the old one terminated by an operator) finds the open incident by correlation_id.
    await temporal_client.get_workflow_handle(incident_id).terminate("test: lost incident workflow")
    fresh = await temporal_client.start_workflow(
        INCIDENT_WORKFLOW, request, id=incident_id, task_queue=incident_settings.task_queue
    )
    status = await wait_for(lambda: _opened(fresh), timeout=15, message="fresh incident workflow reached its incident")
    assert status.incident is not None and status.incident.number == first["number"] and not status.incident.created
    assert len(await incidents.for_execution(handle.id)) == 1
    await fresh.terminate("test done")


async def _opened(handle: WorkflowHandle[Any, Any]) -> IncidentStatus | None:
    status = await handle.query("status", result_type=IncidentStatus)
    return status if status.incident is not None else None


# -- look-ups under ACLs: what the integration user cannot read must not be created again ----------------------------
async def _admin_incident(sandbox_url: str, correlation_id: str) -> dict[str, Any]:
    """An open incident for a failure, written by someone else (an admin), as the instance would hold it."""
    async with ServiceNowClient(sandbox_url, BasicAuth(*ADMIN_USER)) as admin:
        body = {"short_description": f"opened by hand for {correlation_id}", "correlation_id": correlation_id}
        return await admin.create("incident", body | {"impact": "3", "urgency": "3"})


async def _all_incidents(sandbox_url: str, correlation_id: str) -> list[dict[str, Any]]:
    async with ServiceNowClient(sandbox_url, BasicAuth(*ADMIN_USER)) as admin:  # admin reads every row
        return await admin.list("incident", Query().eq("correlation_id", correlation_id))


async def test_an_open_incident_the_integration_user_may_not_read_is_never_opened_twice(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    sandbox_url: str,
    hidden_rows: SandboxControl,
) -> None:
    failed_id = f"change-hidden-{uuid.uuid4().hex[:8]}"
    existing = await _admin_incident(sandbox_url, failed_id)
    await hidden_rows.hide_rows("incident", sys_ids=[existing["sys_id"]])  # e.g. moved to a restricted group
    request = IncidentRequest(failed_workflow_id=failed_id, workflow_type="ChangeRequestWorkflow", ci_names=["data-01"])
    handle = await temporal_client.start_workflow(
        INCIDENT_WORKFLOW, request, id=incident_workflow_id(failed_id), task_queue=incident_settings.task_queue
    )
    try:
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), timeout=30)
    finally:
        with contextlib.suppress(Exception):
            await handle.terminate("test done")

    assert len(await _all_incidents(sandbox_url, failed_id)) == 1, "no second incident beside the hidden one"
    cause = failure.value.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError) and cause.type == HIDDEN_RECORD
    assert "may not read" in cause.message


async def test_a_readable_open_incident_behind_a_hidden_one_is_found_not_duplicated(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    sandbox_url: str,
    hidden_rows: SandboxControl,
) -> None:
    failed_id = f"change-behind-{uuid.uuid4().hex[:8]}"
    first = await _admin_incident(sandbox_url, failed_id)
    second = await _admin_incident(sandbox_url, failed_id)
    await hidden_rows.hide_rows("incident", sys_ids=[first["sys_id"]])
    request = IncidentRequest(failed_workflow_id=failed_id, workflow_type="ChangeRequestWorkflow", ci_names=["data-01"])
    handle = await temporal_client.start_workflow(
        INCIDENT_WORKFLOW, request, id=incident_workflow_id(failed_id), task_queue=incident_settings.task_queue
    )
    try:
        status = await wait_for(lambda: _opened(handle), timeout=15, message="incident workflow reached its incident")
    finally:
        await handle.terminate("test done")

    assert status.incident is not None and status.incident.number == second["number"] and not status.incident.created
    assert len(await _all_incidents(sandbox_url, failed_id)) == 2, "nothing opened beside the two"
