"""How runs start: the weekly schedule from `changeloop schedules apply`, and `changeloop reconcile run --dry-run`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from config.registry import load_registry
from config.settings import Settings
from starter import schedules
from tests.reconcile.conftest import Scenario
from workflows.reconcile.models import RECONCILE_SCHEDULE, ReconcileInput


async def test_schedules_apply_creates_the_weekly_reconciliation(
    temporal_client: Client, reconcile_settings: Settings
) -> None:
    await schedules.delete(temporal_client, [RECONCILE_SCHEDULE])
    try:
        (applied,) = await schedules.apply(temporal_client, reconcile_settings, load_registry(), [RECONCILE_SCHEDULE])
        assert applied.action == "created"
        described = await temporal_client.get_schedule_handle(RECONCILE_SCHEDULE).describe()
        (interval,) = described.schedule.spec.intervals
        assert (interval.every, interval.offset) == (timedelta(days=7), timedelta(days=4, hours=2))  # Mondays 02:00
        assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "ReconcileWorkflow"
        assert action.id == "reconcile"  # Temporal appends the scheduled time: reconcile-<date>T…
        (payload,) = action.args
        sent = ReconcileInput.model_validate_json(payload.data)  # type: ignore[attr-defined]
        # By reference: the schedule names the worker's config, it never carries sources.
        assert sent.config == "default" and not sent.dry_run
        assert b"sources" not in payload.data  # type: ignore[attr-defined]
    finally:
        assert await schedules.delete(temporal_client, [RECONCILE_SCHEDULE]) == [RECONCILE_SCHEDULE]


async def test_cli_dry_run_prints_the_summary_and_writes_nothing(
    scenario: Scenario, sandbox_control: object, tmp_path: Path
) -> None:
    s = scenario
    await s.ci("gone-01")
    config = s.config(s.source("dc1", [s.host("new-01", "10.9.5.1")]))
    name = s.publish(config)  # the worker reads its configs; the CLI names one
    settings = s.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_")} | {
        "CHANGELOOP_TEMPORAL_ADDRESS": settings.temporal_address,
        "CHANGELOOP_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "CHANGELOOP_TASK_QUEUE": settings.task_queue,  # the test's reconcile worker runs it
        "CHANGELOOP_SERVICENOW_URL": settings.servicenow_url,
        "COLUMNS": "200",
        "PYTHONPATH": str(Path(__file__).parents[2]),  # the checkout, whatever the editable install lists
    }
    before = await sandbox_control.stats()  # type: ignore[attr-defined]

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "starter.cli", "reconcile", "run", "--dry-run", "--config", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # no .env of the developer's
    )

    assert done.returncode == 0, done.stderr
    assert "-dry-run" in done.stdout and "dry run: nothing written" in done.stdout
    assert f"would create: 1 - {s.name('new-01')}" in done.stdout
    assert f"would open incidents for: 1 - {s.name('gone-01')}" in done.stdout
    assert (await sandbox_control.stats())["writes"] == before["writes"]  # type: ignore[attr-defined]
