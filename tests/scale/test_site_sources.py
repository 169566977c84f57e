"""Scans where the source is: a reconciliation source bound to a site is scanned by that site's worker, inside its
network, with the site worker's own config and secret; its records reach the pipeline's worker through history.

Three worker processes on one task queue: the central worker, and site workers for `fra1` and `ams2` (no ServiceNow
credentials). The fra1 source's command appends its worker's SITE_MARK - a secret only the site workers list,
each its own value - to a file, so the file says which worker ran each scan. The fra1 worker's config holds its own
source only; the central worker's holds both sources.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from config.reconcile import ReconcileConfig, config_digest
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.scale.conftest import WorkerProcess, started
from workflows.reconcile.models import CHUNK_BYTES, ReconcileInput, ReconcileSummary

MARKS = {"fra1": "fra1-site-mark-4c1e", "ams2": "ams2-site-mark-9b7d"}  # secrets: 8 characters at least
# Appends SITE_MARK (the worker's secret, passed as the source's declared env) to argv[2], prints the JSON of argv[1].
SCAN = [
    sys.executable,
    "-c",
    "import os, sys; open(sys.argv[2], 'a').write(os.environ['SITE_MARK'] + '\\n');"
    " sys.stdout.write(open(sys.argv[1]).read())",
]
CAT = [sys.executable, "-c", "import sys; sys.stdout.write(open(sys.argv[1]).read())"]


class Sites:
    def __init__(self, settings: Settings, central: WorkerProcess, fra1: WorkerProcess, home: Path) -> None:
        self.settings, self.central, self.fra1, self.home = settings, central, fra1, home
        self.marks = home / "marks.txt"

    def sources(self, prefix: str, at_site: list[dict[str, str]], central: list[dict[str, str]]) -> list[Any]:
        site_file, central_file = self.home / f"{prefix}fra1.json", self.home / f"{prefix}central.json"
        site_file.write_text(json.dumps(at_site))
        central_file.write_text(json.dumps(central))
        common = {
            "kind": "command",
            "key_field": "serial_number",
            "ci_class": "cmdb_ci_linux_server",
            "mapping": {"key": "serial_number"},
            "attempts": 1,
        }
        return [
            common
            | {
                "name": "dc-fra1",
                "site": "fra1",
                "argv": [*SCAN, str(site_file), str(self.marks)],
                "env": {"SITE_MARK": {"secret": "SITE_MARK"}},
            },
            common | {"name": "central", "argv": [*CAT, str(central_file)]},
        ]

    def publish(self, name: str, config: ReconcileConfig) -> ReconcileInput:
        """The central worker gets the whole config; the fra1 worker a config of the same name with its own source
        only (defined identically: the run pins the source's digest)."""
        self.central.publish(name, config)
        own = config.model_copy(update={"sources": [s for s in config.sources if s.site == "fra1"]})
        self.fra1.publish(name, own)
        return ReconcileInput(config=name, digest=config_digest(config))

    def marks_written(self) -> list[str]:
        return self.marks.read_text().split() if self.marks.exists() else []


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sites(
    settings: Settings, scale_sandbox: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Sites]:
    home = tmp_path_factory.mktemp("sites")
    queue = f"scale-sites-{uuid.uuid4().hex[:6]}"
    shared = settings.model_copy(update={"servicenow_url": scale_sandbox.url.rstrip("/"), "task_queue": queue})
    central = WorkerProcess("central", shared, home / "central")
    site_workers = [
        WorkerProcess(site, shared, home / site, site=site, CHANGELOOP_SECRET_NAMES="SITE_MARK", SITE_MARK=MARKS[site])
        for site in MARKS
    ]
    try:
        await started(central, *site_workers)
        yield Sites(shared, central, site_workers[0], home)
    finally:
        for worker in (central, *site_workers):
            await worker.stop()


async def _scheduled(client: Client, workflow_id: str) -> list[tuple[str, str]]:
    """(activity type, task queue) of every activity the run scheduled."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        (a.activity_type.name, a.task_queue.name)
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        for a in [e.activity_task_scheduled_event_attributes]
    ]


async def test_a_source_bound_to_a_site_is_scanned_by_that_sites_worker_only(
    temporal_client: Client, sites: Sites, scale_sn: ServiceNowClient, scale_admin: ServiceNowClient
) -> None:
    prefix = f"st{uuid.uuid4().hex[:6]}-"
    gone = await scale_sn.create("cmdb_ci_linux_server", {"name": f"{prefix}gone", "serial_number": f"{prefix}SN-gone"})
    at_site = [{"name": f"{prefix}fra-{n}", "serial_number": f"{prefix}SN-fra-{n}"} for n in range(3)]
    central = [{"name": f"{prefix}hq-{n}", "serial_number": f"{prefix}SN-hq-{n}"} for n in range(2)]
    config = ReconcileConfig.model_validate(
        {"sources": sites.sources(prefix, at_site, central), "cmdb": {"name_prefix": prefix}}
    )
    marks_before = sites.marks_written()

    summary: ReconcileSummary = await temporal_client.execute_workflow(
        "ReconcileWorkflow",
        sites.publish(f"{prefix}run", config),
        id=f"reconcile-{prefix}run",
        task_queue=sites.settings.task_queue,
        result_type=ReconcileSummary,
    )

    # The fra1 worker ran the scan, once; not the ams2 worker, not the central worker (which lacks the secret).
    assert sites.marks_written()[len(marks_before) :] == [MARKS["fra1"]]
    scheduled = await _scheduled(temporal_client, f"reconcile-{prefix}run")
    queue = sites.settings.task_queue
    assert [q for a, q in scheduled if a == "reconcile_scan_at_site"] == [f"{queue}-fra1"]
    assert [q.split("@")[0] for a, q in scheduled if a == "reconcile_scan_source"] == [queue]  # central: pipeline's
    by_source = {s.source: s for s in summary.sources}
    assert (by_source["dc-fra1"].ok, by_source["dc-fra1"].site, by_source["dc-fra1"].records) == (True, "fra1", 3)
    assert (by_source["central"].ok, by_source["central"].site) == (True, "")

    # Its records reached the pipeline: every site host and central host created once, the gone CI's incident.
    cis = await scale_admin.list(
        "cmdb_ci_linux_server", Query().startswith("name", prefix), fields=["name", "discovery_source"]
    )
    created = {str(ci["name"]): str(ci["discovery_source"]) for ci in cis if ci["name"] != gone["name"]}
    assert len(cis) == 1 + len(at_site) + len(central)
    assert created == {h["name"]: "changeloop:dc-fra1" for h in at_site} | {
        h["name"]: "changeloop:central" for h in central
    }
    incidents = await scale_admin.list("incident", Query().eq("correlation_id", f"drift-{gone['sys_id']}"))
    assert len(incidents) == 1
    assert summary.created_total == 5 and summary.incidents_total == 1


async def test_a_sites_inventory_larger_than_a_payload_reaches_the_pipeline_in_chunks(
    temporal_client: Client, sites: Sites
) -> None:
    prefix = f"sb{uuid.uuid4().hex[:6]}-"
    # Random keys and names compress poorly: several chunks of at most CHUNK_BYTES.
    at_site = [
        {"name": f"{prefix}{uuid.uuid4().hex}", "serial_number": uuid.uuid4().hex, "os": "Linux"} for _ in range(12_000)
    ]
    config = ReconcileConfig.model_validate(
        {"sources": sites.sources(prefix, at_site, []), "cmdb": {"name_prefix": prefix}}
    )

    summary: ReconcileSummary = await temporal_client.execute_workflow(
        "ReconcileWorkflow",
        sites.publish(f"{prefix}run", config).model_copy(update={"dry_run": True}),
        id=f"reconcile-{prefix}run-dry-run",
        task_queue=sites.settings.task_queue,
        result_type=ReconcileSummary,
    )

    tally = next(t for t in summary.tallies if t.source == "dc-fra1")
    assert (tally.scanned, tally.new) == (12_000, 12_000)  # every record arrived, none twice
    report = next(s for s in summary.sources if s.source == "dc-fra1")
    assert report.chunks >= 3
    scheduled = await _scheduled(temporal_client, f"reconcile-{prefix}run-dry-run")
    fetched = [q for a, q in scheduled if a == "reconcile_fetch_scan_chunk"]
    assert len(fetched) == report.chunks - 1
    assert {q.split("@")[0] for q in fetched} == {f"{sites.settings.task_queue}-fra1"}  # the site worker's own queue
    assert [q for a, q in scheduled if a == "reconcile_drop_site_scan"] == fetched[:1]
    assert sites.fra1.run_dirs() == []  # dropped once fetched

    history = await temporal_client.get_workflow_handle(f"reconcile-{prefix}run-dry-run").fetch_history()
    largest = max(e.ByteSize() for e in history.events)
    assert largest < CHUNK_BYTES * 4 // 3 + 4096  # a chunk, base64, and the event around it: far below 2 MB
