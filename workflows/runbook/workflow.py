"""RunbookWorkflow: run a runbook's steps in order, one activity each, writing progress to the ticket.

Work notes are batched: the first note after a quiet spell goes out at once, notes of fast steps that follow are
held until `note_batch_size` of them are pending or `note_batch_seconds` have passed, so a runbook of many fast
steps does not write one journal entry per step. The parent change workflow gets a `step_progress` signal per
step for its status query.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from config.runbooks import Step
    from workflows import calls
    from workflows.change.models import NoteInput
    from workflows.failures import error_type, failure_message, root_cause
    from workflows.incident.models import FailureReport
    from workflows.incident.reporting import step_attempts, step_report
    from workflows.runbook.models import (
        SIGNAL_STEP_PROGRESS,
        RunbookResult,
        RunbookRun,
        RunbookStatus,
        StepInput,
    )
    from workflows.site.models import SITE_ROUTING_PATCH, SiteQuery, SiteRoute
    from workflows.status import Progress, StepOutcome, StepRecord


@workflow.defn(name="RunbookWorkflow")
class RunbookWorkflow:
    @workflow.init
    def __init__(self, run: RunbookRun) -> None:
        self._status = RunbookStatus(runbook=run.runbook.name, progress=Progress(total=len(run.runbook.steps)))
        self._run = run
        self._pending_notes: list[str] = []
        self._last_flush = workflow.now() - timedelta(days=1)
        self._route = SiteRoute()

    @workflow.query(name="status")
    def status(self) -> RunbookStatus:
        return self._status

    def failure_report(self, error: BaseException) -> FailureReport | None:
        """Only asked when this runbook runs on its own (a child's failure is its parent's to report)."""
        failed = next((s for s in self._status.steps if s.outcome == StepOutcome.FAILED), None)
        run = self._run
        host = run.variables.get("host", "")
        fields = {"production": run.runbook.production, "change_number": run.change_number}
        fields |= {"change_sys_id": run.change_sys_id, "ci_names": [host] if host else []}
        return step_report(failed, error, **fields)

    @workflow.run
    async def run(self, run: RunbookRun) -> RunbookResult:
        runbook = run.runbook
        await self._resolve_site(run)
        for step in runbook.steps:
            record = await self._run_step(run, step)
            self._status.record_step(record)
            await self._report(run, record)
            if record.outcome == StepOutcome.FAILED:
                await self._flush(run)
                result = RunbookResult(
                    runbook=runbook.name,
                    succeeded=False,
                    steps=self._status.steps,
                    failed_step=step.name,
                    error=record.detail,
                )
                self._status.result = result
                raise ApplicationError(
                    f"runbook {runbook.name!r} failed at step {step.name!r}: {record.detail}",
                    result.model_dump(mode="json"),
                    type="RunbookFailed",
                    non_retryable=True,
                )
        await self._flush(run)
        result = RunbookResult(runbook=runbook.name, succeeded=True, steps=self._status.steps)
        self._status.step = ""
        self._status.result = result
        return result

    async def _resolve_site(self, run: RunbookRun) -> None:
        """Steps act on the run's `{host}`: they run on the task queue of that CI's site (workflows/site/models.py)."""
        host = run.variables.get("host", "")
        if host and workflow.patched(SITE_ROUTING_PATCH):
            self._route = await calls.RESOLVE_SITE(SiteQuery(ci_name=host))

    async def _run_step(self, run: RunbookRun, step: Step) -> StepRecord:
        self._status.step = step.name
        started = workflow.now()
        try:
            run_step = calls.RUN_STEP.narrowed(
                timeout=step.timeout, heartbeat=step.heartbeat_timeout, retry=calls.attempts(step.retries + 1)
            )
            output = await run_step(StepInput(step=step, variables=run.variables), task_queue=self._route.task_queue)
        except ActivityError as error:
            return StepRecord(
                name=step.name,
                outcome=StepOutcome.FAILED,
                started_at=started,
                ended_at=workflow.now(),
                detail=failure_message(error),
                activity=error.activity_type,
                error_type=error_type(root_cause(error)),
                attempts=step_attempts(error, step),
            )
        return StepRecord(
            name=step.name,
            outcome=StepOutcome.SUCCEEDED,
            started_at=started,
            ended_at=workflow.now(),
            detail=output.output.strip()[-300:],
        )

    async def _report(self, run: RunbookRun, record: StepRecord) -> None:
        if run.report_to:
            parent = workflow.get_external_workflow_handle(run.report_to)
            await parent.signal(SIGNAL_STEP_PROGRESS, record)
        if not run.change_sys_id:
            return
        seconds = ((record.ended_at or record.started_at) - record.started_at).total_seconds()
        verb = "succeeded" if record.outcome == StepOutcome.SUCCEEDED else "FAILED"
        note = (
            f"Step {self._status.progress.done}/{self._status.progress.total} '{record.name}' {verb} in {seconds:.1f} s"
        )
        if record.detail:
            note += f"\n{record.detail}"
        self._pending_notes.append(note)
        quiet = (workflow.now() - self._last_flush).total_seconds() >= run.runbook.note_batch_seconds
        if quiet or len(self._pending_notes) >= run.runbook.note_batch_size:
            await self._flush(run)

    async def _flush(self, run: RunbookRun) -> None:
        if not self._pending_notes or not run.change_sys_id:
            return
        text = "\n\n".join(self._pending_notes)
        self._pending_notes = []
        self._last_flush = workflow.now()
        await calls.ADD_WORK_NOTE(NoteInput(sys_id=run.change_sys_id, text=text))
