"""One failure, one incident: a create retried after its write landed, a failure reported twice by the same run, a
second start of the incident workflow, and a fresh incident workflow for a failure whose incident is still open."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.worker import Worker

from config.settings import Settings
from tests.changes import Changes
from tests.conftest import SandboxControl
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


async def test_create_timing_out_after_the_write_still_opens_exactly_one_incident(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
    reset_faults: SandboxControl,
) -> None:
    # The instance writes the incident, then answers after 4 s: longer than the create's 2 s start_to_close.
    await reset_faults.set_faults(
        rules=[{"method": "POST", "table": "incident", "count": 1, "mode": "timeout_after_write", "hang_seconds": 4}]
    )
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
