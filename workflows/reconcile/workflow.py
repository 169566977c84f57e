"""ReconcileWorkflow (ID `reconcile-<date>`, weekly schedule `changeloop-reconcile`): keep the CMDB honest.

scan every source (in parallel; a source that fails after its attempts is "failed", never fatal) -> pull the declared
CIs -> diff inside an activity -> apply the delta batch by batch (create new CIs marked for review, open one incident
per missing CI, write attribute drift if configured) -> post the summary to Slack -> answer the summary.

Inventories and the CMDB pull stay in the state dir of one worker, which no other worker shares: the run's first
activity (any worker of the shared queue) answers that worker's own task queue, and every stage that reads or writes
the files is sent there (Temporal's worker-specific task queue pattern). When that worker is lost - a stage not
picked up, or its heartbeats stopped, within the config's `worker_lost_after` - the run starts its pipeline again on
another worker; the writes look their keys up before they create (activities/reconcile/writes.py), so what the lost
start wrote is found, not written twice. A source bound to a site is scanned by that site's worker, and its records
come through history in bounded chunks (activities/reconcile/transfer.py). History carries counts, those chunks,
the delta in batches that each fit a payload, and the summary (whose name lists are samples; its counts are
complete). Runs from before (behind `PIPELINE_ON_ONE_WORKER`) replay on the shared-state-dir path.

The run names its config; the worker resolves it (RESOLVE_RECONCILE: sources by name, the digest it read) and every
activity reads the config again by name and digest: nothing in this workflow's input is an argv, a URL or a header.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from config.reconcile import ReconcileConfig
    from workflows import calls
    from workflows.cancellation import canceled_by_request, passes_through
    from workflows.failures import error_type, failure_message, root_cause
    from workflows.incident.models import FailureReport
    from workflows.incident.reporting import generic_report
    from workflows.reconcile.models import (
        INLINE_CONFIG_REFUSED,
        PIPELINE_ON_ONE_WORKER,
        PIPELINE_STARTS,
        RECONCILE_BY_REFERENCE,
        RECONCILE_CONFIG_CHANGED,
        RECONCILE_WORKER_LOST,
        SAMPLE_LIMIT,
        ApplyRequest,
        BatchOutcome,
        ChunkRequest,
        ConfigRef,
        DiffReport,
        DiffRequest,
        PullRequest,
        ReconcileInput,
        ReconcilePlan,
        ReconcileStatus,
        ReconcileSummary,
        ScanReport,
        ScanRequest,
        SourcePlan,
    )
    from workflows.status import QUERY_STATUS


class WorkerLost(Exception):
    """A call to one worker's own queue was not picked up, or that worker stopped heartbeating, in time."""

    def __init__(self, task_queue: str, error: ActivityError) -> None:
        super().__init__(f"{task_queue}: {root_cause(error)}")
        self.task_queue = task_queue


def _lost(error: ActivityError) -> bool:
    """A schedule-to-start timeout (on a queue only one worker polls: that worker is gone) or a heartbeat timeout (the
    worker stopped mid-stage; what is retried lands on its queue again)."""
    cause = error.cause
    return isinstance(cause, ActivityTimeout) and cause.type in (TimeoutType.SCHEDULE_TO_START, TimeoutType.HEARTBEAT)


async def on_worker(call: calls.Call[Any, Any], arg: Any, task_queue: str, lost_after: timedelta) -> Any:
    """`call` on one worker's own queue; WorkerLost when that worker does not take it or stops within `lost_after`."""
    try:
        return await call.narrowed(heartbeat=lost_after, schedule_to_start=lost_after)(arg, task_queue=task_queue)
    except ActivityError as error:
        if _lost(error):
            raise WorkerLost(task_queue, error) from None
        raise


@dataclass
class Pipeline:
    """One start of a run's pipeline: the worker holding its files (its own queue), and what was written so far."""

    task_queue: str
    lost_after: timedelta

    async def stage(self, call: calls.Call[Any, Any], arg: Any) -> Any:
        return await on_worker(call, arg, self.task_queue, self.lost_after)


@dataclass
class Written:
    """What the run wrote, across the starts of its pipeline: a restarted pipeline finds its own earlier writes (a
    CI it created is in the CMDB now; an incident it opened links this run) and they are counted once."""

    keys: set[str] = field(default_factory=set)

    def first_time(self, key: str) -> bool:
        if key in self.keys:
            return False
        self.keys.add(key)
        return True


async def resolve_config(request: ReconcileInput) -> ReconcilePlan:
    """The run's config as the worker has it (sources by name, digest pinned), or the config an older version
    carried in the input when replaying its history. A new execution that carries a config is refused."""
    if request.inline:
        assert isinstance(request.config, dict)
        if workflow.patched(RECONCILE_BY_REFERENCE):
            raise ApplicationError(
                "refused: the input carries a reconciliation config; runs name their config and the worker reads "
                "its own (CHANGELOOP_RECONCILE)",
                type=INLINE_CONFIG_REFUSED,
                non_retryable=True,
            )
        return ReconcilePlan.of(ReconcileConfig.model_validate(request.config), request.ref).model_copy(
            update={"config": request.ref}
        )
    try:
        return await calls.RESOLVE_RECONCILE(request.ref)
    except ActivityError as error:
        if passes_through(error):
            raise
        raise ApplicationError(failure_message(error), type=error_type(root_cause(error)), non_retryable=True) from None


@workflow.defn(name="ReconcileWorkflow")
class ReconcileWorkflow:
    @workflow.init
    def __init__(self, request: ReconcileInput) -> None:
        self._status = ReconcileStatus()
        self._written = Written()

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> ReconcileStatus:
        return self._status

    def failure_report(self, error: BaseException) -> FailureReport | None:
        """A refused start (a config in the input, an unknown or changed config) ran nothing: no incident."""
        if isinstance(error, ApplicationError) and error.type in (INLINE_CONFIG_REFUSED, RECONCILE_CONFIG_CHANGED):
            return None
        return generic_report(error)

    @workflow.run
    async def run(self, request: ReconcileInput) -> ReconcileSummary:
        plan = await resolve_config(request)
        if workflow.patched(PIPELINE_ON_ONE_WORKER):
            return await self._run_on_one_worker(request, plan)
        return await self._run_on_shared_dir(request, plan)

    # -- the pipeline on one worker, started again on another when that worker is lost -----------------------------
    # A cancel request that surfaces as an activity's ActivityError is re-raised, never taken for a failed source or
    # Slack copy. This path is new behind PIPELINE_ON_ONE_WORKER, so it needs no patch of its own (`passes_through`):
    # a patch marker recorded inside the gathered scans would follow the workflow's cancel command, which the server
    # refuses as an invalid command sequence (the run then hangs).
    async def _run_on_one_worker(self, request: ReconcileInput, plan: ReconcilePlan) -> ReconcileSummary:
        summary = ReconcileSummary(run=workflow.info().workflow_id, dry_run=request.dry_run)
        for start in range(1, PIPELINE_STARTS + 1):
            claimed = await calls.CLAIM_PIPELINE_WORKER(None)
            summary.pipeline_workers.append(claimed.identity or claimed.task_queue)
            self._status.worker, self._status.pipeline_starts = claimed.identity, start
            pipeline = Pipeline(claimed.task_queue, plan.worker_lost_after)
            try:
                await self._pipeline(pipeline, plan, request, summary)
                break
            except WorkerLost as lost:
                workflow.logger.warning(f"reconciliation pipeline lost its worker ({lost}): starting it again")
        else:
            raise ApplicationError(
                f"the reconciliation pipeline lost its worker {PIPELINE_STARTS} times: {summary.pipeline_workers}",
                type=RECONCILE_WORKER_LOST,
                non_retryable=True,
            )
        self._status.phase = "reporting"
        try:
            await pipeline.stage(calls.CLEAN_UP, None)
        except WorkerLost:  # the worker lost now took the files with it
            pass
        except ActivityError as error:
            if canceled_by_request(error):
                raise
        try:
            summary.slack = await calls.POST_SUMMARY(summary)
        except ActivityError as error:  # the summary is still the result: Slack is a courtesy copy
            if canceled_by_request(error):
                raise
            summary.slack = f"failed: {root_cause(error)}"
        self._status.phase = "done"
        return summary

    async def _pipeline(
        self, pipeline: Pipeline, plan: ReconcilePlan, request: ReconcileInput, summary: ReconcileSummary
    ) -> None:
        self._status.phase, self._status.batches_done = "scanning", 0
        scans = await asyncio.gather(*(self._scan_on(pipeline, plan, s) for s in plan.sources))
        if any(isinstance(scan, WorkerLost) for scan in scans):  # every scan ended first: none is left behind
            raise next(scan for scan in scans if isinstance(scan, WorkerLost))
        summary.sources = [scan for scan in scans if isinstance(scan, ScanReport)]

        self._status.phase = "pulling"
        key_fields = sorted({s.key_field for s in plan.sources})
        pulled = await pipeline.stage(calls.PULL_CMDB, PullRequest(scope=plan.cmdb, key_fields=key_fields))
        summary.cmdb_cis = pulled.cis

        self._status.phase = "diffing"
        report = await pipeline.stage(calls.DIFF, DiffRequest(config=plan.config, scans=summary.sources))
        written = {(t.source, t.ci_class): (t.created, t.incidents) for t in summary.tallies}
        self._take_report(summary, report)
        for row in summary.tallies:  # what an earlier start wrote is no longer in this start's delta
            row.created, row.incidents = written.get((row.source, row.ci_class), (0, 0))

        if not request.dry_run:
            self._status.phase = "applying"
            self._status.batches_total = report.batches
            # The writes need no file: any worker of the shared queue; a lost one is noticed at its heartbeat.
            apply = calls.APPLY_BATCH.narrowed(heartbeat=plan.worker_lost_after)
            for index in range(report.batches):
                batch = await pipeline.stage(calls.LOAD_BATCH, index)
                self._take_outcome(summary, await apply(ApplyRequest(batch=batch, config=plan.config)))
                self._status.batches_done = index + 1

    async def _scan_on(self, pipeline: Pipeline, plan: ReconcilePlan, source: SourcePlan) -> ScanReport | WorkerLost:
        """The source's report (failed when it could not be read), or WorkerLost: the pipeline's worker is gone."""
        request = ScanRequest(config=plan.config, source=source.name, source_digest=source.digest)
        try:
            if source.task_queue:
                return await self._scan_at_site(pipeline, plan, source, request)
            scan = calls.SCAN_SOURCE.narrowed(timeout=source.timeout, retry=calls.attempts(source.attempts))
            report: ScanReport = await pipeline.stage(scan, request)
            return report
        except WorkerLost as lost:
            return lost
        except ActivityError as error:
            if canceled_by_request(error):
                raise
            return ScanReport(
                source=source.name, kind=source.kind, ok=False, error=str(root_cause(error)), site=source.site
            )

    async def _scan_at_site(
        self, pipeline: Pipeline, plan: ReconcilePlan, source: SourcePlan, request: ScanRequest
    ) -> ScanReport:
        """Scanned by a worker of the source's site; its chunks stored on the pipeline's worker. A site worker lost
        while its chunks are fetched: the site scans again (another of its workers), up to the source's attempts.
        No worker of the site within the source's timeout: the source failed (its CIs are unknown, never missing)."""
        scan = calls.SCAN_AT_SITE.narrowed(
            timeout=source.timeout,
            retry=calls.attempts(source.attempts),
            heartbeat=plan.worker_lost_after,
            schedule_to_start=source.timeout,
        )
        request = request.model_copy(update={"max_bytes": plan.site_transfer_bytes})
        for _ in range(source.attempts):
            found = await scan(request, task_queue=source.task_queue)
            await pipeline.stage(calls.STORE_SCAN_CHUNK, found.first)
            try:
                for index in range(1, found.report.chunks):
                    chunk = await on_worker(
                        calls.FETCH_SCAN_CHUNK,
                        ChunkRequest(source=source.name, index=index),
                        found.task_queue,
                        plan.worker_lost_after,
                    )
                    await pipeline.stage(calls.STORE_SCAN_CHUNK, chunk)
            except WorkerLost as lost:
                if lost.task_queue == pipeline.task_queue:
                    raise
                continue
            if found.task_queue:
                try:  # the site worker's copy is a cache: gone with that worker, or dropped at its next scan
                    await on_worker(calls.DROP_SITE_SCAN, source.name, found.task_queue, plan.worker_lost_after)
                except WorkerLost:
                    pass
                except ActivityError as error:
                    if canceled_by_request(error):
                        raise
            return found.report
        return ScanReport(
            source=source.name,
            kind=source.kind,
            ok=False,
            site=source.site,
            error=f"the workers of site {source.site!r} were lost {source.attempts} times while its records came",
        )

    # -- runs from before: every stage on the shared queue, the state dir shared by its workers ---------------------
    async def _run_on_shared_dir(self, request: ReconcileInput, plan: ReconcilePlan) -> ReconcileSummary:
        config = plan.config
        summary = ReconcileSummary(run=workflow.info().workflow_id, dry_run=request.dry_run)
        summary.sources = list(await asyncio.gather(*(self._scan(config, s) for s in plan.sources)))

        self._status.phase = "pulling"
        pulled = await calls.PULL_CMDB(
            PullRequest(scope=plan.cmdb, key_fields=sorted({s.key_field for s in plan.sources}))
        )
        summary.cmdb_cis = pulled.cis

        self._status.phase = "diffing"
        report = await calls.DIFF(DiffRequest(config=config, scans=summary.sources))
        self._take_report(summary, report)

        if not request.dry_run:
            self._status.phase = "applying"
            self._status.batches_total = report.batches
            for index in range(report.batches):
                batch = await calls.LOAD_BATCH(index)
                outcome = await calls.APPLY_BATCH(ApplyRequest(batch=batch, config=config))
                self._take_outcome(summary, outcome)
                self._status.batches_done = index + 1

        self._status.phase = "reporting"
        await calls.CLEAN_UP(None)
        try:
            summary.slack = await calls.POST_SUMMARY(summary)
        except ActivityError as error:  # the summary is still the result: Slack is a courtesy copy
            if passes_through(error):
                raise
            summary.slack = f"failed: {root_cause(error)}"
        self._status.phase = "done"
        return summary

    async def _scan(self, config: ConfigRef, source: SourcePlan) -> ScanReport:
        try:
            scan = calls.SCAN_SOURCE.narrowed(timeout=source.timeout, retry=calls.attempts(source.attempts))
            return await scan(ScanRequest(config=config, source=source.name))
        except ActivityError as error:
            # No pass-through needed: the scans run under a gather in the run's own task, which a cancel request
            # cancels first (and a patch marker decided here could come after the run's last command).
            return ScanReport(source=source.name, kind=source.kind, ok=False, error=str(root_cause(error)))

    @staticmethod
    def _take_report(summary: ReconcileSummary, report: DiffReport) -> None:
        summary.tallies = report.tallies
        summary.batches = report.batches
        summary.unknown_total = report.unknown_total
        summary.unknown, summary.missing, summary.new, summary.drifted = (
            report.unknown,
            report.missing,
            report.new,
            report.drifted,
        )

    def _take_outcome(self, summary: ReconcileSummary, outcome: BatchOutcome) -> None:
        rows = {(t.source, t.ci_class): t for t in summary.tallies}
        outcome.created = [c for c in outcome.created if self._written.first_time(f"ci:{c.sys_id}")]
        outcome.incidents = [i for i in outcome.incidents if self._written.first_time(f"incident:{i.number}")]
        for created in outcome.created:
            if row := rows.get((created.source, created.ci_class)):
                row.created += 1
            if len(summary.created) < SAMPLE_LIMIT:
                summary.created.append(f"{created.name} ({created.sys_id})")
        for opened in outcome.incidents:
            if row := rows.get((opened.source, opened.ci_class)):
                row.incidents += 1
            if len(summary.incidents) < SAMPLE_LIMIT:
                summary.incidents.append(f"{opened.number} for {opened.ci}")
        summary.created_total += len(outcome.created)
        summary.already_in_cmdb += outcome.already_in_cmdb
        summary.incidents_total += len(outcome.incidents)
        summary.incidents_already_open += outcome.incidents_already_open
        summary.drift_written += outcome.drift_written
        summary.failed += outcome.failed[: max(0, SAMPLE_LIMIT - len(summary.failed))]
