"""RunbookWorkflow: run a runbook's steps in order, one activity each, writing progress to the ticket.

The run names its runbook and the digest of the registry entry it resolved; the first activity asks the worker for
the entry (refused when unknown or changed), and each step runs by reference: the worker looks it up in its own
registry (activities/runbook/steps.py). Nothing in this workflow's input can add a step or change a command.

Work notes are batched: the first note after a quiet spell goes out at once, notes of fast steps that follow are
held until `note_batch_size` of them are pending or `note_batch_seconds` have passed, so a runbook of many fast
steps does not write one journal entry per step. The parent change workflow gets a `step_progress` signal per
step for its status query.

A destructive runbook holds its approval gate (workflows/gate/gate.py) before its first step, whatever started it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.cancellation import passes_through
    from workflows.change.models import NoteInput
    from workflows.failures import error_type, failure_message, root_cause
    from workflows.flow.models import FlowName
    from workflows.gate.gate import Gate, GateHolder, pass_gate
    from workflows.incident.models import FailureReport
    from workflows.incident.reporting import step_attempts, step_report
    from workflows.runbook.models import (
        INLINE_RUNBOOK_REFUSED,
        REGISTRY_CHANGED,
        RUNBOOK_BY_REFERENCE,
        SIGNAL_STEP_PROGRESS,
        RunbookPlan,
        RunbookResult,
        RunbookRun,
        RunbookStatus,
        StepInput,
        StepPlan,
    )
    from workflows.site.models import SITE_ROUTING_PATCH, SiteQuery, SiteRoute
    from workflows.status import Progress, StepOutcome, StepRecord

# Refusals of the run itself (nothing ran): no incident, the caller is told why.
REFUSED = (INLINE_RUNBOOK_REFUSED, REGISTRY_CHANGED)


async def resolve_plan(run: RunbookRun) -> RunbookPlan:
    """The run's registry entry as the worker has it (digest checked), or the entry an older version carried in the
    input when replaying its history. A new execution that carries an entry is refused: it runs nothing."""
    if run.inline:
        if workflow.patched(RUNBOOK_BY_REFERENCE):
            raise ApplicationError(
                f"refused: the input carries a runbook definition ({run.name!r}); runbooks run by reference only "
                "(name and registry digest) and the worker runs its own registry's steps",
                type=INLINE_RUNBOOK_REFUSED,
                non_retryable=True,
            )
        return run.legacy_plan()
    try:
        return await calls.RESOLVE_RUN(run.ref)
    except ActivityError as error:
        if passes_through(error):
            raise
        cause = root_cause(error)
        raise ApplicationError(failure_message(error), type=error_type(cause), non_retryable=True) from None


async def pinned(plan: RunbookPlan) -> RunbookPlan:
    """The plan with its registry digest. An answer recorded by an older worker (the whole entry, no digest) is
    resolved again by name, so a run that resolved its runbook before the upgrade still starts its child by
    reference; the replay of such a history, which has no second look-up, skips it."""
    if plan.digest or not workflow.patched(RUNBOOK_BY_REFERENCE):
        return plan
    again = await calls.RESOLVE_FLOW(FlowName(flow=plan.name))
    return again.runbook or plan


@workflow.defn(name="RunbookWorkflow")
class RunbookWorkflow(GateHolder):
    @workflow.init
    def __init__(self, run: RunbookRun) -> None:
        self._status = RunbookStatus(runbook=run.name)
        self._run = run
        self._plan: RunbookPlan | None = None
        self._gate = Gate(ticket=run.change_sys_id, report_to=run.report_to)
        self._pending_notes: list[str] = []
        self._last_flush = workflow.now() - timedelta(days=1)
        self._route = SiteRoute()

    @workflow.query(name="status")
    def status(self) -> RunbookStatus:
        return self._status

    def failure_report(self, error: BaseException) -> FailureReport | None:
        """Only asked when this runbook runs on its own (a child's failure is its parent's to report)."""
        if isinstance(error, ApplicationError) and error.type in REFUSED:
            return None  # refused before anything ran: a bad start, not a production failure
        failed = next((s for s in self._status.steps if s.outcome == StepOutcome.FAILED), None)
        run = self._run
        host = run.variables.get("host", "")
        production = self._plan.production if self._plan else None
        fields: dict[str, object] = {"production": production, "change_number": run.change_number}
        fields |= {"change_sys_id": run.change_sys_id, "ci_names": [host] if host else []}
        return step_report(failed, error, **fields)

    @workflow.run
    async def run(self, run: RunbookRun) -> RunbookResult:
        # Every `decide` gets its answer before the run ends (not in a `finally`: an evicted run must not await).
        try:
            result = await self._run_steps(run)
        except ApplicationError:
            self._gate.close("the runbook has ended")
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        self._gate.close("the runbook has ended")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _run_steps(self, run: RunbookRun) -> RunbookResult:
        plan = self._plan = await resolve_plan(run)
        self._status.progress = Progress(total=len(plan.steps))
        if plan.destructive:
            self._status.gate = self._gate.state
        if (unapproved := await pass_gate(self._gate, plan)) is not None:
            self._status.step, self._status.result = "", unapproved
            return unapproved
        await self._resolve_site(run)
        for index, step in enumerate(plan.steps):
            record = await self._run_step(run, plan, index, step)
            self._status.record_step(record)
            await self._report(run, record)
            if record.outcome == StepOutcome.FAILED:
                await self._flush(run)
                result = RunbookResult(
                    runbook=plan.name,
                    succeeded=False,
                    steps=self._status.steps,
                    failed_step=step.name,
                    error=record.detail,
                )
                self._status.result = result
                raise ApplicationError(
                    f"runbook {plan.name!r} failed at step {step.name!r}: {record.detail}",
                    result.model_dump(mode="json"),
                    type="RunbookFailed",
                    non_retryable=True,
                )
        await self._flush(run)
        result = RunbookResult(runbook=plan.name, succeeded=True, steps=self._status.steps)
        self._status.step = ""
        self._status.result = result
        return result

    async def _resolve_site(self, run: RunbookRun) -> None:
        """Steps act on the run's `{host}`: they run on the task queue of that CI's site (workflows/site/models.py)."""
        host = run.variables.get("host", "")
        if host and workflow.patched(SITE_ROUTING_PATCH):
            self._route = await calls.RESOLVE_SITE(SiteQuery(ci_name=host))

    async def _run_step(self, run: RunbookRun, plan: RunbookPlan, index: int, step: StepPlan) -> StepRecord:
        self._status.step = step.name
        started = workflow.now()
        request = StepInput(runbook=plan.name, digest=plan.digest, index=index, name=step.name, variables=run.variables)
        try:
            run_step = calls.RUN_STEP.narrowed(
                timeout=step.timeout, heartbeat=step.heartbeat_timeout, retry=calls.attempts(step.retries + 1)
            )
            output = await run_step(request, task_queue=self._route.task_queue)
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
        if not run.change_sys_id or self._plan is None:
            return
        seconds = ((record.ended_at or record.started_at) - record.started_at).total_seconds()
        verb = "succeeded" if record.outcome == StepOutcome.SUCCEEDED else "FAILED"
        note = (
            f"Step {self._status.progress.done}/{self._status.progress.total} '{record.name}' {verb} in {seconds:.1f} s"
        )
        if record.detail:
            note += f"\n{record.detail}"
        self._pending_notes.append(note)
        quiet = (workflow.now() - self._last_flush).total_seconds() >= self._plan.note_batch_seconds
        if quiet or len(self._pending_notes) >= self._plan.note_batch_size:
            await self._flush(run)

    async def _flush(self, run: RunbookRun) -> None:
        if not self._pending_notes or not run.change_sys_id:
            return
        text = "\n\n".join(self._pending_notes)
        self._pending_notes = []
        self._last_flush = workflow.now()
        await calls.ADD_WORK_NOTE(NoteInput(sys_id=run.change_sys_id, text=text))
