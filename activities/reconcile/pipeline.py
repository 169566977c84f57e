"""Reconciliation activities: scan, pull, diff (all outside history), then apply the delta batch by batch.

Every write is safe to retry: a CI is looked up by its key before it is created, and an incident by its
correlation_id (`drift-<ci sys_id>`) among open incidents before another is opened. A request the instance refuses
for good (400/403/404) fails that one item, named in the outcome, not the whole batch.

The config is the worker's own (CHANGELOOP_RECONCILE), read by name in every activity and refused when its digest is
not the one the run resolved: a request names a source, it never describes one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import servicenow_errors
from activities.heartbeat import heartbeats
from activities.incident.triage import Router
from activities.reconcile import drift, inventory
from activities.reconcile.store import RunStore, run_key
from activities.slack import post_to_slack
from config.reconcile import DriftMode, ReconcileConfig, ReconcileConfigError, config_digest, load_named_config
from config.secrets import NamedSecrets, SecretsError
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.cmdb import ConfigurationItem
from servicenow.incident import IncidentState
from servicenow.query import Query
from workflows import calls
from workflows.reconcile.models import (
    RECONCILE_CONFIG_CHANGED,
    ApplyRequest,
    BatchOutcome,
    ConfigRef,
    Created,
    DeltaBatch,
    DiffReport,
    DiffRequest,
    DriftedCi,
    MissingCi,
    NewCi,
    Opened,
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
        config, batch, outcome = self._config(request.config), request.batch, BatchOutcome()
        router = Router(self.sn, config.routing)
        limit = asyncio.Semaphore(config.concurrency)

        async def guarded(name: str, work: Awaitable[None]) -> None:
            async with limit:
                try:
                    async with servicenow_errors():
                        await work
                except ApplicationError as exc:
                    if not exc.non_retryable:
                        raise  # 429 / 5xx / timeout: Temporal retries the batch; look-ups make that safe
                    outcome.failed.append(f"{name}: {exc}")
                activity.heartbeat()

        # One query per batch (per IN chunk) instead of one per item: a real instance rate-limits the integration
        # user, and the sandbox scans its table per query. Done at apply time, so a retried batch sees its own writes.
        async with servicenow_errors():
            checked, existing = await self._existing_keys(batch.new)
            open_ids = await self._present(
                "incident",
                "correlation_id",
                [f"drift-{m.sys_id}" for m in batch.missing],
                lambda q: q.not_in("state", CLOSED_INCIDENT),
            )
            await router.prefetch([m.sys_id for m in batch.missing if not m.busines_criticality])
        jobs = [guarded(i.record.name, self._create(i, config, outcome, checked, existing)) for i in batch.new]
        jobs += [guarded(i.name, self._open_incident(i, router, outcome, open_ids)) for i in batch.missing]
        jobs += [guarded(i.name, self._write_drift(i, config, outcome)) for i in batch.drifted]
        await asyncio.gather(*jobs)
        return outcome

    async def _present(
        self, table: str, field: str, values: list[str], narrow: Callable[[Query], Query] = lambda q: q
    ) -> set[str]:
        """Which of `values` some record of `table` holds in `field` (values with ',' can't be in an IN list)."""
        found: set[str] = set()
        usable = sorted({v for v in values if v and "," not in v and "^" not in v and "\n" not in v})
        for start in range(0, len(usable), LOOKUP_CHUNK):
            query = narrow(Query().in_(field, usable[start : start + LOOKUP_CHUNK]))
            async for page in self.sn.iter_pages(table, query, fields=[field], page_size=LOOKUP_CHUNK * 2):
                found |= {str(r.get(field, "")) for r in page.records}
        return found

    async def _existing_keys(self, items: list[NewCi]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """(keys checked in bulk, keys found) as (key field, key) pairs."""
        by_field: dict[str, list[str]] = {}
        for item in items:
            if item.record.key and "," not in item.record.key:
                by_field.setdefault(item.key_field, []).append(item.record.key)
        checked: set[tuple[str, str]] = set()
        found: set[tuple[str, str]] = set()
        for key_field, keys in by_field.items():
            checked |= {(key_field, k) for k in keys}
            found |= {(key_field, k) for k in await self._present("cmdb_ci", key_field, keys)}
        return checked, found

    async def _create(
        self,
        item: NewCi,
        config: ReconcileConfig,
        outcome: BatchOutcome,
        checked: set[tuple[str, str]],
        existing: set[tuple[str, str]],
    ) -> None:
        record = item.record
        identity = (item.key_field, record.key)
        if identity in existing or (identity not in checked and await self._existing_ci(item)):
            outcome.already_in_cmdb += 1
            return
        body = {
            "name": record.name,
            "ip_address": record.ip,
            "os": record.os,
            item.key_field: record.key,
            "install_status": "1",
            "discovery_source": f"{config.discovery_source}:{record.source}",
            config.review_field: config.review_value,
        }
        body |= {k: v for k, v in record.attributes.items() if k in config.copy_attributes and k not in body}
        created = await self.sn.create(record.ci_class, {k: v for k, v in body.items() if v}, fields=["sys_id"])
        outcome.created.append(
            Created(name=record.name, sys_id=str(created["sys_id"]), source=record.source, ci_class=record.ci_class)
        )

    async def _existing_ci(self, item: NewCi) -> bool:
        record = item.record
        if not record.key:
            query = Query().eq("name", record.name).eq("sys_class_name", record.ci_class)
            return await self.sn.first("cmdb_ci", query, fields=["sys_id"]) is not None
        found = await self.sn.first(
            "cmdb_ci", Query().eq(item.key_field, record.key), fields=["sys_id", item.key_field]
        )
        # An instance ignores a clause on a field it lacks and answers any row: trust only a row that carries the key.
        return found is not None and str(found.get(item.key_field, "")) == record.key

    async def _open_incident(self, item: MissingCi, router: Router, outcome: BatchOutcome, open_ids: set[str]) -> None:
        correlation = f"drift-{item.sys_id}"
        if correlation in open_ids:
            outcome.incidents_already_open += 1
            return
        routing = await router.route(
            ConfigurationItem(
                sys_id=item.sys_id,
                name=item.name,
                busines_criticality=item.busines_criticality,
                support_group=item.support_group,
                managed_by_group=item.managed_by_group,
            )
        )
        info = activity.info()
        url = self.settings.execution_url(info.workflow_id or "", info.workflow_run_id)
        body = {
            "short_description": f"CMDB drift: {item.name} ({item.ci_class}) not found in live infrastructure",
            "description": (
                f"The CMDB declares {item.name} ({item.ci_class}, sys_id {item.sys_id}) but none of the sources that "
                f"cover its class saw it: {', '.join(item.sources)}.\nEither the host is gone (retire the CI) or it "
                f"is unreachable (investigate).\nReconciliation run: {url}"
            ),
            "cmdb_ci": item.sys_id,
            "impact": routing.impact,
            "urgency": routing.urgency,
            "assignment_group": routing.assignment_group,
            "correlation_id": correlation,
            "correlation_display": "changeloop",
        }
        created = await self.sn.create("incident", body, fields=["number"])
        outcome.incidents.append(
            Opened(
                number=str(created["number"]),
                ci=item.name,
                source=item.sources[0],
                ci_class=item.ci_class,
                assignment_group=routing.assignment_group,
            )
        )

    async def _write_drift(self, item: DriftedCi, config: ReconcileConfig, outcome: BatchOutcome) -> None:
        if config.drift == DriftMode.UPDATE:
            body = {ci_field: live for ci_field, (_, live) in item.changes.items()}
        else:
            lines = [f"{f}: CMDB {old!r}, {item.source} sees {new!r}" for f, (old, new) in item.changes.items()]
            body = {config.note_field: "changeloop reconciliation found attribute drift:\n" + "\n".join(lines)}
        await self.sn.update(item.ci_class, item.sys_id, body, fields=["sys_id"])
        outcome.drift_written += 1

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
