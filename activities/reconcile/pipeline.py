"""Reconciliation activities: scan, pull, diff (all outside history), then apply the delta batch by batch.

Every write is safe to retry (activities/reconcile/writes.py): each create looks its natural key up right before it
writes, and a failed batch leaves no write running behind it. A request the instance refuses for good
(400/403/404) fails that one item, named in the outcome, not the whole batch.

The config is the worker's own (CHANGELOOP_RECONCILE), read by name in every activity and refused when its digest is
not the one the run resolved: a request names a source, it never describes one (activities/reconcile/configs.py).

The stages that read and write the run's files run on the worker that holds them: `claim_pipeline_worker` (any
worker of the shared queue) answers this worker's own queue, which only this worker polls, and the workflow sends
scan, pull, diff, the batches' loading and the clean-up there (worker.py registers them on both queues). Their
heartbeats follow the heartbeat timeout the workflow gave (the config's `worker_lost_after`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from temporalio import activity

from activities.errors import servicenow_errors
from activities.heartbeat import paced_heartbeats
from activities.reconcile import drift, inventory, transfer
from activities.reconcile.configs import worker_config, worker_source
from activities.reconcile.store import RunStore, prune, run_key
from activities.reconcile.writes import BatchWriter
from activities.slack import post_to_slack
from config.reconcile import ReconcileConfig
from config.secrets import NamedSecrets
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.incident import IncidentState
from servicenow.query import Query
from workflows import calls
from workflows.reconcile.models import (
    ApplyRequest,
    BatchOutcome,
    ConfigRef,
    DeltaBatch,
    DiffReport,
    DiffRequest,
    PipelineWorker,
    PullReport,
    PullRequest,
    ReconcilePlan,
    ReconcileSummary,
    RecordChunk,
    ScanReport,
    ScanRequest,
)

# Pages of the CMDB pull asked at once: a page of thousands of rows costs an instance seconds to render, and the
# pages are independent (servicenow/client.py `iter_pages`); each still spends the request budget.
PULL_READ_AHEAD = 4
LOOKUP_CHUNK = 100  # values per IN clause: keeps the request URL far below instance limits
CLOSED_INCIDENT = [IncidentState.RESOLVED.value, IncidentState.CLOSED.value, IncidentState.CANCELED.value]


class ReconcileActivities:
    def __init__(
        self,
        sn: ServiceNowClient,
        settings: Settings,
        secrets: NamedSecrets | None = None,
        *,
        pipeline: PipelineWorker | None = None,
    ) -> None:
        """`pipeline`: this worker's own queue and identity (worker.py); None: the shared queue, as a worker that
        polls no queue of its own (an in-process test worker) holds its files on the queue it polls."""
        self.sn = sn
        self.settings = settings
        self.secrets = secrets or NamedSecrets([], {})
        self.pipeline = pipeline or PipelineWorker(task_queue=settings.task_queue)

    def _config(self, ref: ConfigRef) -> ReconcileConfig:
        return worker_config(self.settings, self.secrets, ref)

    @activity.defn(name=calls.RESOLVE_RECONCILE.name)
    async def resolve_config(self, ref: ConfigRef) -> ReconcilePlan:
        return ReconcilePlan.of(self._config(ref), ref, self.settings.task_queue)

    def _store(self) -> RunStore:
        info = activity.info()
        return RunStore(self.settings.reconcile_state_dir, run_key(info.workflow_id or "", info.workflow_run_id or ""))

    # -- the pipeline's worker -------------------------------------------------------------------------------------
    @activity.defn(name=calls.CLAIM_PIPELINE_WORKER.name)
    async def claim_pipeline_worker(self) -> PipelineWorker:
        """This worker takes the run's pipeline: its files will live here, and the workflow sends every stage that
        touches them to the queue answered (Temporal's worker-specific task queue pattern)."""
        await asyncio.to_thread(prune, self.settings.reconcile_state_dir)
        return self.pipeline

    @activity.defn(name=calls.STORE_SCAN_CHUNK.name)
    async def store_scan_chunk(self, chunk: RecordChunk) -> int:
        """A chunk of a site worker's scan, kept with the run's other scans (activities/reconcile/transfer.py)."""
        records = transfer.unpack(chunk)
        return await asyncio.to_thread(self._store().save_scan_chunk, chunk.source, chunk.index, records)

    # -- outside history -------------------------------------------------------------------------------------------
    @activity.defn(name=calls.SCAN_SOURCE.name)
    async def scan_source(self, request: ScanRequest) -> ScanReport:
        config = self._config(request.config)
        source = worker_source(self.settings, config, request.config, request.source, request.source_digest)
        records = await inventory.scan_in_activity(source, self.secrets)
        count = await asyncio.to_thread(self._store().save_scan, source.name, records)
        return ScanReport(source=source.name, kind=source.kind, ok=True, records=count)

    @activity.defn(name=calls.PULL_CMDB.name)
    async def pull_cmdb(self, request: PullRequest) -> PullReport:
        fields = sorted(set(drift.CMDB_FIELDS) | set(request.key_fields))
        cis: list[dict[str, Any]] = []
        async with paced_heartbeats():
            await self._pull(request, fields, cis)
        by_class = Counter(str(ci.get("sys_class_name", "")) for ci in cis)
        await asyncio.to_thread(self._store().save_cmdb, cis)
        return PullReport(cis=len(cis), by_class=dict(by_class))

    async def _pull(self, request: PullRequest, fields: list[str], cis: list[dict[str, Any]]) -> None:
        scope = request.scope
        # One query per class, on the class's own table: a query on cmdb_ci answers only cmdb_ci's fields (no `os`).
        for ci_class in dict.fromkeys(scope.classes):
            query = Query().eq("sys_class_name", ci_class)
            if scope.name_prefix:
                query = query.startswith("name", scope.name_prefix)
            async with servicenow_errors():
                async for page in self.sn.iter_pages(
                    ci_class,
                    query.order_by("sys_id"),
                    fields=fields,
                    exclude_reference_link=True,
                    page_size=scope.page_size,
                    read_ahead=PULL_READ_AHEAD,
                ):
                    cis.extend(page.records)

    @activity.defn(name=calls.DIFF.name)
    async def diff(self, request: DiffRequest) -> DiffReport:
        store = self._store()
        config = self._config(request.config)
        chunks = {scan.source: scan.chunks for scan in request.scans}

        def compute() -> DiffReport:
            delta = drift.diff(config, request.scans, store.cmdb(), lambda name: store.scan(name, chunks.get(name, 0)))
            found = drift.batches(delta, config.batch_bytes)
            store.save_batches(found)
            delta.report.batches = len(found)
            return delta.report

        async with paced_heartbeats():
            return await asyncio.to_thread(compute)  # CPU-bound on 100k rows: keep the loop free to heartbeat

    @activity.defn(name=calls.LOAD_BATCH.name)
    async def load_batch(self, index: int) -> DeltaBatch:
        return await asyncio.to_thread(self._store().batch, index)

    @activity.defn(name=calls.CLEAN_UP.name)
    async def clean_up(self) -> None:
        await asyncio.to_thread(self._store().remove)

    # -- writes ----------------------------------------------------------------------------------------------------
    @activity.defn(name=calls.APPLY_BATCH.name)
    async def apply_batch(self, request: ApplyRequest) -> BatchOutcome:
        """One batch, each item exactly once however often Temporal retries it (activities/reconcile/writes.py)."""
        info = activity.info()
        run_url = self.settings.execution_url(info.workflow_id or "", info.workflow_run_id)
        async with (
            paced_heartbeats()
        ):  # a lost worker is noticed within the heartbeat timeout, however slow one write is
            return await BatchWriter(self.sn, self._config(request.config), run_url).apply(request.batch)

    # -- report ----------------------------------------------------------------------------------------------------
    @activity.defn(name=calls.POST_SUMMARY.name)
    async def post_summary(self, summary: ReconcileSummary) -> str:
        posted = await post_to_slack(self.settings, summary_text(summary))
        return "posted" if posted else "not configured"


def summary_text(summary: ReconcileSummary) -> str:
    """The Slack message: one line of totals, one per source and class, then samples."""
    mode = "DRY RUN (nothing written) " if summary.dry_run else ""
    lines = [
        f"*CMDB reconciliation {summary.run}* {mode}",
        f"{summary.cmdb_cis} declared CIs; created {summary.created_total} (marked for review), "
        f"opened {summary.incidents_total} incident(s), {summary.unknown_total} unknown, "
        f"{sum(t.drifted for t in summary.tallies)} drifted",
    ]
    for source in summary.sources:
        state = f"{source.records} live" if source.ok else f"FAILED: {source.error[:200]}"
        lines.append(f"• source {source.source} ({source.kind}): {state}")
    for t in summary.tallies:
        lines.append(
            f"  {t.source} / {t.ci_class}: matched {t.matched}, new {t.new}, missing {t.missing}, "
            f"unknown {t.unknown}, drifted {t.drifted}, created {t.created}, incidents {t.incidents}"
        )
    for title, names in (
        ("created", summary.created),
        ("incidents", summary.incidents),
        ("unknown", summary.unknown),
        ("drifted", summary.drifted),
        ("failed", summary.failed),
    ):
        if names:
            lines.append(f"{title}: " + ", ".join(names))
    return "\n".join(lines)
