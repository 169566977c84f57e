"""The audit export of a change (starter/audit.py) on the real stack: a gated change approved through `decide`, with
the change tasks and the attachment its runbook left on its ticket; a failed change with its incident. Through the module, the shim's
`GET /api/executions/{id}/audit` and `changeloop audit`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import Client, WorkflowFailureError

from config.registry import load_registry
from config.settings import Settings
from starter.audit import AuditReport, build_audit, to_markdown
from starter.shim.app import create_app
from tests.changes import Changes, signed_decision, start
from tests.conftest import OPERATOR_TOKEN
from tests.evidence.conftest import Evidence
from tests.helpers import listed_for_change, wait_for
from workflows.change.models import UPDATE_DECIDE, ChangeResult, Decision
from workflows.status import QUERY_STATUS


async def _gated_change_approved(
    client: Client, settings: Settings, changes: Changes, evidence: Evidence
) -> dict[str, Any]:
    # maintenance_tasks (tests/runbooks.yaml): gated, `tasks: per_step`; its run leaves its own evidence.
    change = await changes.create(category="MaintenanceTasks", ci="web-storefront")
    handle = await start(client, settings, change["number"])

    async def gate_waiting() -> bool:
        status = await handle.query(QUERY_STATUS, rpc_timeout=timedelta(seconds=5))
        return bool(status["gate"]["status"] == "waiting")

    await wait_for(gate_waiting, timeout=30, interval=0.1, message="approval gate waiting")
    # As the shim sends it for alice's principal: signed (a plain update proves nothing, README "Security model").
    decision = signed_decision(settings, handle.id, "alice.ops", Decision.APPROVED, "window agreed with CAB")
    await handle.execute_update(UPDATE_DECIDE, decision)
    result = await handle.result()
    assert isinstance(result, ChangeResult) and result.outcome == "successful"
    return change


async def test_the_audit_of_a_gated_change_names_the_approver_and_the_proof(
    temporal_client: Client, evidence_settings: Settings, evidence: Evidence, changes: Changes
) -> None:
    change = await _gated_change_approved(temporal_client, evidence_settings, changes, evidence)
    number = change["number"]
    # The audit reads executions and their status from visibility, which lags the server.
    await listed_for_change(temporal_client, number, set(), ended={f"change-{number}", f"runbook-{number}"})

    report = await build_audit(evidence_settings, temporal_client, number)

    approval = next(a for a in report.approvals if a.execution == f"change-{number}")
    assert approval.execution == f"change-{number}" and approval.status == "approved"
    assert approval.approver == "alice.ops" and approval.comments == "window agreed with CAB"
    assert approval.decided_at and "decide" in approval.proof and "identity" in approval.proof
    [decided] = approval.messages
    assert decided.kind == "update" and decided.fields["approver"] == "alice.ops" and decided.identity

    ids = {e.workflow_id: e for e in report.executions}
    assert {f"change-{number}", f"runbook-{number}"} <= set(ids)
    change_run, runbook_run = ids[f"change-{number}"], ids[f"runbook-{number}"]
    assert change_run.status == runbook_run.status == "COMPLETED" and runbook_run.parent == f"change-{number}"
    steps = [a for a in runbook_run.activities if a.activity == "run_step"]
    assert [(s.subject, s.outcome, s.attempts) for s in steps] == [
        ("rotate logs", "completed", 1),
        ("vacuum", "completed", 1),
    ]
    assert all(s.scheduled_at <= s.started_at <= s.ended_at for s in steps)
    assert [s["name"] for s in runbook_run.steps] == ["rotate logs", "vacuum"]
    assert {"load_change", "begin_implementation", "close_change"} <= {a.activity for a in change_run.activities}

    assert report.ticket.fields["state"].startswith("Closed") and report.ticket.correlation_id == f"change-{number}"
    assert any("alice.ops" in entry.text for entry in report.ticket.journal), "the gate's note is in the journal"
    # The runbook's own evidence: a closed task per step, the steps' output attached to the change.
    assert [(t.execution, t.step, t.close_code) for t in report.tasks] == [
        (f"runbook-{number}", "rotate logs", "successful"),
        (f"runbook-{number}", "vacuum", "successful"),
    ]
    log = f"runbook-{number}.log"
    assert [(a.file_name, a.on) for a in report.attachments] == [(log, number)]
    refs = {r.servicenow: r for r in report.cross_references}
    assert refs[f"{number}.correlation_id"].agrees
    assert all(refs[f"{t.number}.correlation_id"].agrees for t in report.tasks)

    page = to_markdown(report)
    assert f"# Audit of {number}" in page and "alice.ops" in page and approval.proof in page
    assert "rotate logs" in page and log in page and all(t.number in page for t in report.tasks)
    assert AuditReport.model_validate_json(report.model_dump_json()) == report


async def test_the_audit_of_a_failed_change_lists_its_incident(
    temporal_client: Client, evidence_settings: Settings, evidence: Evidence, changes: Changes
) -> None:
    change = await changes.create(category="Failing", ci="web-03")
    handle = await start(temporal_client, evidence_settings, change["number"])
    try:
        await handle.result()
    except WorkflowFailureError:
        pass
    number = change["number"]
    # The incident workflow waits for its resolve: listed, not closed.
    await listed_for_change(temporal_client, number, {f"incident-for-change-{number}"}, ended={f"change-{number}"})

    report = await build_audit(evidence_settings, temporal_client, change["number"])

    [incident] = report.incidents
    assert incident.correlation_id == f"change-{change['number']}" == incident.execution
    runbook = next(e for e in report.executions if e.workflow_id == f"runbook-{change['number']}")
    failed = [a for a in runbook.activities if a.outcome == "failed"]
    assert [a.subject for a in failed] == ["migrate schema"] and "relation orders is locked" in failed[0].error
    assert failed[0].attempts == 2, "retries: 1 in the registry"
    assert any(e.workflow_id == f"incident-for-change-{change['number']}" for e in report.executions)
    assert not report.approvals
    assert next(r for r in report.cross_references if r.servicenow == f"{incident.number}.correlation_id").agrees


async def test_the_shim_and_the_cli_export_the_same_audit(
    temporal_client: Client, evidence_settings: Settings, evidence: Evidence, changes: Changes
) -> None:
    change = await _gated_change_approved(temporal_client, evidence_settings, changes, evidence)
    number = change["number"]
    app = create_app(evidence_settings, temporal_client, load_registry())
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}  # audit exports need execution:read
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shim", headers=headers
    ) as api:
        by_change = await api.get(f"/api/executions/change-{number}/audit")
        by_runbook = await api.get(f"/api/executions/runbook-{number}/audit", params={"format": "md"})
        unknown = await api.get("/api/executions/change-CHG9999999/audit")
        anonymous = await api.get(f"/api/executions/change-{number}/audit", headers={"Authorization": ""})

    assert by_change.status_code == 200, by_change.text
    answer = by_change.json()
    assert answer["change"] == number and answer["approvals"][0]["approver"] == "alice.ops"
    assert by_runbook.status_code == 200 and by_runbook.headers["content-type"].startswith("text/markdown")
    assert f"# Audit of {number}" in by_runbook.text and "alice.ops" in by_runbook.text
    assert unknown.status_code == 404 and unknown.json()["status"] == "failure"
    assert anonymous.status_code == 401

    s = evidence_settings
    env = os.environ | {
        "CHANGELOOP_TEMPORAL_ADDRESS": s.temporal_address,
        "CHANGELOOP_TEMPORAL_NAMESPACE": s.temporal_namespace,
        "CHANGELOOP_SERVICENOW_URL": s.servicenow_url,
        "CHANGELOOP_SERVICENOW_USERNAME": s.servicenow_username or "",
        "CHANGELOOP_SERVICENOW_PASSWORD": s.servicenow_password.get_secret_value() if s.servicenow_password else "",
    }
    outputs = {}
    for output in ("json", "md", "rich"):
        # A subprocess on the event loop: the worker in this loop must keep running to answer the status queries.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "starter.cli", "audit", number, "--format", output,
            env=env | {"COLUMNS": "160"}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr.decode()
        outputs[output] = stdout.decode()
    exported = json.loads(outputs["json"])
    assert exported["approvals"][0]["approver"] == "alice.ops"
    assert exported["approvals"][0]["proof"] == answer["approvals"][0]["proof"]
    assert outputs["md"].startswith(f"# Audit of {number}")
    assert f"Audit of {number}" in outputs["rich"] and "alice.ops" in outputs["rich"] and "#" not in outputs["rich"][:5]
