"""Reconciliation activities: scan, pull, diff (all outside history), then apply the delta batch by batch.

Every write is safe to retry (activities/reconcile/writes.py): each create looks its natural key up right before it
writes, and a failed batch leaves no write running behind it. A request the instance refuses for good
(400/403/404) fails that one item, named in the outcome, not the whole batch.

The config is the worker's own (CHANGELOOP_RECONCILE), read by name in every activity and refused when its digest is
not the one the run resolved: a request names a source, it never describes one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import servicenow_errors
from activities.heartbeat import heartbeats
from activities.reconcile import drift, inventory
from activities.reconcile.store import RunStore, run_key
from activities.reconcile.writes import BatchWriter
from activities.slack import post_to_slack
from config.reconcile import ReconcileConfig, ReconcileConfigError, config_digest, load_named_config
from config.secrets import NamedSecrets, SecretsError
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.incident import IncidentState
from servicenow.query import Query
from workflows import calls
from workflows.reconcile.models import (
    RECONCILE_CONFIG_CHANGED,
    ApplyRequest,
    BatchOutcome,
    ConfigRef,
    DeltaBatch,
    DiffReport,
    DiffRequest,
    PullReport,
    PullRequest,
    ReconcilePlan,
    ReconcileSummary,
    ScanReport,
    ScanRequest,
)

LOOKUP_CHUNK = 100  # values per IN clause: keeps the request URL far below instance limits
CLOSED_INCIDENT = [IncidentState.RESOLVED.value, IncidentState.CLOSED.value, IncidentState.CANCELED.value]


class ReconcileActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings, secrets: NamedSecrets | None = None) -> None:
        self.sn = sn
        self.settings = settings
        self.secrets = secrets or NamedSecrets([], {})

    def _config(self, ref: ConfigRef) -> ReconcileConfig:
        """The worker's config `ref.name`; refused (never retried) when unknown, changed since the run resolved it,
        or naming a secret this worker does not list."""
        try:
            config = load_named_config(self.settings.reconcile, ref.name)
            self.secrets.check(config.secret_names(), f"reconciliation config {ref.name!r}")
        except (ReconcileConfigError, SecretsError) as exc:
            raise ApplicationError(str(exc), type=RECONCILE_CONFIG_CHANGED, non_retryable=True) from None
        if ref.digest and config_digest(config) != ref.digest:
            raise ApplicationError(
                f"reconciliation config {ref.name!r} changed since the run started: nothing more of this run is done "
                "with it; start a new run",
                type=RECONCILE_CONFIG_CHANGED,
                non_retryable=True,
            )
        return config

    @activity.defn(name=calls.RESOLVE_RECONCILE.name)
    async def resolve_config(self, ref: ConfigRef) -> ReconcilePlan:
        return ReconcilePlan.of(self._config(ref), ref)

    def _store(self) -> RunStore:
        info = activity.info()
        return RunStore(self.settings.reconcile_state_dir, run_key(info.workflow_id or "", info.workflow_run_id or ""))

    # -- outside history -------------------------------------------------------------------------------------------
    @activity.defn(name=calls.SCAN_SOURCE.name)
    async def scan_source(self, request: ScanRequest) -> ScanReport:
        source = self._config(request.config).source(request.source)
        if source is None:
            raise ApplicationError(
                f"reconciliation config {request.config.name!r} has no source {request.source!r}",
                type=RECONCILE_CONFIG_CHANGED,
                non_retryable=True,
            )
        try:
            async with heartbeats():
                records = await inventory.scan(source, self.secrets)
        except inventory.SourceError as exc:
            raise ApplicationError(
                str(exc),
                type="SourceMisconfigured" if exc.misconfigured else "SourceScanFailed",
                non_retryable=exc.misconfigured,
            ) from exc
        count = await asyncio.to_thread(self._store().save_scan, source.name, records)
        return ScanReport(source=source.name, kind=source.kind, ok=True, records=count)

    @activity.defn(name=calls.PULL_CMDB.name)
    async def pull_cmdb(self, request: PullRequest) -> PullReport:
        scope = request.scope
        fields = sorted(set(drift.CMDB_FIELDS) | set(request.key_fields))
        cis: list[dict[str, Any]] = []
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
                ):
                    cis.extend(page.records)
                    activity.heartbeat(len(cis))
        by_class = Counter(str(ci.get("sys_class_name", "")) for ci in cis)
        await asyncio.to_thread(self._store().save_cmdb, cis)
        return PullReport(cis=len(cis), by_class=dict(by_class))

    @activity.defn(name=calls.DIFF.name)
    async def diff(self, request: DiffRequest) -> DiffReport:
        store = self._store()
        config = self._config(request.config)

        def compute() -> DiffReport:
            delta = drift.diff(config, request.scans, store.cmdb(), store.scan)
            found = drift.batches(delta, config.batch_bytes)
            store.save_batches(found)
            delta.report.batches = len(found)
            return delta.report

        async with heartbeats():
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
