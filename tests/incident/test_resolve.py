"""Closing the loop: `resolve` (signal, validated update, shim endpoint, CLI) resolves the incident with close notes
naming the execution that fixed it; the incident workflow waits for it durably; nothing secret reaches ServiceNow."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from config.registry import load_registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from starter.shim.app import create_app
from tests.changes import Changes
from tests.conftest import PRINCIPAL_TOKENS, venv_binary
from tests.helpers import wait_for
from tests.incident.conftest import Incidents, fail_change, incident_worker_for
from workflows.incident.models import (
    INCIDENT_WORKFLOW,
    RESOLVE_NO_RESOLVER,
    RESOLVE_WRONG_INCIDENT,
    IncidentPhase,
    IncidentRequest,
    IncidentStatus,
    ResolveIncident,
    incident_workflow_id,
)


async def _open(handle: WorkflowHandle[Any, Any]) -> IncidentStatus | None:
    status = await handle.query("status", result_type=IncidentStatus)
    return status if status.phase == IncidentPhase.OPEN else None


async def _failed_with_incident(
    client: Client, settings: Settings, changes: Changes, incidents: Incidents, ci: str
) -> tuple[str, dict[str, Any], WorkflowHandle[Any, Any]]:
    handle, _, _ = await fail_change(client, settings, changes, ci)
    incident = await incidents.one_for(handle.id)
    tracker = client.get_workflow_handle(incident_workflow_id(handle.id), result_type=IncidentStatus)
    await wait_for(lambda: _open(tracker), timeout=10, message="incident workflow waiting for resolve")
    return handle.id, incident, tracker


async def test_resolve_signal_resolves_the_incident_with_notes_naming_the_fixing_execution(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    failed_id, incident, tracker = await _failed_with_incident(
        temporal_client, incident_settings, changes, incidents, "web-01"
    )
    await tracker.signal(
        "resolve", ResolveIncident(resolved_by="bob.sre", fixed_by="change-CHG0099999", close_notes="lock released")
    )
    status = await tracker.result()

    assert status.phase == IncidentPhase.RESOLVED and status.resolution and status.resolution.resolved_by == "bob.sre"
    record = await incidents.sn.get("incident", incident["sys_id"])
    assert record["state"] == "6" and record["close_code"] == "Solved (Permanently)"
    for expected in ("bob.sre", "change-CHG0099999", incident_workflow_id(failed_id), failed_id, "lock released"):
        assert expected in record["close_notes"], expected


async def test_resolve_update_refuses_an_empty_resolver_and_the_wrong_incident_then_resolves(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    _, incident, tracker = await _failed_with_incident(
        temporal_client, incident_settings, changes, incidents, "web-storefront"
    )
    with pytest.raises(WorkflowUpdateFailedError) as empty:
        await tracker.execute_update("resolve", ResolveIncident(resolved_by=" "), result_type=IncidentStatus)
    assert getattr(empty.value.cause, "type", None) == RESOLVE_NO_RESOLVER
    with pytest.raises(WorkflowUpdateFailedError) as wrong:
        await tracker.execute_update(
            "resolve", ResolveIncident(resolved_by="alice.ops", number="INC0000001"), result_type=IncidentStatus
        )
    assert getattr(wrong.value.cause, "type", None) == RESOLVE_WRONG_INCIDENT

    status = await tracker.execute_update(
        "resolve", ResolveIncident(resolved_by="alice.ops", number=incident["number"]), result_type=IncidentStatus
    )
    assert status.phase == IncidentPhase.RESOLVED
    assert (await incidents.sn.get("incident", incident["sys_id"]))["state"] == "6"


async def test_shim_resolves_an_incident_for_the_servicenow_business_rule(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    _, incident, tracker = await _failed_with_incident(temporal_client, incident_settings, changes, incidents, "web-02")
    app = create_app(incident_settings, temporal_client, load_registry())
    token = PRINCIPAL_TOKENS["servicenow-incidents"]  # the incident rule's principal: incident:resolve only
    path = f"/api/incidents/{incident['number']}/resolve"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shim", timeout=30) as api:
        refused = await api.post(path, json={"resolved_by": "carol.cab"})
        assert refused.status_code == 401 and refused.json()["status"] == "failure"
        assert incident_settings.webhook_token is not None  # the change rule's token may not resolve incidents
        change_rule = {"Authorization": f"Bearer {incident_settings.webhook_token.get_secret_value()}"}
        assert (await api.post(path, json={"resolved_by": "carol.cab"}, headers=change_rule)).status_code == 403
        auth = {"Authorization": f"Bearer {token}"}
        invalid = await api.post(path, json={"resolved_by": ""}, headers=auth)
        assert invalid.status_code == 422 and "resolved_by" in invalid.json()["error"]["detail"]
        unknown = await api.post("/api/incidents/INC9999999/resolve", json={"resolved_by": "carol.cab"}, headers=auth)
        assert unknown.status_code == 404

        # The rule sends no correlation_id here: the shim finds the workflow through the incident's record.
        answer = await api.post(path, json={"resolved_by": "carol.cab", "fixed_by": "change-CHG0012345"}, headers=auth)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "resolved" and answer.json()["executionId"] == tracker.id
    record = await incidents.sn.get("incident", incident["sys_id"])
    assert record["state"] == "6" and "change-CHG0012345" in record["close_notes"]
    # Who resolved it is the caller's report, attributed to the caller: a typed name alone is never the record.
    assert "Resolved by carol.cab (reported by servicenow-incidents) through changeloop" in record["close_notes"]
    status = await tracker.query("status", result_type=IncidentStatus)
    assert status.resolution and status.resolution.resolved_by == "carol.cab (reported by servicenow-incidents)"


async def test_cli_resolves_an_incident_by_number(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    _, incident, tracker = await _failed_with_incident(temporal_client, incident_settings, changes, incidents, "web-03")
    s = incident_settings
    env = os.environ | {
        "CHANGELOOP_TEMPORAL_ADDRESS": s.temporal_address,
        "CHANGELOOP_TEMPORAL_NAMESPACE": s.temporal_namespace,
        "CHANGELOOP_SERVICENOW_URL": s.servicenow_url,
        "CHANGELOOP_SERVICENOW_USERNAME": s.servicenow_username or "",
        "CHANGELOOP_SERVICENOW_PASSWORD": s.servicenow_password.get_secret_value() if s.servicenow_password else "",
    }
    # A subprocess on the event loop: the worker in this loop must keep running to answer the update.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starter.cli", "incident", "resolve", incident["number"],
        "--by", "dave.data", "--fixed-by", "change-CHG0054321",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 45)
    assert process.returncode == 0, output.decode()
    assert "resolved" in output.decode()
    assert (await tracker.result()).phase == IncidentPhase.RESOLVED
    record = await incidents.sn.get("incident", incident["sys_id"])
    assert "dave.data" in record["close_notes"] and "change-CHG0054321" in record["close_notes"]


async def test_description_carries_no_secret(
    temporal_client: Client, incident_settings: Settings, incident_worker: Worker, incidents: Incidents
) -> None:
    password = incident_settings.servicenow_password.get_secret_value() if incident_settings.servicenow_password else ""
    token = incident_settings.webhook_token.get_secret_value() if incident_settings.webhook_token else ""
    leaked = [
        f"connecting as changeloop.integration with {password}",
        f"curl -H 'Authorization: Bearer {token}' https://api.example.com",
        "db_password=hunter2-very-secret and api_key: AKIAEXAMPLEKEY123",
        "retrying https://deploy:s3cr3t-pass@git.example.com/repo.git",
    ]
    failed_id = f"secret-test-{uuid.uuid4().hex[:8]}"
    handle = await temporal_client.start_workflow(
        INCIDENT_WORKFLOW,
        IncidentRequest(
            failed_workflow_id=failed_id,
            workflow_type="FlowRunWorkflow",
            step="deploy",
            error_message=leaked[0],
            log_lines=leaked,
            ci_names=["payments-api"],
        ),
        id=incident_workflow_id(failed_id),
        task_queue=incident_settings.task_queue,
    )
    await wait_for(lambda: _open(handle), timeout=10, message="incident opened")
    incident = await incidents.one_for(failed_id)
    text = incident["description"] + incident["short_description"]
    for secret in (password, token, "hunter2-very-secret", "AKIAEXAMPLEKEY123", "s3cr3t-pass"):
        assert secret not in text, secret
    assert "***" in text and "connecting as changeloop.integration" in text  # the rest of the line survives
    for secret in incident_settings.secret_values():
        assert secret not in text
    await handle.terminate("test done")


async def test_incident_workflow_waits_days_for_resolve(
    time_skipping_env: WorkflowEnvironment, incident_settings: Settings, sandbox: Any, incidents: Incidents
) -> None:
    settings = incident_settings.model_copy(update={"task_queue": "incidents-time-skipping"})
    client = time_skipping_env.client
    failed_id = f"long-wait-{uuid.uuid4().hex[:8]}"
    async with ServiceNowClient.from_settings(settings) as sn, incident_worker_for(client, settings, sn):
        handle = await client.start_workflow(
            INCIDENT_WORKFLOW,
            IncidentRequest(failed_workflow_id=failed_id, workflow_type="PatchWaveWorkflow", ci_names=["fleet"]),
            id=incident_workflow_id(failed_id),
            task_queue=settings.task_queue,
            result_type=IncidentStatus,
        )
        opened = await wait_for(lambda: _open(handle), timeout=15, message="incident opened")
        assert opened.resolve_by and opened.opened_at
        assert opened.resolve_by - opened.opened_at == timedelta(days=30)

        await time_skipping_env.sleep(timedelta(days=6))
        still = await handle.query("status", result_type=IncidentStatus)
        assert still.phase == IncidentPhase.OPEN

        await handle.signal("resolve", ResolveIncident(resolved_by="bob.sre", fixed_by="wave-CHG0077777"))
        status = await handle.result()
    assert status.phase == IncidentPhase.RESOLVED
    assert status.resolved_at and status.resolved_at - opened.opened_at >= timedelta(days=6)
    record = await incidents.sn.get("incident", status.incident.sys_id if status.incident else "")
    assert record["state"] == "6" and "wave-CHG0077777" in record["close_notes"]


async def test_temporal_cli_update_resolves_the_incident(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    _, incident, tracker = await _failed_with_incident(
        temporal_client, incident_settings, changes, incidents, "data-02"
    )
    s = incident_settings
    resolution = json.dumps({"resolved_by": "carol.cab", "fixed_by": "change-CHG0011111"})
    argv = [
        venv_binary("temporal"), "workflow", "update", "execute", "--workflow-id", tracker.id, "--name", "resolve",
        "--input", resolution, "--address", s.temporal_address, "--namespace", s.temporal_namespace,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), 45)
    assert process.returncode == 0, output.decode()
    assert "resolved" in output.decode()
    record = await incidents.sn.get("incident", incident["sys_id"])
    assert record["state"] == "6" and "change-CHG0011111" in record["close_notes"]
