"""ReconcileWorkflow (ID `reconcile-<date>`, weekly schedule `changeloop-reconcile`): keep the CMDB honest.

scan every source (in parallel; a source that fails after its attempts is "failed", never fatal) -> pull the declared
CIs -> diff inside an activity -> apply the delta batch by batch (create new CIs marked for review, open one incident
per missing CI, write attribute drift if configured) -> post the summary to Slack -> answer the summary.

Inventories and the CMDB pull stay in the worker's state dir: history carries counts, the delta in batches that
each fit a payload, and the summary (whose name lists are samples; its counts are complete).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from config.reconcile import Source
    from workflows.calls import ReconcileAct
    from workflows.reconcile.models import (
        SAMPLE_LIMIT,
        ApplyRequest,
        BatchOutcome,
        DeltaBatch,
        DiffReport,
        DiffRequest,
        PullReport,
        PullRequest,
        ReconcileInput,
        ReconcileStatus,
        ReconcileSummary,
        ScanReport,
        ScanRequest,
    )
    from workflows.status import QUERY_STATUS

SERVICENOW_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=["BadRequest", "Forbidden", "NotFound", "NotAuthenticated", "ReconcileStateMissing"],
)
LOCAL_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=["ReconcileStateMissing"])


def _cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error)


@workflow.defn(name="ReconcileWorkflow")
class ReconcileWorkflow:
    @workflow.init
    def __init__(self, request: ReconcileInput) -> None:
        self._status = ReconcileStatus()

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> ReconcileStatus:
        return self._status

    @workflow.run
    async def run(self, request: ReconcileInput) -> ReconcileSummary:
        config = request.config
        summary = ReconcileSummary(run=workflow.info().workflow_id, dry_run=request.dry_run)
        summary.sources = list(await asyncio.gather(*(self._scan(s) for s in config.sources)))

        self._status.phase = "pulling"
        pulled: PullReport = await self._act(
            ReconcileAct.PULL_CMDB,
            PullRequest(scope=config.cmdb, key_fields=sorted({s.key_field for s in config.sources})),
            PullReport,
            timedelta(minutes=30),
        )
        summary.cmdb_cis = pulled.cis

        self._status.phase = "diffing"
        report: DiffReport = await self._act(
            ReconcileAct.DIFF, DiffRequest(config=config, scans=summary.sources), DiffReport, timedelta(minutes=30)
        )
        self._take_report(summary, report)

        if not request.dry_run:
            self._status.phase = "applying"
            self._status.batches_total = report.batches
            for index in range(report.batches):
                batch: DeltaBatch = await self._act(ReconcileAct.LOAD_BATCH, index, DeltaBatch, timedelta(minutes=1))
                outcome: BatchOutcome = await self._act(
                    ReconcileAct.APPLY_BATCH,
                    ApplyRequest(batch=batch, config=config),
                    BatchOutcome,
                    timedelta(minutes=30),
                )
                self._take_outcome(summary, outcome)
                self._status.batches_done = index + 1

        self._status.phase = "reporting"
        await self._act(ReconcileAct.CLEAN_UP, None, None, timedelta(minutes=1))
        try:
            summary.slack = await self._act(ReconcileAct.POST_SUMMARY, summary, str, timedelta(seconds=30))
        except ActivityError as error:  # the summary is still the result: Slack is a courtesy copy
            summary.slack = f"failed: {_cause(error)}"
        self._status.phase = "done"
        return summary

    async def _act(self, name: str, arg: object, result_type: type | None, within: timedelta) -> Any:
        return await workflow.execute_activity(
            name,
            args=[] if arg is None else [arg],
            result_type=result_type,
            start_to_close_timeout=within,
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=SERVICENOW_RETRY,
        )

    async def _scan(self, source: Source) -> ScanReport:
        try:
            report: ScanReport = await workflow.execute_activity(
                ReconcileAct.SCAN_SOURCE,
                ScanRequest(source=source),
                result_type=ScanReport,
                start_to_close_timeout=source.timeout,
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_attempts=source.attempts,
                    non_retryable_error_types=["SourceMisconfigured"],
                ),
            )
            return report
        except ActivityError as error:
            return ScanReport(source=source.name, kind=source.kind, ok=False, error=_cause(error))

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
