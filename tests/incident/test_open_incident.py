"""A failed production workflow opens one incident, ranked by CI criticality and routed to the CI's team.

Each test fails its own change (its own workflow ID, so its own correlation_id) and reads the incident back from
the sandbox over HTTP.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from config.settings import Settings
from tests.changes import Changes
from tests.helpers import wait_for
from tests.incident.conftest import DEFAULT_GROUP, Incidents, fail_change
from workflows.change.models import ChangeStatus
from workflows.incident.models import IncidentPhase, IncidentStatus, incident_workflow_id


async def test_tier1_application_runbook_failure_opens_one_incident_1_1_for_its_support_group(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    handle, change, failure = await fail_change(temporal_client, incident_settings, changes, "payments-api")

    incident = await incidents.one_for(handle.id)
    assert (incident["impact"], incident["urgency"]) == ("1", "1")
    assert incident["priority"] == "1"  # computed by the instance, never written by us
    assert incident["assignment_group"] == await incidents.sys_id("sys_user_group", "Payments SRE")
    assert incident["cmdb_ci"] == await incidents.sys_id("cmdb_ci", "payments-api")
    assert incident["correlation_display"] == "changeloop"
    assert "migrate schema" in incident["short_description"] and change["number"] in incident["short_description"]
    description = incident["description"]
    assert incident_settings.execution_url(handle.id) in description  # the link into the Temporal UI
    for expected in (
        "Failing step: migrate schema",
        "Failing activity: run_step",
        "StepFailed",
        "relation orders is locked",
        "Attempts: 2",
        "payments-api",
    ):
        assert expected in description, expected

    # The number travels back: the change's close notes, its result and status, the failure, a work note.
    number = incident["number"]
    ticket = await changes.get(change["sys_id"])
    assert ticket["close_code"] == "unsuccessful" and number in ticket["close_notes"]
    assert number in str(failure.cause)
    status = await handle.query("status", result_type=ChangeStatus)
    assert status.result is not None and status.result.incident == number
    await wait_for(
        lambda: _any_note_names(changes, change["sys_id"], number), timeout=10, message="work note naming the incident"
    )


async def _any_note_names(changes: Changes, sys_id: str, number: str) -> bool:
    return any(number in note for note in await changes.work_notes(sys_id))


async def test_a_server_failure_is_ranked_and_routed_by_the_application_it_runs(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    handle, _, _ = await fail_change(temporal_client, incident_settings, changes, "pay-web-02")

    incident = await incidents.one_for(handle.id)
    assert (incident["impact"], incident["urgency"]) == ("1", "1")
    assert incident["assignment_group"] == await incidents.sys_id("sys_user_group", "Payments SRE")
    assert incident["cmdb_ci"] == await incidents.sys_id("cmdb_ci", "pay-web-02")  # the CI the work acted on
    assert "payments-api (cmdb_ci_appl; 1 - most critical; application of pay-web-02)" in incident["description"]


async def test_not_critical_application_gets_impact_3_urgency_3_and_its_managed_by_group(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    handle, _, _ = await fail_change(temporal_client, incident_settings, changes, "internal-wiki")

    incident = await incidents.one_for(handle.id)
    assert (incident["impact"], incident["urgency"]) == ("3", "3")
    assert incident["assignment_group"] == await incidents.sys_id("sys_user_group", "Service Desk")


async def test_ci_without_any_group_goes_to_the_configured_default_group(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    handle, _, _ = await fail_change(temporal_client, incident_settings, changes, "legacy-batch")

    incident = await incidents.one_for(handle.id)
    assert incident["assignment_group"] == await incidents.sys_id("sys_user_group", DEFAULT_GROUP)
    assert (incident["impact"], incident["urgency"]) == ("3", "3")
    assert f"Routing: {DEFAULT_GROUP} (default)" in incident["description"]


async def test_slack_gets_the_incident_number_and_links(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    handle, _, _ = await fail_change(temporal_client, incident_settings, changes, "web-storefront")
    incident = await incidents.one_for(handle.id)

    message: dict[str, Any] = await incidents.slack_about(incident["number"])
    assert "/nav_to.do?uri=incident.do?sys_id=" + incident["sys_id"] in message["text"]
    assert incident_settings.execution_url(handle.id) in message["text"]
    assert "Web Platform" in message["text"]
    tracker = temporal_client.get_workflow_handle(incident_workflow_id(handle.id))

    async def slack_recorded() -> IncidentStatus | None:
        status = await tracker.query("status", result_type=IncidentStatus)
        return status if status.slack else None

    # Slack holds the message before the workflow records the post's answer (the activity's result comes after it).
    status = await wait_for(slack_recorded, timeout=20, message="the incident workflow recorded the Slack post")
    assert status.phase == IncidentPhase.OPEN and status.slack == "sent"


async def test_non_production_runbook_opens_no_incident(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    change = await changes.create(category="FailingLab", ci="payments-api")
    from tests.changes import start

    handle = await start(temporal_client, incident_settings, change["number"])
    failure = None
    try:
        await handle.result()
    except Exception as error:  # the change fails; only the incident is in question
        failure = error
    assert failure is not None
    assert await incidents.for_execution(handle.id) == []
    ticket = await changes.get(change["sys_id"])
    assert "Incident" not in ticket["close_notes"]
