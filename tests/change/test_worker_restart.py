"""A worker killed in the middle of a runbook: a new worker finishes the change, and nothing completed before the
kill runs again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.client import Client

from config.settings import Settings
from tests.changes import TEST_REGISTRY, Changes, start
from tests.helpers import listed_runs, wait_for
from workflows.change.models import ChangeOutcome

ROOT = Path(__file__).resolve().parents[2]


def _worker_process(settings: Settings, registry: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "CHANGELOOP_TEMPORAL_ADDRESS": settings.temporal_address,
        "CHANGELOOP_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "CHANGELOOP_TASK_QUEUE": settings.task_queue,
        "CHANGELOOP_UI_URL": settings.ui_url,
        "CHANGELOOP_SERVICENOW_URL": settings.servicenow_url,
        "CHANGELOOP_SERVICENOW_USERNAME": settings.servicenow_username or "",
        "CHANGELOOP_SERVICENOW_PASSWORD": settings.servicenow_password.get_secret_value()
        if settings.servicenow_password
        else "",
        "CHANGELOOP_RUNBOOKS": str(registry),
    }
    return subprocess.Popen(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_worker_killed_mid_runbook_and_restarted_completes_the_change_once(
    temporal_client: Client, settings: Settings, changes: Changes, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    registry = tmp_path / "runbooks.yaml"
    registry.write_text(TEST_REGISTRY.read_text().replace("__MARKER_DIR__", str(markers)))
    isolated = settings.model_copy(update={"task_queue": f"restart-{uuid.uuid4().hex[:8]}"})

    first = _worker_process(isolated, registry)
    try:
        change = await changes.create(category="Blocking")
        handle = await start(temporal_client, isolated, change["number"])
        await wait_for(lambda: _runs(markers / "waiting") >= 1, timeout=30, message="runbook reached the blocking step")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    (markers / "release").touch()
    second = _worker_process(isolated, registry)
    try:
        result = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    assert result.outcome == ChangeOutcome.SUCCESSFUL
    assert _runs(markers / "first") == 1, "a step finished before the kill must not run again"
    assert _runs(markers / "last") == 1
    assert _runs(markers / "waiting") >= 2, "the step in flight at the kill is retried on the new worker"
    runs = await listed_runs(temporal_client, handle.id)
    assert len(runs) == 1
    ticket = await changes.get(change["sys_id"])
    assert ticket["state"] == "3" and ticket["close_code"] == "successful"
    notes = await changes.work_notes(change["sys_id"])
    assert sum(n.startswith("Started by changeloop") for n in notes) == 1
