"""Reconciliation on many workers that share no disk: three worker processes, each with its own state dir and its
own copy of the config, on one task queue. The run's pipeline keeps its files on one of them (the worker that
claimed it, through its own queue); that worker is killed with SIGKILL mid-run, while the delta is being written.
The run starts its pipeline again on another worker and completes, and ServiceNow (read as admin) holds each new
CI once and one incident per missing CI: the restarted pipeline found what the lost one wrote.

ServiceNow answers every call 150 ms late, so writing the delta (a batch of a few items at a time) takes seconds:
the kill lands while batches remain, as soon as the status query says two are done.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from temporalio.client import Client

from config.reconcile import ReconcileConfig, config_digest
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.conftest import SandboxControl
from tests.helpers import wait_for
from tests.scale.conftest import WorkerProcess, started
from workflows.reconcile.models import ReconcileInput, ReconcileStatus, ReconcileSummary
from workflows.status import QUERY_STATUS

NEW_HOSTS = 6  # live, not in the CMDB: each created once
GONE_CIS = 12  # in the CMDB, seen by no source: one incident each (the first ones before the kill)
KEPT = 4  # live and declared: matched, nothing written
CAT = [sys.executable, "-c", "import sys; sys.stdout.write(open(sys.argv[1]).read())"]


async def _queues_of(client: Client, workflow_id: str, activity: str) -> list[str]:
    """The task queues `activity` was scheduled on, in the history's order."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.task_queue.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    ]


async def _incidents_for(admin: ServiceNowClient, cis: list[dict[str, Any]]) -> list[str]:
    """The correlation_id of every incident (any state) opened for one of `cis`."""
    query = Query().in_("correlation_id", [f"drift-{ci['sys_id']}" for ci in cis])
    return [str(i["correlation_id"]) for i in await admin.list("incident", query, fields=["correlation_id"])]


async def test_a_run_whose_pipeline_worker_is_killed_completes_on_another_and_writes_nothing_twice(
    temporal_client: Client,
    scale_settings: Settings,
    scale_sn: ServiceNowClient,
    scale_admin: ServiceNowClient,
    scale_control: SandboxControl,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    prefix = f"sc{uuid.uuid4().hex[:6]}-"
    gone = [
        await scale_sn.create(
            "cmdb_ci_linux_server", {"name": f"{prefix}gone-{n}", "serial_number": f"{prefix}SN-gone-{n}"}
        )
        for n in range(GONE_CIS)
    ]
    for n in range(KEPT):
        await scale_sn.create(
            "cmdb_ci_linux_server", {"name": f"{prefix}kept-{n}", "serial_number": f"{prefix}SN-kept-{n}"}
        )
    live = [{"name": f"{prefix}new-{n:02d}", "serial_number": f"{prefix}SN-new-{n:02d}"} for n in range(NEW_HOSTS)]
    live += [{"name": f"{prefix}kept-{n}", "serial_number": f"{prefix}SN-kept-{n}"} for n in range(KEPT)]
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(live))
    config = ReconcileConfig.model_validate(
        {
            "sources": [
                {
                    "name": "dc",
                    "kind": "command",
                    "argv": [*CAT, str(inventory)],
                    "key_field": "serial_number",
                    "ci_class": "cmdb_ci_linux_server",
                    "mapping": {"key": "serial_number"},
                    "attempts": 1,
                }
            ],
            "cmdb": {"name_prefix": prefix},
            "batch_bytes": 1000,  # a few items per batch: many batches to kill the run between
            "worker_lost_after": "3s",
        }
    )
    three = [WorkerProcess(f"w{n}", scale_settings, tmp_path / f"w{n}") for n in range(3)]
    workers.extend(three)
    for worker in three:
        worker.publish("scale", config)  # each its own copy, in its own directory
    await started(*three)

    await scale_control.set_faults(latency_ms=150)
    handle = await temporal_client.start_workflow(
        "ReconcileWorkflow",
        ReconcileInput(config="scale", digest=config_digest(config)),
        id=f"reconcile-{prefix}run",
        task_queue=scale_settings.task_queue,
        result_type=ReconcileSummary,
    )

    async def two_batches_written() -> ReconcileStatus | None:
        status: ReconcileStatus = await handle.query(QUERY_STATUS, result_type=ReconcileStatus)
        return status if status.phase == "applying" and status.batches_done >= 2 else None

    status = await wait_for(two_batches_written, timeout=90, interval=0.05, message="two batches written")
    assert status is not None and status.batches_total >= 4, status  # batches remain to be written when the holder dies
    holder = next(w for w in three if w.identity == status.worker)
    await holder.kill()
    assert holder.run_dirs(), "the killed worker held the run's files in its own state dir"
    # Incidents were opened before the kill: the restarted pipeline meets them again, and must not open them twice.
    assert await _incidents_for(scale_admin, gone), "no incident was opened before the kill"

    summary = await asyncio.wait_for(handle.result(), timeout=120)
    await scale_control.clear_faults()

    # The run moved: it started on the killed worker and finished on another, which cleaned up after itself.
    assert summary.pipeline_workers[0] == holder.identity
    assert len(summary.pipeline_workers) >= 2 and summary.pipeline_workers[-1] != holder.identity
    finisher = next(w for w in three if w.identity == summary.pipeline_workers[-1])
    assert finisher.run_dirs() == []
    diff_queues = await _queues_of(temporal_client, handle.id, "reconcile_diff")
    assert len(set(diff_queues)) >= 2 and all("@" in q for q in diff_queues), diff_queues

    # What ServiceNow holds, read as admin: each new host's CI once, one incident per missing CI, none for the kept.
    cis = await scale_admin.list(
        "cmdb_ci_linux_server", Query().startswith("name", f"{prefix}new-"), fields=["name", "discovery_source"]
    )
    assert Counter(str(ci["name"]) for ci in cis) == Counter(h["name"] for h in live[:NEW_HOSTS])
    assert {ci["discovery_source"] for ci in cis} == {"changeloop:dc"}
    assert Counter(await _incidents_for(scale_admin, gone)) == Counter(f"drift-{ci['sys_id']}" for ci in gone)
    kept_incidents = await scale_admin.list(
        "incident", Query().startswith("short_description", f"CMDB drift: {prefix}kept")
    )
    assert kept_incidents == []

    # The summary counts each write once, across both starts of the pipeline.
    assert (summary.created_total, summary.incidents_total) == (NEW_HOSTS, GONE_CIS), summary
    assert summary.already_in_cmdb == 0 and summary.incidents_already_open == 0
    row = next(t for t in summary.tallies if t.source == "dc")
    assert (row.created, row.incidents) == (NEW_HOSTS, GONE_CIS)
