"""ReconcileWorkflow (ID `reconcile-<date>`, weekly schedule `changeloop-reconcile`): keep the CMDB honest.

scan every source (in parallel; a source that fails after its attempts is "failed", never fatal) -> pull the declared
CIs -> diff inside an activity -> apply the delta batch by batch (create new CIs marked for review, open one incident
per missing CI, write attribute drift if configured) -> post the summary to Slack -> answer the summary.

Inventories and the CMDB pull stay in the worker's state dir: history carries counts, the delta in batches that
each fit a payload, and the summary (whose name lists are samples; its counts are complete).

The run names its config; the worker resolves it (RESOLVE_RECONCILE: sources by name, the digest it read) and every
activity reads the config again by name and digest: nothing in this workflow's input is an argv, a URL or a header.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from config.reconcile import ReconcileConfig
    from workflows import calls
    from workflows.cancellation import passes_through
    from workflows.failures import error_type, failure_message, root_cause
    from workflows.incident.models import FailureReport
    from workflows.incident.reporting import generic_report
    from workflows.reconcile.models import (
        INLINE_CONFIG_REFUSED,
        RECONCILE_BY_REFERENCE,
        RECONCILE_CONFIG_CHANGED,
        SAMPLE_LIMIT,
        ApplyRequest,
        BatchOutcome,
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

    @staticmethod
    def _take_outcome(summary: ReconcileSummary, outcome: BatchOutcome) -> None:
        rows = {(t.source, t.ci_class): t for t in summary.tallies}
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
