"""Record the committed histories that the replay tests replay: `python -m tests.replay.record_histories`.

Run it when a workflow changes on purpose (behind `workflow.patched`): the old histories stay, new ones are added
with a new suffix (SUFFIX below; `CHANGELOOP_HISTORY_SUFFIX` overrides it), and every one of them must keep
replaying.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import yaml
from pydantic import SecretStr
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.reconcile import ReconcileConfig, config_digest
from config.registry import load_registry
from config.runbooks import runbook_digest
from config.settings import Settings
from sandbox.server import SandboxConfig, SandboxServer
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import TEST_REGISTRY, Changes, signed_decision, start
from tests.conftest import DECISION_KEY
from worker import build_site_worker, build_worker
from workflows import search_attributes
from workflows.change.models import ChangeStatus, GateStatus
from workflows.flow.models import FlowRun
from workflows.gate.models import Decision
from workflows.incident.models import ResolveIncident, incident_workflow_id
from workflows.poll.models import PollInput
from workflows.reconcile.models import ReconcileInput
from workflows.runbook.models import RunbookRun, RunbookStatus
from workflows.wave.models import HostStatus, WaveRun, patch_host_workflow_id, wave_workflow_id

HISTORIES = Path(__file__).with_name("histories")
PENDING_ACTIVITY_STATE_STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
# Runbooks and reconciliation configs by reference (name + digest): the histories of this shape carry this suffix.
SUFFIX = os.environ.get("CHANGELOOP_HISTORY_SUFFIX", "_by_reference")


async def _save(handle: WorkflowHandle, name: str) -> None:  # type: ignore[type-arg]
    history = json.loads((await handle.fetch_history()).to_json())
    # The workflow ID is kept beside the events: replay needs it (child IDs are derived from it).
    (HISTORIES / f"{name}{SUFFIX}.json").write_text(json.dumps({"workflowId": handle.id} | history, indent=1))
    print("recorded", name)


async def _gate_waiting(handle: WorkflowHandle) -> None:  # type: ignore[type-arg]
    for _ in range(200):
        status = await handle.query("status", result_type=ChangeStatus)
        if status.gate.status == GateStatus.WAITING:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("gate never opened")


async def record(client: Client, settings: Settings, changes: Changes) -> None:
    ok = await changes.create(template="Restart application service")
    handle = await start(client, settings, ok["number"])
    await handle.result()
    await _save(handle, "change_successful")
    await _save(client.get_workflow_handle(f"runbook-{ok['number']}"), "runbook_successful")

    failing = await changes.create(category="Failing")
    handle = await start(client, settings, failing["number"])
    try:
        await handle.result()
    except Exception:
        pass
    await _save(handle, "change_runbook_failed")

    flow = await client.start_workflow(
        "FlowRunWorkflow",
        FlowRun(flow="echo_flow", inputs={"message": "replay"}),
        id=f"flow-echo_flow-{uuid.uuid4()}",
        task_queue=settings.task_queue,
    )
    await flow.result()
    await _save(flow, "flow_run")

    poll = await client.start_workflow(
        "ChangePollWorkflow", PollInput(), id="poll-record", task_queue=settings.task_queue
    )
    await poll.result()
    await _save(poll, "change_poll")


async def record_gate(client: Client, settings: Settings, changes: Changes, sandbox_url: str) -> None:
    """The gate held by the runbook's own workflow (GATE_PATCH): proven by the shim's signature and by ServiceNow's
    approval record, a flow run rejected, a wave approved by a group member; and the changes ServiceNow does not
    let run (not ready) or does not know (not found). `change_gated_approved` keeps the gate as it was before."""
    gated = await changes.create(template="Run maintenance steps")
    handle = await start(client, settings, gated["number"])
    await _gate_waiting(handle)
    await handle.execute_update("decide", signed_decision(settings, handle.id, "alice.ops", Decision.APPROVED, "go"))
    await handle.result()
    await _save(handle, "change_gated_proven")
    await _save(client.get_workflow_handle(f"runbook-{gated['number']}"), "runbook_gated_proven")

    by_record = await changes.create(template="Run maintenance steps")
    handle = await start(client, settings, by_record["number"])
    await _gate_waiting(handle)
    async with ServiceNowClient(sandbox_url, BasicAuth("admin", "admin")) as admin:
        alice = await admin.first("sys_user", Query().eq("user_name", "alice.ops"), fields=["sys_id"])
        assert alice is not None
        body = {"sysapproval": by_record["sys_id"], "approver": alice["sys_id"]}
        record = await admin.create("sysapproval_approver", body)
    async with ServiceNowClient(sandbox_url, BasicAuth("alice.ops", "alice.ops-pw")) as person:
        await person.update("sysapproval_approver", record["sys_id"], {"state": "approved"})
    await handle.signal("check_approvals")
    await handle.result()
    await _save(handle, "change_gated_servicenow_approval")

    flow = await client.start_workflow(
        "FlowRunWorkflow", FlowRun(flow="maintenance_steps"), id=f"flow-maintenance_steps-{uuid.uuid4()}",
        task_queue=settings.task_queue,
    )  # fmt: skip
    for _ in range(200):
        if (await flow.query("status", result_type=RunbookStatus)).gate is not None:
            break
        await asyncio.sleep(0.05)
    await flow.execute_update("decide", signed_decision(settings, flow.id, "carol.cab", Decision.REJECTED, "no"))
    await flow.result()
    await _save(flow, "flow_gated_rejected")

    async with httpx.AsyncClient(base_url=f"{sandbox_url}/fleet") as fleet:
        await fleet.post("/reset")
        wave = await changes.create(template="Patch Linux servers", category="WaveGated", ci="fleet")
        handle = await start(client, settings, wave["number"])
        await _gate_waiting(handle)
        await handle.execute_update("decide", signed_decision(settings, handle.id, "carol.cab", Decision.APPROVED))
        await handle.result()
        await _save(client.get_workflow_handle(wave_workflow_id(wave["number"])), "wave_gated_approved")
        await fleet.post("/reset")

    unready = await changes.create(template="Restart application service", approved=False)
    handle = await start(client, settings, unready["number"])
    await handle.result()
    await _save(handle, "change_not_ready")
    handle = await start(client, settings, "CHG9999991")
    await handle.result()
    await _save(handle, "change_not_found")


async def record_reconcile(client: Client, settings: Settings, sandbox_url: str) -> None:
    """The seeded drift both ways (sandbox fleet), a failing source (unknowns) and a delta in several batches."""
    config = ReconcileConfig.model_validate(
        {
            "sources": [
                {
                    "name": "fleet",
                    "kind": "http",
                    "url": f"{sandbox_url}/fleet/hosts",
                    "key_field": "serial_number",
                    "covers": ["cmdb_ci_linux_server"],
                    "mapping": {"key": "serial_number", "attributes": {"os_version": "os_version"}},
                },
                {"name": "dc2", "kind": "command", "argv": ["false"], "covers": ["cmdb_ci_server"], "attempts": 1},
            ],
            "batch_bytes": 1_000,
        }
    )
    assert settings.reconcile is not None
    (Path(settings.reconcile) / "default.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json", by_alias=True))
    )
    handle = await client.start_workflow(
        "ReconcileWorkflow",
        ReconcileInput(config="default", digest=config_digest(config)),
        id="reconcile-2025-06-02",
        task_queue=settings.task_queue,
    )
    await handle.result()
    await _save(handle, "reconcile_drift_both_ways")


async def record_reconcile_moved(client: Client, settings: Settings, sandbox_url: str, sn: ServiceNowClient) -> None:
    """A site-bound source scanned by its site's worker, whose pipeline loses its worker meanwhile and starts again
    on another: the first worker is shut down while the site's scan waits for a file, then the file appears."""
    folder = Path(settings.reconcile or ".")
    gate, started = folder / "gate", folder / "scan-started"
    waits = (
        "import pathlib, sys, time; g = pathlib.Path(sys.argv[1]); pathlib.Path(sys.argv[2]).touch(); "
        '[time.sleep(0.05) for _ in iter(g.exists, True)]; print(\'[{"name": "moved-01", "id": "m1"}]\')'
    )
    config = ReconcileConfig.model_validate(
        {
            "sources": [
                {
                    "name": "dc-fra1",
                    "kind": "command",
                    "site": "fra1",
                    "argv": [sys.executable, "-c", waits, str(gate), str(started)],
                    "covers": ["cmdb_ci_server"],
                },
            ],
            "cmdb": {"classes": ["cmdb_ci_server"], "name_prefix": "moved-"},
            "worker_lost_after": "2s",
        }
    )
    (folder / "moved.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    moved = settings.model_copy(update={"task_queue": "record-moved"})
    registry = load_registry(TEST_REGISTRY)
    first = build_worker(client, moved, registry, sn)
    async with build_site_worker(client, moved, registry, "fra1"), first:
        handle = await client.start_workflow(
            "ReconcileWorkflow",
            ReconcileInput(config="moved", digest=config_digest(config)),
            id="reconcile-2025-06-09",
            task_queue=moved.task_queue,
        )
        for _ in range(400):
            if started.exists():
                break
            await asyncio.sleep(0.05)
        await first.shutdown()  # the pipeline's worker goes while the site scans (one worker per queue per process)
        async with build_worker(client, moved, registry, sn):
            gate.touch()
            await handle.result()
    await _save(handle, "reconcile_site_scan_worker_lost")


async def record_incident(client: Client, settings: Settings, changes: Changes) -> None:
    """A failing change that opens its incident before closing, the incident resolved by signal, and a failing flow
    run reported by the interceptor."""
    failing = await changes.create(category="Failing", ci="payments-api")
    handle = await start(client, settings, failing["number"])
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    await _save(handle, "change_failed_incident_opened")
    incident = client.get_workflow_handle(incident_workflow_id(handle.id))
    await incident.signal("resolve", ResolveIncident(resolved_by="bob.sre", fixed_by="change-CHG0099999"))
    await incident.result()
    await _save(incident, "incident_resolved")

    flow = await client.start_workflow(
        "FlowRunWorkflow",
        FlowRun(flow="failing_runbook"),
        id=f"flow-failing_runbook-{uuid.uuid4()}",
        task_queue=settings.task_queue,
    )
    with contextlib.suppress(WorkflowFailureError):
        await flow.result()
    await _save(flow, "flow_run_failed_incident_opened")


async def record_wave(client: Client, settings: Settings, changes: Changes, sandbox_url: str) -> None:
    """A paged wave (continue-as-new) with one host rolled back, and a wave stopped by its canary."""
    async with httpx.AsyncClient(base_url=f"{sandbox_url}/fleet") as fleet:
        await fleet.post("/reset")
        await fleet.put("/hosts/fleet-04/faults", json={"patch_fails": True})
        paged = await changes.create(template="Patch Linux servers", category="WavePaged", ci="fleet")
        handle = await start(client, settings, paged["number"])
        await handle.result()
        await _save(handle, "change_wave_successful_issues")
        wave_id = wave_workflow_id(paged["number"])
        runs = sorted([w async for w in client.list_workflows(f"WorkflowId = '{wave_id}'")], key=lambda w: w.start_time)
        await _save(client.get_workflow_handle(wave_id, run_id=runs[0].run_id), "wave_first_run_continued_as_new")
        await _save(client.get_workflow_handle(wave_id), "wave_last_run_successful_issues")
        number = paged["number"]
        await _save(client.get_workflow_handle(patch_host_workflow_id(number, "fleet-04")), "patch_host_rolled_back")
        await _save(client.get_workflow_handle(patch_host_workflow_id(number, "fleet-01")), "patch_host_patched")

        await fleet.post("/reset")
        await fleet.put("/hosts/fleet-02/faults", json={"patch_fails": True})
        canary = await changes.create(template="Patch Linux servers", category="WaveCanary", ci="fleet")
        handle = await start(client, settings, canary["number"])
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
        await _save(client.get_workflow_handle(wave_workflow_id(canary["number"])), "wave_canary_failed")
        await fleet.post("/reset")


async def _host_step(client: Client, workflow_id: str) -> str:
    try:
        return str((await client.get_workflow_handle(workflow_id).query("status", result_type=HostStatus)).step)
    except Exception:
        return ""


async def record_exactly_once(client: Client, settings: Settings, changes: Changes, sandbox_url: str) -> None:
    """Issue 13's shapes: a paged wave whose later runs watch the hosts they inherited, a patch retried after its
    answer was lost and rolled back, and a wave canceled with a host mid-patch."""
    registry = load_registry(TEST_REGISTRY)
    async with httpx.AsyncClient(base_url=f"{sandbox_url}/fleet") as fleet:
        await fleet.post("/reset")
        await fleet.put("/config", json={"op_seconds": 0.3})
        paged = await changes.create(template="Patch Linux servers", category="WavePaged", ci="fleet")
        handle = await start(client, settings, paged["number"])
        await handle.result()
        await _save(client.get_workflow_handle(wave_workflow_id(paged["number"])), "wave_last_run_watching_inherited")

        await fleet.post("/reset")
        await fleet.put("/hosts/pay-web-03/faults", json={"unhealthy_after_patch": True, "lose_answers": {"patch": 1}})
        lost = await changes.create(template="Patch Linux servers", ci="payments-api")
        handle = await start(client, settings, lost["number"])
        await handle.result()
        host_id = patch_host_workflow_id(lost["number"], "pay-web-03")
        await _save(client.get_workflow_handle(host_id), "patch_host_lost_answer_rolled_back")

        await fleet.post("/reset")
        await fleet.put("/hosts/pay-web-02/faults", json={"slow_seconds": 1.5})
        canceled = await changes.create(template="Patch Linux servers", ci="payments-api")
        number = canceled["number"]
        wave = await client.start_workflow(
            "PatchWaveWorkflow",
            WaveRun(
                runbook="patch_linux_servers",
                digest=runbook_digest(registry.runbooks["patch_linux_servers"]),
                change_number=number,
                change_sys_id=canceled["sys_id"],
            ),
            id=wave_workflow_id(number),
            task_queue=settings.task_queue,
        )
        for _ in range(600):
            if await _host_step(client, patch_host_workflow_id(number, "pay-web-02")) == "patch":
                break
            await asyncio.sleep(0.05)
        await wave.cancel()
        with contextlib.suppress(WorkflowFailureError):
            await wave.result()
        await _save(wave, "wave_canceled")
        await _save(
            client.get_workflow_handle(patch_host_workflow_id(number, "pay-web-02")), "patch_host_canceled_mid_patch"
        )
        await fleet.post("/reset")


async def _until(probe, what: str, within: float = 60) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(within / 0.05)):
        if await probe():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(what)


async def record_ticket_watch(client: Client, settings: Settings, changes: Changes, sandbox_url: str) -> None:
    """Issues 13 and 14 behind `ticket-watch`: a standard change and its runbook with the watch, a change that waited
    for its planned start and one for a blackout's end, a change and its runbook canceled mid-step, a change canceled
    in ServiceNow mid-runbook, one held and released, a rejected gate that cancels the ticket, and a wave whose
    window ended mid-wave (record with CHANGELOOP_HISTORY_SUFFIX=_watched)."""
    from servicenow.standard_change import servicenow_time
    from tests.change.windows import fresh, later, now, pid_of, release, runbook_status

    async def plan(change: dict[str, object], start: object, end: object) -> None:
        await changes.sn.update(
            "change_request",
            str(change["sys_id"]),
            {"start_date": servicenow_time(start), "end_date": servicenow_time(end)},  # type: ignore[arg-type]
        )

    ok = await changes.create(template="Restart application service")
    handle = await start(client, settings, ok["number"])
    await handle.result()
    await _save(handle, "change_successful")
    await _save(client.get_workflow_handle(f"runbook-{ok['number']}"), "runbook_successful")

    waited = await changes.create(template="Restart application service")
    await plan(waited, later(3), later(3600))
    handle = await start(client, settings, waited["number"])
    await handle.result()
    await _save(handle, "change_window_waited")

    frozen = await changes.create(template="Restart application service", ci="payments-api")
    await plan(frozen, now() - timedelta(minutes=1), later(3600))
    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        body = {"start_in": -5, "end_in": 2, "name": "Replay freeze", "condition": "name=payments-api"}
        (await control.post("/sandbox/blackouts", json=body)).raise_for_status()
        handle = await start(client, settings, frozen["number"])
        await handle.result()
        await control.delete("/sandbox/blackouts")
    await _save(handle, "change_blackout_waited")

    canceled = await changes.create(category="Release")
    number = fresh(canceled["number"])
    handle = await start(client, settings, number)
    await _until(lambda: _true(pid_of(number)), "the step runs")
    await handle.cancel(reason="replay")
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    release(number)
    await _save(handle, "change_canceled_mid_runbook")
    await _save(client.get_workflow_handle(f"runbook-{number}"), "runbook_canceled_mid_step")

    in_sn = await changes.create(category="Release")
    number = fresh(in_sn["number"])
    handle = await start(client, settings, number)
    await _until(lambda: _true(pid_of(number)), "the step runs")
    await changes.sn.update("change_request", in_sn["sys_id"], {"state": "4"})
    await asyncio.sleep(1.5)  # the watch's poll interval (1 s) passes while the step runs
    release(number)
    await handle.result()
    await _save(handle, "change_canceled_in_servicenow")
    await _save(client.get_workflow_handle(f"runbook-{number}"), "runbook_stopped_canceled_in_servicenow")

    held = await changes.create(category="Release")
    number = fresh(held["number"])
    handle = await start(client, settings, number)
    await _until(lambda: _true(pid_of(number)), "the step runs")
    await changes.sn.update("change_request", held["sys_id"], {"on_hold": "true", "on_hold_reason": "replay"})
    await asyncio.sleep(1.5)
    release(number)

    async def paused() -> bool:
        status = await runbook_status(client, number)
        return bool(status and status.waiting)

    await _until(paused, "the runbook paused")
    await changes.sn.update("change_request", held["sys_id"], {"on_hold": "false"})
    await handle.result()
    await _save(handle, "change_on_hold_resumed")
    await _save(client.get_workflow_handle(f"runbook-{number}"), "runbook_on_hold_resumed")

    rejected = await changes.create(template="Run maintenance steps")
    handle = await start(client, settings, rejected["number"])
    await _gate_waiting(handle)
    await handle.execute_update("decide", signed_decision(settings, handle.id, "alice.ops", Decision.REJECTED, "no"))
    await handle.result()
    await _save(handle, "change_rejected_canceled")

    async with httpx.AsyncClient(base_url=f"{sandbox_url}/fleet") as fleet:
        await fleet.post("/reset")
        await fleet.put("/config", json={"op_seconds": 0.6})
        wave = await changes.create(template="Patch Linux servers", category="WaveWindow", ci="payments-api")
        await plan(wave, now() - timedelta(minutes=1), later(3))
        handle = await start(client, settings, wave["number"])
        await handle.result()
        await _save(handle, "change_wave_window_ended")
        await _save(client.get_workflow_handle(wave_workflow_id(wave["number"])), "wave_window_ended")
        await fleet.post("/reset")


async def _true(value: object) -> bool:
    return bool(value)


async def _step_running(client: Client, workflow_id: str, step: str) -> bool:
    """The runbook is at `step` and a run_step activity has started (its task, opened before it, is open)."""
    handle = client.get_workflow_handle(workflow_id)
    if (await handle.query("status", result_type=RunbookStatus)).step != step:
        return False
    pending = (await handle.describe()).raw_description.pending_activities
    return any(a.activity_type.name == "run_step" and a.state == PENDING_ACTIVITY_STATE_STARTED for a in pending)


async def record_evidence(client: Client, settings: Settings, changes: Changes, sandbox_url: str) -> None:
    """Issue 15's shapes (run with CHANGELOOP_HISTORY_SUFFIX=_with_evidence): the runbook's log attached at its end,
    a change task per step (gated, failed, canceled mid-step), the failing step's output on the incident, a wave's
    tasks and per-host CSV across continue-as-new and when canceled, the Slack confirmation of each closed change."""
    registry = load_registry(TEST_REGISTRY)
    ok = await changes.create(template="Restart application service")
    handle = await start(client, settings, ok["number"])
    await handle.result()
    await _save(handle, "change_successful")
    await _save(client.get_workflow_handle(f"runbook-{ok['number']}"), "runbook_successful")

    gated = await changes.create(category="MaintenanceTasks")
    handle = await start(client, settings, gated["number"])
    await _gate_waiting(handle)
    await handle.execute_update("decide", signed_decision(settings, handle.id, "alice.ops", Decision.APPROVED, "go"))
    await handle.result()
    await _save(handle, "change_gated_tasks_per_step")
    await _save(client.get_workflow_handle(f"runbook-{gated['number']}"), "runbook_gated_tasks_per_step")

    failing = await changes.create(category="Failing", ci="payments-api")
    handle = await start(client, settings, failing["number"])
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    await _save(handle, "change_failed_incident_opened")
    await _save(client.get_workflow_handle(f"runbook-{failing['number']}"), "runbook_failed")
    incident = client.get_workflow_handle(incident_workflow_id(handle.id))
    await incident.signal("resolve", ResolveIncident(resolved_by="bob.sre", fixed_by="change-CHG0099999"))
    await incident.result()
    await _save(incident, "incident_resolved_output_attached")

    slow = await changes.create()
    number = slow["number"]
    runbook = await client.start_workflow(
        "RunbookWorkflow",
        RunbookRun(
            runbook="slow_tasks",
            digest=runbook_digest(registry.runbooks["slow_tasks"]),
            change_number=number,
            change_sys_id=slow["sys_id"],
            variables={"host": "payments-api", "change": number},
        ),
        id=f"runbook-{number}",
        task_queue=settings.task_queue,
    )
    for _ in range(600):
        if await _step_running(client, runbook.id, "long wait"):
            break
        await asyncio.sleep(0.05)
    await runbook.cancel()
    with contextlib.suppress(WorkflowFailureError):
        await runbook.result()
    await _save(runbook, "runbook_canceled_mid_step_tasks_per_step")

    async with httpx.AsyncClient(base_url=f"{sandbox_url}/fleet") as fleet:
        await fleet.post("/reset")
        await fleet.put("/hosts/fleet-17/faults", json={"patch_fails": True})
        await fleet.put("/hosts/fleet-13/faults", json={"unhealthy_after_patch": True})
        wave = await changes.create(template="Patch Linux servers", category="WaveTasks", ci="fleet")
        handle = await start(client, settings, wave["number"])
        await handle.result()
        await _save(handle, "change_wave_tasks")
        wave_id = wave_workflow_id(wave["number"])
        runs = sorted([w async for w in client.list_workflows(f"WorkflowId = '{wave_id}'")], key=lambda w: w.start_time)
        await _save(client.get_workflow_handle(wave_id, run_id=runs[0].run_id), "wave_tasks_first_run_continued_as_new")
        await _save(client.get_workflow_handle(wave_id), "wave_tasks_last_run_successful_issues")

        await fleet.post("/reset")
        await fleet.put("/hosts/pay-web-02/faults", json={"slow_seconds": 1.5})
        canceled = await changes.create(template="Patch Linux servers", ci="payments-api")
        number = canceled["number"]
        wave_handle = await client.start_workflow(
            "PatchWaveWorkflow",
            WaveRun(
                runbook="patch_wave_tasks",
                digest=runbook_digest(registry.runbooks["patch_wave_tasks"]),
                change_number=number,
                change_sys_id=canceled["sys_id"],
            ),
            id=wave_workflow_id(number),
            task_queue=settings.task_queue,
        )
        for _ in range(600):
            if await _host_step(client, patch_host_workflow_id(number, "pay-web-02")) == "patch":
                break
            await asyncio.sleep(0.05)
        await wave_handle.cancel()
        with contextlib.suppress(WorkflowFailureError):
            await wave_handle.result()
        await _save(wave_handle, "wave_tasks_canceled")
        await fleet.post("/reset")


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    temporal = Path(sys.executable).parent / "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
    )
    with SandboxServer(SandboxConfig(port=0, seed=True)) as sandbox, tempfile.TemporaryDirectory() as configs:
        settings = Settings(
            _env_file=None,
            temporal_address=env.client.service_client.config.target_host,
            task_queue="record",
            servicenow_url=sandbox.url,
            servicenow_username="changeloop.integration",
            servicenow_password=SecretStr("sn-integration-pw"),
            webhook_token=SecretStr("record-token"),
            reconcile=Path(configs),
            outbound_allow=["127.0.0.0/8"],
            decision_key=SecretStr(DECISION_KEY),
            approval_poll_interval=timedelta(seconds=1),
            ticket_poll_interval=timedelta(seconds=1),
        )
        async with ServiceNowClient.from_settings(settings) as sn:
            async with build_worker(env.client, settings, load_registry(TEST_REGISTRY), sn):
                wanted = set(sys.argv[1:]) or {
                    "change",
                    "reconcile",
                    "incident",
                    "wave",
                    "gate",
                    "exactly_once",
                    "ticket_watch",
                    "evidence",
                }  # e.g. `… record_histories reconcile`
                if "change" in wanted:
                    await record(env.client, settings, Changes(sn))
                if "incident" in wanted:
                    await record_incident(env.client, settings, Changes(sn))
                if "reconcile" in wanted:
                    await record_reconcile(env.client, settings, sandbox.url)
                    await record_reconcile_moved(env.client, settings, sandbox.url, sn)
                if "gate" in wanted:
                    await record_gate(env.client, settings, Changes(sn), sandbox.url)
                if "wave" in wanted:
                    await record_wave(env.client, settings, Changes(sn), sandbox.url)
                if "exactly_once" in wanted:
                    await record_exactly_once(env.client, settings, Changes(sn), sandbox.url)
                if "ticket_watch" in wanted:
                    await record_ticket_watch(env.client, settings, Changes(sn), sandbox.url)
                if "evidence" in wanted:
                    await record_evidence(env.client, settings, Changes(sn), sandbox.url)
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
