"""A wave's evidence on the ticket (issue 15): its per-host report attached as CSV (every CI with its outcome, detail and
execution link) whether it finished or stopped, and with `tasks: per_step` one change task for the canary, one per
failed or rolled-back host and one summary task - across continue-as-new (the `patch_wave_tasks` runbook reads the
CMDB 8 CIs per run)."""

from __future__ import annotations

import csv
import io
from typing import Any

from temporalio.client import Client

from config.settings import Settings
from servicenow import attachments
from servicenow.change_task import ChangeTaskState
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import Changes
from tests.wave.conftest import FLEET, FleetControl, WaveRun, run_wave
from workflows.wave.models import patch_host_workflow_id, wave_workflow_id

LINK = "http://127.0.0.1:8233/namespaces/default/workflows/"


async def _csv(sn: ServiceNowClient, wave: WaveRun) -> dict[str, dict[str, str]]:
    files = await attachments.list_attachments(sn, "change_request", wave.change["sys_id"])
    assert [(f.file_name, f.content_type) for f in files] == [(f"{wave_workflow_id(wave.number)}.csv", "text/csv")]
    text = (await attachments.download(sn, files[0].sys_id)).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["ci", "outcome", "detail", "workflow_id", "execution_link"]
    return {row["ci"]: row for row in rows}


async def test_a_wave_attaches_every_ci_with_its_outcome_and_link_and_files_its_tasks(
    temporal_client: Client,
    wave_settings: Settings,
    changes: Changes,
    fleet: FleetControl,
    wave_worker: Any,
    sn_client: ServiceNowClient,
) -> None:
    await fleet.set_faults("fleet-17", patch_fails=True)
    await fleet.set_faults("fleet-13", unhealthy_after_patch=True)

    wave = await run_wave(temporal_client, wave_settings, changes, category="WaveTasks")

    canary = wave.status.canary
    assert len(canary) == 2 and not {"fleet-13", "fleet-17"} & set(canary), "the canary (first CMDB page) passes"
    assert wave.error is None and wave.ticket["close_code"] == "successful_issues"
    assert wave.status.run == 3, "three CMDB pages: the tasks' references travelled through continue-as-new"
    rows = await _csv(sn_client, wave)
    assert sorted(rows) == FLEET
    outcomes = {ci: row["outcome"] for ci, row in rows.items()}
    assert outcomes == dict.fromkeys(FLEET, "patched") | {"fleet-17": "rolled_back", "fleet-13": "rolled_back"}
    for ci, row in rows.items():
        workflow_id = patch_host_workflow_id(wave.number, ci)
        assert (row["workflow_id"], row["execution_link"]) == (workflow_id, LINK + workflow_id)
    assert "package transaction failed" in rows["fleet-17"]["detail"] and "rolled back" in rows["fleet-17"]["detail"]
    assert f"the attached {wave_workflow_id(wave.number)}.csv" in wave.ticket["close_notes"]
    assert len(wave.status.report) == 1 and wave.status.report[0].startswith(f"{wave_workflow_id(wave.number)}.csv (")

    tasks = await sn_client.list(
        "change_task", Query().eq("change_request", wave.change["sys_id"]), exclude_reference_link=True
    )
    found = {t["correlation_id"].split(":", 1)[1]: t for t in tasks}
    assert len(tasks) == len(found) == 4, [t["correlation_id"] for t in tasks]
    closed = {name: (t["state"], t["close_code"]) for name, t in found.items()}
    assert closed == {
        "canary": (ChangeTaskState.CLOSED.value, "successful"),
        "host fleet-17": (ChangeTaskState.CLOSED.value, "unsuccessful"),
        "host fleet-13": (ChangeTaskState.CLOSED.value, "unsuccessful"),
        "summary": (ChangeTaskState.CLOSED.value, "successful_issues"),
    }
    fleet_17 = await sn_client.first("cmdb_ci", Query().eq("name", "fleet-17"), fields=["sys_id"])
    assert fleet_17 is not None and found["host fleet-17"]["cmdb_ci"] == fleet_17["sys_id"]
    assert LINK + patch_host_workflow_id(wave.number, "fleet-17") in found["host fleet-17"]["close_notes"]
    assert f"Canary passed: {', '.join(canary)}." in found["canary"]["close_notes"]
    assert "18 patched, 2 rolled back" in found["summary"]["close_notes"]
    assert f"{wave_workflow_id(wave.number)}.csv" in found["summary"]["close_notes"]


async def test_a_stopped_wave_attaches_its_report_too_and_files_no_task_unless_asked(
    temporal_client: Client,
    wave_settings: Settings,
    changes: Changes,
    fleet: FleetControl,
    wave_worker: Any,
    sn_client: ServiceNowClient,
) -> None:
    await fleet.set_faults("fleet-02", patch_fails=True)  # the canary (fleet-01, fleet-02) fails: nothing else runs

    wave = await run_wave(temporal_client, wave_settings, changes, category="WaveCanary")

    assert wave.error is not None and wave.ticket["close_code"] == "unsuccessful"
    rows = await _csv(sn_client, wave)
    assert sorted(rows) == FLEET
    assert (rows["fleet-01"]["outcome"], rows["fleet-02"]["outcome"]) == ("patched", "rolled_back")
    rest = [rows[ci] for ci in FLEET[2:]]
    assert all(r["outcome"] == "not_attempted" and r["execution_link"] == "" for r in rest), "no execution, no link"
    assert all("canary failed on fleet-02" in r["detail"] for r in rest)
    assert await sn_client.list("change_task", Query().eq("change_request", wave.change["sys_id"])) == []
