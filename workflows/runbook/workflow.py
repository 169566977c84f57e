"""RunbookWorkflow: run a runbook's steps in order, one activity each, writing progress to the ticket.

The run names its runbook and the digest of the registry entry it resolved; the first activity asks the worker for
the entry (refused when unknown or changed), and each step runs by reference: the worker looks it up in its own
registry (activities/runbook/steps.py). Nothing in this workflow's input can add a step or change a command.

Work notes are batched: the first note after a quiet spell goes out at once, notes of fast steps that follow are
held until `note_batch_size` of them are pending or `note_batch_seconds` have passed, so a runbook of many fast
steps does not write one journal entry per step. The parent change workflow gets a `step_progress` signal per
step for its status query.

A destructive runbook holds its approval gate (workflows/gate/gate.py) before its first step, whatever started it.

Since TICKET_WATCH (README "Windows, holds and conflicts"):
- Between steps, and while it waits at its gate, the run consults its ticket watch (workflows/change/watch.py): on
  hold it pauses before the next step until released; canceled (or closed) in ServiceNow, or past its planned end,
  it starts no further step and returns a result that says why (`stopped`), which the change closes by.
- The runbook's `timeout` bounds the time its steps run, enforced here: each step may take at most what is left of
  it (its activity's schedule-to-close). Work notes are written beside the steps, not between them, so a ServiceNow
  outage delays the notes (and the close), never a step, and never counts against the timeout.
- Cancelled, it marks the step that was running `canceled` (a command step is killed: its activity is cancelled and
  the process with it; a step declared `on_cancel: finish` runs to its end first and keeps its own outcome), tells
  its parent, writes its pending notes, and ends CANCELED: no incident, and nothing runs after that.

Evidence on the ticket (README "Evidence on the ticket"): a runbook with `tasks: per_step` opens one change task per
step when the step starts and closes it with the step's outcome; every step's output is kept here (workflows/
runbook/log.py) and attached to the change as `<workflow id>.log` when the run ends - succeeded, failed, stopped or
canceled (then as cleanup a second cancel cannot cut). Both behind patches: histories recorded before replay as they
ran.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.cancellation import cancel_requested, canceled_by_request, passes_through, uncancellable
    from workflows.change.models import SIGNAL_TICKET_CHANGED, NoteInput, TicketEvent, Waiting
    from workflows.change.watch import TICKET_WATCH, Stop, TicketWatch, pass_gate_watched
    from workflows.evidence import writes
    from workflows.evidence.models import AttachInput, OpenTaskInput, TaskOutcome, TaskRef, task_key
    from workflows.evidence.text import excerpt
    from workflows.failures import error_type, failure_message, root_cause
    from workflows.flow.models import FlowName
    from workflows.gate.gate import Gate, GateHolder
    from workflows.incident.models import FailureReport
    from workflows.incident.reporting import step_attempts, step_report
    from workflows.runbook.log import StepLog, keep, log_file_name, render
    from workflows.runbook.models import (
        INLINE_RUNBOOK_REFUSED,
        REGISTRY_CHANGED,
        RUNBOOK_BY_REFERENCE,
        SIGNAL_STEP_PROGRESS,
        STEP_LOG_PATCH,
        STEP_TASKS_PATCH,
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


def step_failure_output(error: ActivityError) -> str:
    """The output a failed step returned with its failure (activities/runbook/steps.py puts it in the details)."""
    cause = error.cause
    details = cause.details if isinstance(cause, ApplicationError) else ()
    if details and isinstance(details[0], dict) and isinstance(details[0].get("output"), str):
        return str(details[0]["output"])
    return ""


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
        self._watching = False  # TICKET_WATCH: decided first thing in run()
        self._watch: TicketWatch | None = None
        self._hinted = False
        self._writing: asyncio.Task[None] | None = None  # the work note being written beside the steps
        self._step_time = timedelta(0)
        self._running: tuple[str, datetime] | None = None  # the step in flight: name, start
        # Evidence: each step's output for the log, the task of the step in flight (its request until it is open).
        self._logs: list[StepLog] = []
        self._step_task: OpenTaskInput | None = None
        self._step_task_ref: TaskRef | None = None
        self._step_close: tuple[TaskOutcome, str] | None = None  # how the step in flight's task is to be closed
        self._tasks_on: bool | None = None

    @workflow.query(name="status")
    def status(self) -> RunbookStatus:
        return self._status

    @workflow.signal(name=SIGNAL_TICKET_CHANGED)
    def ticket_changed(self, event: TicketEvent) -> None:
        """ServiceNow's hint, forwarded by the change: the watch reads the ticket before the next step."""
        self._hinted = True
        if self._watch is not None:
            self._watch.hint()

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
        self._watching = workflow.patched(TICKET_WATCH)
        # Every `decide` gets its answer before the run ends (not in a `finally`: an evicted run must not await).
        try:
            result = await self._run_steps(run)
        except (asyncio.CancelledError, ActivityError, ChildWorkflowError) as error:
            if not canceled_by_request(error):
                raise
            if not self._watching:  # as recorded before TICKET_WATCH: the evidence only, then the cancel ends it
                await uncancellable(self._wind_down_evidence(run))
                raise
            await uncancellable(self._wind_down(run))
            self._gate.close("the runbook was canceled")
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise asyncio.CancelledError(workflow.cancellation_reason() or "canceled") from None
        except ApplicationError as error:
            failed = next((s.name for s in self._status.steps if s.outcome == StepOutcome.FAILED), "")
            await self._attach_log(run, f"FAILED at step '{failed}'" if failed else f"FAILED ({error.type})")
            self._gate.close("the runbook has ended")
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        await self._attach_log(run, f"stopped: {result.stopped}" if result.stopped else "succeeded")
        self._gate.close("the runbook has ended")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _run_steps(self, run: RunbookRun) -> RunbookResult:
        plan = self._plan = await resolve_plan(run)
        self._status.progress = Progress(total=len(plan.steps))
        if plan.destructive:
            self._status.gate = self._gate.state
        if self._watching and run.change_sys_id:
            self._watch = TicketWatch(
                run.change_sys_id, window=plan.window != "ignore", note=self._watch_note, mirror=self._mirror_wait
            )
            await self._watch.begin(run.ticket)
            if self._hinted:
                self._watch.hint()
        gate = await pass_gate_watched(self._gate, plan, self._watch)
        if isinstance(gate, Stop):
            return await self._stopped(run, plan, 0, gate)
        if gate is not None:
            self._status.step, self._status.result = "", gate
            return gate
        await self._resolve_site(run)
        for index, step in enumerate(plan.steps):
            if self._watch is not None and (stop := await self._watch.guard(f"step '{step.name}'")) is not None:
                return await self._stopped(run, plan, index, stop)
            record = await self._run_step(run, plan, index, step)
            self._status.record_step(record)
            await self._report(run, record)
            if record.outcome == StepOutcome.FAILED:
                await self._flush(run, drain=True)
                result = RunbookResult(
                    runbook=plan.name,
                    succeeded=False,
                    steps=self._status.steps,
                    failed_step=step.name,
                    error=record.detail,
                    failed_output=self._logs[-1].output if self._logs else "",
                )
                self._status.result = result
                raise ApplicationError(
                    f"runbook {plan.name!r} failed at step {step.name!r}: {record.detail}",
                    result.model_dump(mode="json"),
                    type="RunbookFailed",
                    non_retryable=True,
                )
            if self._watching and cancel_requested():
                # A step that finishes whatever (on_cancel: finish) ended after a cancel request: nothing more runs.
                raise asyncio.CancelledError(workflow.cancellation_reason() or "canceled")
        await self._flush(run, drain=True)
        result = RunbookResult(runbook=plan.name, succeeded=True, steps=self._status.steps)
        self._status.step = ""
        self._status.result = result
        return result

    async def _stopped(self, run: RunbookRun, plan: RunbookPlan, index: int, stop: Stop) -> RunbookResult:
        """The watch said stop before step `index`: nothing further runs; the change closes by the result."""
        left = [s.name for s in plan.steps[index:]]
        error = f"{stop.reason}; not run: {', '.join(repr(n) for n in left)}" if left else stop.reason
        await self._flush(run, drain=True)
        result = RunbookResult(
            runbook=plan.name, succeeded=False, steps=self._status.steps, error=error, stopped=stop.kind
        )
        self._status.step, self._status.result = "", result
        return result

    async def _wind_down(self, run: RunbookRun) -> None:
        """After a cancel request (uncancellable): the step in flight is marked canceled, the parent told, the notes
        written."""
        if self._running is not None:
            name, started = self._running
            self._running = None
            record = StepRecord(
                name=name,
                outcome=StepOutcome.CANCELED,
                started_at=started,
                ended_at=workflow.now(),
                detail="canceled while running: the step's activity was cancelled (a command is killed)",
            )
            self._status.record_step(record)
            if self._plan is not None:
                index = next((i for i, s in enumerate(self._plan.steps) if s.name == name), len(self._logs))
                keep(self._logs, StepLog(index=index, record=record, output=""))
            await self._report(run, record)
        self._status.step = ""
        await self._flush(run, drain=True)
        await self._wind_down_evidence(run)

    def _mirror_wait(self, waiting: Waiting | None) -> None:
        self._status.waiting = waiting

    async def _watch_note(self, text: str) -> None:
        self._pending_notes.append(text)
        await self._flush(self._run, force=True)

    async def _resolve_site(self, run: RunbookRun) -> None:
        """Steps act on the run's `{host}`: they run on the task queue of that CI's site (workflows/site/models.py)."""
        host = run.variables.get("host", "")
        if host and workflow.patched(SITE_ROUTING_PATCH):
            self._route = await calls.RESOLVE_SITE(SiteQuery(ci_name=host))

    async def _run_step(self, run: RunbookRun, plan: RunbookPlan, index: int, step: StepPlan) -> StepRecord:
        """The step's activity, with its change task around it (evidence) and its output kept for the log."""
        self._status.step = step.name
        await self._open_step_task(run, plan, index, step)
        record, output, canceled = await self._execute_step(run, plan, index, step)
        await self._step_done(index, record, output, canceled=canceled)
        return record

    async def _execute_step(
        self, run: RunbookRun, plan: RunbookPlan, index: int, step: StepPlan
    ) -> tuple[StepRecord, str, bool]:
        """The step's record, its output and whether a cancel request cut it (before TICKET_WATCH; since, a cancel
        request is raised to the run's wind-down)."""
        started = workflow.now()
        request = StepInput(runbook=plan.name, digest=plan.digest, index=index, name=step.name, variables=run.variables)
        run_step = calls.RUN_STEP.narrowed(
            timeout=step.timeout, heartbeat=step.heartbeat_timeout, retry=calls.attempts(step.retries + 1)
        )
        left = plan.timeout - self._step_time
        try:
            if not self._watching:
                output = await run_step(request, task_queue=self._route.task_queue)
            else:
                if left <= timedelta(0):
                    return self._timed_out(step, started, plan), "", False
                # The runbook's timeout bounds step time: this step may use what is left of it, retries included.
                # Cancelled, the run waits until the step has stopped (its command killed), not only asked to.
                bounded = run_step.narrowed(
                    total=left, cancellation=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
                )
                running = asyncio.ensure_future(bounded(request, task_queue=self._route.task_queue))
                self._running = (step.name, started)
                try:
                    if step.on_cancel == "finish":
                        try:
                            output = await asyncio.shield(running)
                        except asyncio.CancelledError:
                            output = await uncancellable(running)  # never cut in half; the run stops after it
                    else:
                        output = await running
                finally:
                    self._step_time += workflow.now() - started
                self._running = None
        except ActivityError as error:
            if self._watching and canceled_by_request(error):
                raise
            self._running = None
            if self._watching and workflow.now() - started >= left:
                return self._timed_out(step, started, plan, failure_message(error)), step_failure_output(error), False
            failed = StepRecord(
                name=step.name,
                outcome=StepOutcome.FAILED,
                started_at=started,
                ended_at=workflow.now(),
                detail=failure_message(error),
                activity=error.activity_type,
                error_type=error_type(root_cause(error)),
                attempts=step_attempts(error, step),
            )
            return failed, step_failure_output(error), canceled_by_request(error)
        succeeded = StepRecord(
            name=step.name,
            outcome=StepOutcome.SUCCEEDED,
            started_at=started,
            ended_at=workflow.now(),
            detail=output.output.strip()[-300:],
        )
        return succeeded, output.output, False

    # -- evidence: a task per step, the steps' log on the change ----------------------------------------------------
    def _tasks_wanted(self, run: RunbookRun, plan: RunbookPlan) -> bool:
        if self._tasks_on is None:
            self._tasks_on = bool(plan.tasks_per_step and run.change_sys_id) and workflow.patched(STEP_TASKS_PATCH)
        return self._tasks_on

    async def _open_step_task(self, run: RunbookRun, plan: RunbookPlan, index: int, step: StepPlan) -> None:
        if not self._tasks_wanted(run, plan):
            return
        workflow_id = workflow.info().workflow_id
        self._step_task = OpenTaskInput(
            change_sys_id=run.change_sys_id,
            key=task_key(workflow_id, step.name),
            short_description=f"{plan.name}: step {index + 1}/{len(plan.steps)} '{step.name}'",
            description=(
                f"changeloop runs step {index + 1} of {len(plan.steps)}, '{step.name}', of runbook '{plan.name}'"
                + (f" for {run.change_number}" if run.change_number else "")
                + f".\nExecution: {workflow_id}"
            ),
            assignment_group=plan.task_group,
            ci_name=run.variables.get("host", ""),
        )
        self._step_task_ref = await writes.open_task(self._step_task)

    async def _step_done(self, index: int, record: StepRecord, output: str, *, canceled: bool = False) -> None:
        """Keep the step's output for the log, and close its task with the outcome and the output's end."""
        keep(self._logs, StepLog(index=index, record=record, output=output))
        if self._step_task is None:
            return
        seconds = ((record.ended_at or record.started_at) - record.started_at).total_seconds()
        if record.outcome == StepOutcome.SUCCEEDED:
            outcome, words = TaskOutcome.COMPLETE, f"Step '{record.name}' succeeded in {seconds:.1f} s."
        else:
            outcome = TaskOutcome.INCOMPLETE
            why = "canceled while it ran" if canceled else "FAILED"
            words = f"Step '{record.name}' {why} after {seconds:.1f} s: {record.detail}"
        notes = f"{words}\nExecution: {workflow.info().workflow_id}"
        if output.strip():
            notes += f"\n\nOutput (end; the full output is in {log_file_name(workflow.info().workflow_id)}):\n"
            notes += excerpt(output)
        self._step_close = (outcome, notes)
        await self._close_step_task()

    async def _close_step_task(self) -> None:
        """Close the task of the step in flight with `_step_close`; one canceled while it was being opened is found
        (the open looks its key up) and closed too."""
        assert self._step_close is not None
        outcome, notes = self._step_close
        ref = self._step_task_ref
        if ref is None and self._step_task is not None and outcome == TaskOutcome.CANCELED:
            ref = await writes.open_task(self._step_task)
        if ref is not None:
            await writes.close_task(ref.sys_id, outcome, notes)
        self._step_task, self._step_task_ref, self._step_close = None, None, None

    async def _attach_log(self, run: RunbookRun, ended: str) -> None:
        """Every step's output, one text file on the change; a repeated close finds it there and uploads nothing."""
        if not self._logs or not run.change_sys_id or self._plan is None or not workflow.patched(STEP_LOG_PATCH):
            return
        workflow_id = workflow.info().workflow_id
        text = render(
            runbook=self._plan.name,
            workflow_id=workflow_id,
            change_number=run.change_number,
            step_names=[step.name for step in self._plan.steps],
            logs=self._logs,
            ended=ended,
        )
        request = AttachInput(
            table="change_request", sys_id=run.change_sys_id, file_name=log_file_name(workflow_id), text=text
        )
        self._status.log = await writes.attach(request)

    async def _wind_down_evidence(self, run: RunbookRun) -> None:
        """After a cancel request (uncancellable): the task of the step in flight closed, the log attached."""
        if self._step_task is not None:
            if self._step_close is None:  # the step had not ended: it was cut by the cancel
                started = self._step_task_ref is not None
                why = "while this step ran" if started else "before this step started"
                outcome = TaskOutcome.INCOMPLETE if started else TaskOutcome.CANCELED
                self._step_close = (outcome, f"Canceled: the runbook was canceled {why}.")
            await self._close_step_task()
        await self._attach_log(run, "canceled")

    def _timed_out(self, step: StepPlan, started: datetime, plan: RunbookPlan, cause: str = "") -> StepRecord:
        detail = f"the runbook's timeout ({plan.timeout}) of step time ran out"
        return StepRecord(
            name=step.name,
            outcome=StepOutcome.FAILED,
            started_at=started,
            ended_at=workflow.now(),
            detail=f"{detail}: {cause}" if cause else detail,
            error_type="RunbookTimeout",
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

    async def _flush(self, run: RunbookRun, *, force: bool = False, drain: bool = False) -> None:
        """Write the pending notes. Since TICKET_WATCH the write goes on beside the steps (one at a time, in order);
        `drain` waits until every note is written (the run's end), `force` sends what is pending now."""
        del force  # a flush always sends what is pending; the batching decision is the caller's
        if not run.change_sys_id:
            self._pending_notes = []
            return
        if not self._watching:
            if not self._pending_notes:
                return
            text = "\n\n".join(self._pending_notes)
            self._pending_notes = []
            self._last_flush = workflow.now()
            await calls.ADD_WORK_NOTE(NoteInput(sys_id=run.change_sys_id, text=text))
            return
        while True:
            if self._writing is not None and not self._writing.done():
                if not drain:
                    return  # the next flush sends what is pending
                await self._writing
            if self._writing is not None and self._writing.done():
                self._writing.result()  # a note refused for good fails the run here, as it did when awaited
                self._writing = None
            if not self._pending_notes:
                return
            text = "\n\n".join(self._pending_notes)
            self._pending_notes = []
            self._last_flush = workflow.now()
            self._writing = asyncio.ensure_future(calls.ADD_WORK_NOTE(NoteInput(sys_id=run.change_sys_id, text=text)))
            if not drain:
                return
