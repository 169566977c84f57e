"""PatchWaveWorkflow (ID `wave-<number>`): patch every CI the CMDB relates to an application, host by host.

The shape is Temporal's sliding-window batch: one PatchHostWorkflow child per CI (`patch-<number>-<ci>`), at most
`max_parallel` at once, each reporting back with a `host_done` signal; the CMDB is read one keyset page per run and
the wave continues as new after each page, carrying a compact state (one state per CI), so a 10,000-CI wave keeps
every run's history bounded. Children are abandoned, not cancelled, when a run closes: that is what lets them
outlive the run that started them - and a host half-way through a patch finishes its rollback either way.

Every running child is watched by the run that is current, whichever run started it: the children this run
started through their handles, the ones it inherited through continue-as-new by the `watch_hosts` activity
(activities/wave/children.py), which long-polls each child's close event. A child that ends without its
`host_done` report (terminated by an operator, failed by a bug) is then settled as failed, never waited for.

Cancelled (by its parent change, `temporal workflow cancel`, the CLI) the wave is canceled, not failed: it starts
no new host, asks every running host to stop (each undoes what it half did: workflows/wave/host.py), waits until
every one of them has reported, marks the hosts it never started "not attempted", writes its summary to the
ticket and reports a `canceled` step to its parent (the summary is the step's detail: a canceled execution carries
no result), all as cleanup that a second cancel cannot interrupt, then ends CANCELED. No host is touched after
that, and no incident is opened (a cancellation is no failure).

Since TICKET_WATCH the wave consults its ticket watch (workflows/change/watch.py) before each CMDB page (reading the
ticket and ServiceNow's schedules then) and before each host it starts (the ticket only on a hint or a poll): on hold,
or blocked by a blackout, no new host starts until it may; canceled in ServiceNow, the wave winds its running hosts
down as a cancel does; past its planned end, running hosts finish (or roll back: the runbook's `window_end:
roll_back`). Either way no further host starts, the rest are "not attempted", and the wave returns why to its change
(`stopped`) instead of failing.
Evidence on the ticket: at its end (finished, stopped or canceled) the wave attaches its per-host report to the
change as CSV (`wave-<number>.csv`: every CI with its outcome, detail and execution link); with `tasks: per_step` it
also files change tasks: one for the canary (opened when the first canary host starts, closed when it is judged),
one per failed or rolled-back host (opened and closed when the host reports), and one summary task (opened with the
plan, closed with the wave). Each is found again by its key, so a retry or a restart files nothing twice.

Optional canary: the first `canary` CIs run first; if any of them is not patched, nothing else starts. Failure
budget: once more than `failure_budget_percent` of the installed CIs failed or were rolled back, no new host
starts. Hosts not started are reported "not attempted". Started as a change's runbook (a RunbookRun, params
in the registry) it returns close_code successful / successful_issues, or fails so the change closes unsuccessful.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from config.runbooks import WaveParams
    from workflows import calls
    from workflows import search_attributes as sa
    from workflows.cancellation import canceled_by_request, uncancellable
    from workflows.change.models import SIGNAL_TICKET_CHANGED, NoteInput, TicketEvent, Waiting
    from workflows.change.watch import (
        CANCELED_IN_SERVICENOW,
        TICKET_WATCH,
        Stop,
        TicketWatch,
        pass_gate_watched,
    )
    from workflows.evidence import writes
    from workflows.evidence.models import AttachInput, OpenTaskInput, TaskOutcome, task_key
    from workflows.failures import failure_message
    from workflows.gate.gate import Gate, GateHolder, pass_gate
    from workflows.runbook.models import SIGNAL_STEP_PROGRESS, RunbookPlan, RunbookResult
    from workflows.runbook.workflow import resolve_plan
    from workflows.status import QUERY_STATUS, StepOutcome, StepRecord
    from workflows.wave import report
    from workflows.wave.models import (
        SIGNAL_HOST_DONE,
        CiRef,
        CiState,
        ClosedHost,
        HostOps,
        HostOutcome,
        HostReport,
        PageInput,
        PatchHostInput,
        PlanInput,
        WatchInput,
        WavePage,
        WaveRun,
        WaveState,
        WaveStatus,
        patch_host_workflow_id,
    )

FAILURES = (CiState.ROLLED_BACK, CiState.FAILED)
# Histories from before this run watched the children it inherited through continue-as-new (`_watch_inherited`).
WATCH_INHERITED_PATCH = "wave-watch-inherited-hosts"
# Histories from before the wave filed change tasks and attached its per-host CSV (issue 15).
WAVE_EVIDENCE_PATCH = "wave-evidence"
CANARY_TASK, SUMMARY_TASK = "canary", "summary"


@workflow.defn(name="PatchWaveWorkflow")
class PatchWaveWorkflow(GateHolder):
    @workflow.init
    def __init__(self, run: WaveRun) -> None:
        self._run = run
        self._state = run.state or WaveState()
        # The runbook travels by reference: its params are read when run() has resolved it (an inline entry of an
        # older history is read here already, so its status answers as it did).
        self._entry: RunbookPlan | None = run.legacy_plan() if run.inline else None
        self._params, self._params_error = WaveParams(), ""
        self._read_params()
        # Derived counters, rebuilt from the carried state in each run: cheap window and budget checks.
        self._running = sum(1 for s in self._state.states.values() if s == CiState.RUNNING)
        self._failures = sum(1 for s in self._state.states.values() if s in FAILURES)
        self._wakeups = 0
        self._starting = 0  # child starts issued but not yet accepted by the server
        self._phase = "planning" if self._state.plan is None else "rolling"
        # A destructive wave's approval gate is held once, before its plan (workflows/gate/gate.py).
        decided = "" if self._state.plan is None else "the wave's approval gate was passed in its first run"
        self._gate = Gate(ticket=run.change_sys_id, report_to=run.report_to, closed=decided)
        self._watcher: asyncio.Task[None] | None = None
        self._watching = False  # TICKET_WATCH: decided first thing in run()
        self._ticket_watch: TicketWatch | None = None
        self._hinted = False
        self._window_timer: asyncio.Task[None] | None = None
        self._evidence: bool | None = None  # decided once per run, where the first evidence write would be
        self._report_files: list[str] = []

    def _read_params(self) -> None:
        if self._entry is None:
            return
        try:
            self._params, self._params_error = WaveParams.model_validate(self._entry.params), ""
        except ValidationError as error:
            self._params, self._params_error = WaveParams(), str(error)

    # -- messages ----------------------------------------------------------------------------------------------------
    @workflow.query(name=QUERY_STATUS)
    def status(self) -> WaveStatus:
        state, number = self._state, self._run.change_number
        workflow_id = workflow.info().workflow_id
        return WaveStatus(
            number=number,
            workflow_id=workflow_id,
            url=report.link(state, workflow_id),
            application=state.plan.application if state.plan else "",
            phase=self._phase,
            target_level=self._params.target_level,
            max_parallel=self._params.max_parallel,
            canary=state.canary,
            canary_passed=state.canary_passed,
            failure_budget_percent=self._params.failure_budget_percent,
            stopped=state.stopped,
            run=state.runs,
            counts=report.counts(state),
            hosts=report.hosts(state, number),
            report=self._report_files,
        )

    @workflow.signal(name=SIGNAL_TICKET_CHANGED)
    def ticket_changed(self, event: TicketEvent) -> None:
        """ServiceNow's hint, forwarded by the change: the watch reads the ticket before the next host."""
        self._hinted = True
        if self._ticket_watch is not None:
            self._ticket_watch.hint()

    @workflow.signal(name=SIGNAL_HOST_DONE)
    def host_done(self, done: HostReport) -> None:
        state = self._state
        if state.states.get(done.ci) != CiState.RUNNING:
            return  # a repeat, or a child watcher already settled it
        state.states[done.ci] = CiState(done.outcome.value)
        self._running -= 1
        self._wakeups += 1
        if done.outcome == HostOutcome.PATCHED and not done.changed:
            state.unchanged.append(done.ci)
        if done.outcome != HostOutcome.PATCHED or not done.changed:
            state.details[done.ci] = done.detail
        state.pending_notes.append(report.host_note(state, self._run.change_number, done))
        if done.outcome in (HostOutcome.ROLLED_BACK, HostOutcome.FAILED):  # a canceled host is no failure
            self._failures += 1
            self._check_budget(done.ci)
            state.troubled.append(done.ci)  # its change task is filed by the run (`_file_host_tasks`)

    def _check_budget(self, ci: str) -> None:
        state, budget = self._state, self._params.failure_budget_percent
        if state.stopped or ci in state.canary or budget >= 100 or state.plan is None:
            return
        if self._failures * 100 > budget * max(1, state.plan.installed):
            state.stopped = (
                f"failure budget exceeded: {self._failures} of {state.plan.installed} host(s) failed or rolled "
                f"back (budget {budget:g}%)"
            )
            state.stopped_phase = "failure budget"

    # -- the run -----------------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, run: WaveRun) -> RunbookResult:
        self._watching = workflow.patched(TICKET_WATCH)
        self._watch_inherited()
        try:
            # Every run (a continued one too) resolves the entry by name and digest: nothing in the input sets params.
            self._entry = await resolve_plan(run)
            self._read_params()
            if self._params_error:
                raise ApplicationError(f"invalid wave params: {self._params_error}", type="InvalidWaveParams")
            if self._watching and run.change_sys_id:
                self._ticket_watch = TicketWatch(
                    run.change_sys_id,
                    window=self._entry.window != "ignore",
                    note=self._watch_note,
                    mirror=self._mirror_wait,
                )
                await self._ticket_watch.begin(run.ticket)
                if self._hinted:
                    self._ticket_watch.hint()
                if self._entry.window_end == "roll_back":
                    self._window_timer = asyncio.create_task(self._roll_back_at_window_end())
            if self._state.plan is None:
                gate = (
                    await pass_gate_watched(self._gate, self._entry, self._ticket_watch)
                    if self._watching
                    else await pass_gate(self._gate, self._entry)
                )
                if isinstance(gate, Stop):
                    return await self._stopped_at_gate(gate)
                if gate is not None:
                    return gate
                await self._plan()
                await self._open_wave_task(SUMMARY_TASK)
            while not self._state.exhausted and not self._state.stopped_kind:
                if self._ticket_watch is not None:
                    stop = await self._ticket_watch.guard("the next CMDB page", schedules=True, read=True)
                    if stop is not None:
                        await self._stop_by_watch(stop)
                        break
                page = await self._load_page()
                await self._start_page(page)
                if not self._state.exhausted and not self._state.stopped_kind:
                    # Sliding window + continue-as-new: children in flight keep running and report to the next run,
                    # once the server has accepted every start (a start still in flight would die with this run).
                    await workflow.wait_condition(lambda: self._starting == 0)
                    self._state.runs += 1
                    self._stop_watching()
                    self._stop_window_timer()
                    assert self._entry is not None
                    ref = self._entry.ref  # an inline entry of an older run continues by reference
                    workflow.continue_as_new(
                        run.model_copy(update={"state": self._state, "runbook": ref.name, "digest": ref.digest})
                    )
            self._phase = "draining"
            await self._wait(lambda: self._running == 0)
            if self._canary_pending():
                await self._judge_canary()
        except (asyncio.CancelledError, ActivityError, ChildWorkflowError) as error:
            if not canceled_by_request(error):
                raise
            await uncancellable(self._wind_down())
            raise
        # Every host has ended: a cancel request now changes nothing, and the summary is written either way.
        return await uncancellable(self._finish())

    async def _plan(self) -> None:
        run, params = self._run, self._params
        plan = await calls.PLAN_WAVE(
            PlanInput(
                change_sys_id=run.change_sys_id,
                application=params.application or ("" if run.change_sys_id else run.variables.get("host", "")),
                relationship_types=params.relationship_types,
                ci_classes=params.ci_classes,
            )
        )
        self._state.plan, self._state.started_at = plan, workflow.now()
        self._phase = "rolling"
        await self._note(report.plan_note(self._state, params, workflow.info().workflow_id))

    async def _load_page(self) -> WavePage:
        state, params = self._state, self._params
        assert state.plan is not None
        page = await calls.LOAD_WAVE_PAGE(
            PageInput(
                application_sys_id=state.plan.application_sys_id,
                relationship_types=params.relationship_types,
                ci_classes=params.ci_classes,
                after=state.cursor,
                size=params.page_size,
            )
        )
        state.cursor, state.exhausted = page.cursor, not page.more
        return page

    async def _start_page(self, page: WavePage) -> None:
        state = self._state
        for skipped in page.skipped:
            if skipped.name not in state.states:
                state.states[skipped.name], state.details[skipped.name] = CiState.SKIPPED, skipped.reason
                state.pending_notes.append(f"{skipped.name}: skipped - {skipped.reason}")
        for ci in page.cis:
            if ci.name not in state.states:  # the CMDB may relate a CI twice (two relationship types)
                state.states[ci.name] = CiState.PENDING
                await self._launch(ci)

    async def _launch(self, ci: CiRef) -> None:
        state, params = self._state, self._params
        if self._canary_pending() and len(state.canary) >= params.canary:
            await self._judge_canary()
        if params.canary > 0 and not state.canary and not state.stopped:
            await self._open_wave_task(CANARY_TASK)  # the canary's first host is about to start
        if not state.stopped:
            await self._wait(lambda: self._running < params.max_parallel or bool(state.stopped))
        if not state.stopped and self._ticket_watch is not None:
            stop = await self._ticket_watch.guard(f"host {ci.name}")
            if stop is not None:
                await self._stop_by_watch(stop)
        if state.stopped:
            state.states[ci.name] = CiState.NOT_ATTEMPTED
            return
        if len(state.canary) < params.canary:
            state.canary.append(ci.name)
            self._phase = "canary"
        else:
            self._phase = "rolling"
        self._start_child(ci)

    def _start_child(self, ci: CiRef) -> None:
        # Marked running before the start resolves: the child's host_done may arrive in the same activation.
        self._state.states[ci.name] = CiState.RUNNING
        self._running += 1
        self._starting += 1
        # Not awaited here: a window refill issues many starts in one workflow task instead of one per round trip.
        asyncio.create_task(self._child(ci))  # noqa: RUF006 - the workflow owns the task

    async def _child(self, ci: CiRef) -> None:
        run, params = self._run, self._params
        try:
            handle = await workflow.start_child_workflow(
                "PatchHostWorkflow",
                PatchHostInput(
                    change_number=run.change_number,
                    ci=ci,
                    target_level=params.target_level,
                    ops=HostOps(
                        timeout=params.op_timeout, heartbeat_timeout=params.heartbeat_timeout, retries=params.op_retries
                    ),
                    report_to=workflow.info().workflow_id,
                ),
                id=patch_host_workflow_id(run.change_number, ci.name),
                result_type=HostReport,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.CHANGE_NUMBER, run.change_number),
                        SearchAttributePair(sa.CMDB_CI, [ci.name]),
                    ]
                ),
            )
        except WorkflowAlreadyStartedError as error:
            self.host_done(HostReport(ci=ci.name, outcome=HostOutcome.FAILED, detail=f"not started: {error}"))
            return
        finally:
            self._starting -= 1
            self._wakeups += 1
        # A child that ends without reporting (terminated by an operator, a bug) must not hold its slot forever.
        try:
            await handle
        except ChildWorkflowError as error:
            self._settle(ClosedHost(ci=ci.name, status="ended", detail=failure_message(error.cause or error)))

    # -- children inherited through continue-as-new -----------------------------------------------------------------
    def _watch_inherited(self) -> None:
        """Watch the children an earlier run started and this one inherited still running (their handles died with
        that run): without it, one that ends without reporting would keep the wave in `draining` forever."""
        inherited = sorted(ci for ci, s in self._state.states.items() if s == CiState.RUNNING)
        if inherited and workflow.patched(WATCH_INHERITED_PATCH):
            self._watcher = asyncio.create_task(self._watch(inherited))

    async def _watch(self, cis: list[str]) -> None:
        waiting = cis
        try:
            while waiting := [ci for ci in waiting if self._state.states.get(ci) == CiState.RUNNING]:
                watched = await calls.WATCH_HOSTS(WatchInput(change_number=self._run.change_number, cis=waiting))
                for closed in watched.closed:
                    self._settle(closed)
        except (asyncio.CancelledError, ActivityError) as error:
            if not is_cancelled_exception(error):
                raise
            # Stopped before continue-as-new: the next run watches whoever still runs.

    def _stop_watching(self) -> None:
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()

    def _settle(self, closed: ClosedHost) -> None:
        """A host workflow that closed: its own report when it completed (a repeat of its signal is ignored), else
        failed, saying how it ended."""
        if closed.report is not None:
            self.host_done(closed.report)
            return
        detail = f"patch workflow ended without a report: {closed.detail or closed.status}"
        self.host_done(HostReport(ci=closed.ci, outcome=HostOutcome.FAILED, detail=detail))

    def _canary_pending(self) -> bool:
        state = self._state
        return self._params.canary > 0 and bool(state.canary) and not state.canary_passed and not state.stopped

    async def _judge_canary(self) -> None:
        state = self._state
        self._phase = "canary"
        await self._wait(lambda: all(state.states[c] != CiState.RUNNING for c in state.canary))
        bad = [c for c in state.canary if state.states[c] != CiState.PATCHED]
        started = workflow.now()
        if bad:
            state.stopped = f"canary failed on {', '.join(bad)}; no other host was started"
            state.stopped_phase = "canary"
            await self._close_wave_task(CANARY_TASK, TaskOutcome.INCOMPLETE, self._canary_notes())
            await self._report_step("canary", StepOutcome.FAILED, started, state.stopped)
            return
        state.canary_passed = True
        state.pending_notes.append(f"Canary passed ({', '.join(state.canary)}): patching the rest.")
        await self._close_wave_task(CANARY_TASK, TaskOutcome.COMPLETE, self._canary_notes())
        await self._report_step("canary", StepOutcome.SUCCEEDED, started, f"{len(state.canary)} host(s) patched")

    # -- waiting, notes, the end -------------------------------------------------------------------------------------
    async def _wait(self, done: Callable[[], bool]) -> None:
        """Wait for `done`, writing host notes as reports come in (no timers: a wave has thousands of waits)."""
        while True:
            seen = self._wakeups
            await self._flush(force=False)
            await self._file_host_tasks()
            if done():
                return
            await workflow.wait_condition(lambda seen=seen: done() or self._wakeups != seen)  # type: ignore[misc]

    async def _flush(self, *, force: bool) -> None:
        """Notes go out at once after a quiet spell, then in batches of `note_batch_size` (as in RunbookWorkflow)."""
        state, runbook = self._state, self._entry
        if not state.pending_notes or runbook is None:
            return
        quiet = state.last_flush is None or (workflow.now() - state.last_flush).total_seconds() >= (
            runbook.note_batch_seconds
        )
        if not (force or quiet or len(state.pending_notes) >= runbook.note_batch_size):
            return
        text = "\n".join(state.pending_notes)
        state.pending_notes, state.last_flush = [], workflow.now()
        await self._note(text)

    async def _note(self, text: str) -> None:
        if not self._run.change_sys_id:
            return  # a wave started on its own has no ticket
        await calls.ADD_WORK_NOTE(NoteInput(sys_id=self._run.change_sys_id, text=text))

    async def _report_step(self, name: str, outcome: StepOutcome, started: datetime, detail: str) -> None:
        """A few wave-level steps for the parent change's status and close notes (never one per host)."""
        if not self._run.report_to:
            return
        record = StepRecord(name=name, outcome=outcome, started_at=started, ended_at=workflow.now(), detail=detail)
        await workflow.get_external_workflow_handle(self._run.report_to).signal(SIGNAL_STEP_PROGRESS, record)

    async def _wind_down(self) -> None:
        """After a cancel request: no new host, every running host asked to stop and waited for, the rest not
        attempted, the summary on the ticket and a `canceled` step for the parent. Runs uncancellable."""
        state = self._state
        self._phase = "canceling"
        reason = workflow.cancellation_reason() or ""
        state.canceled = True
        state.stopped = state.stopped or ("canceled" + (f": {reason}" if reason else ""))
        state.stopped_phase = state.stopped_phase or "canceled"
        started = state.started_at or workflow.now()
        # A start still in flight becomes a running host (or a refused one): wait for the server's answer first.
        await workflow.wait_condition(lambda: self._starting == 0)
        for ci in sorted(ci for ci, s in state.states.items() if s == CiState.PENDING):
            state.states[ci] = CiState.NOT_ATTEMPTED
        running = sorted(ci for ci, s in state.states.items() if s == CiState.RUNNING)
        await asyncio.gather(*(self._cancel_host(ci) for ci in running))
        # Each host reports once it has undone its half-done work; a host that ends without reporting is settled
        # by its handle or the inherited-children watcher.
        await self._wait(lambda: self._running == 0)
        self._phase = "summarising"
        await self._flush(force=True)
        workflow_id = workflow.info().workflow_id
        for text in report.summary_notes(state, self._run.change_number, workflow_id):
            await self._note(text)
        summary = report.close_summary(state, self._run.change_number, workflow_id, self._csv_name())
        await self._file_evidence(TaskOutcome.INCOMPLETE, summary)
        await self._report_step("patch hosts", StepOutcome.CANCELED, started, summary)
        self._stop_watching()
        self._stop_window_timer()
        self._phase = "canceled"

    # -- the ticket watch (TICKET_WATCH) -----------------------------------------------------------------------------
    async def _stop_by_watch(self, stop: Stop) -> None:
        """No further host starts. Canceled in ServiceNow: the running hosts are cancelled (each undoes what it half
        did, workflows/wave/host.py); the window ended: they finish, or roll back with `window_end: roll_back`."""
        state = self._state
        if state.stopped_kind:
            return
        state.stopped_kind = stop.kind
        state.stopped = state.stopped or f"{stop.reason}; no further host was started"
        state.stopped_phase = state.stopped_phase or "patch hosts"
        assert self._entry is not None
        wind_down = stop.kind == CANCELED_IN_SERVICENOW or self._entry.window_end == "roll_back"
        await workflow.wait_condition(lambda: self._starting == 0)
        running = sorted(ci for ci, s in state.states.items() if s == CiState.RUNNING)
        state.pending_notes.append(
            f"Patch wave stopped: {state.stopped}. "
            + (
                f"Running host(s) asked to stop and undo their work: {', '.join(running)}."
                if wind_down and running
                else f"Running host(s) finish: {', '.join(running)}."
                if running
                else ""
            )
        )
        if wind_down:
            await asyncio.gather(*(self._cancel_host(ci) for ci in running))

    async def _roll_back_at_window_end(self) -> None:
        """`window_end: roll_back`: at the planned end the running hosts are cancelled (each rolls back what it
        changed), not only the next host refused."""
        assert self._ticket_watch is not None
        try:
            stop = await self._ticket_watch.window_end()
        except asyncio.CancelledError:
            return  # continue-as-new or the end: the next run keeps watching
        await self._stop_by_watch(stop)
        self._wakeups += 1

    def _stop_window_timer(self) -> None:
        if self._window_timer is not None and not self._window_timer.done():
            self._window_timer.cancel()

    async def _stopped_at_gate(self, stop: Stop) -> RunbookResult:
        """Canceled in ServiceNow while the approval gate waited: nothing was planned or started."""
        assert self._entry is not None
        return RunbookResult(runbook=self._entry.name, succeeded=False, error=stop.reason, stopped=stop.kind)

    async def _watch_note(self, text: str) -> None:
        self._state.pending_notes.append(text)
        await self._flush(force=True)

    def _mirror_wait(self, waiting: Waiting | None) -> None:
        if waiting is not None:
            self._phase = waiting.phase
        elif self._phase in ("on_hold", "blackout", "waiting_for_window", "waiting_for_reschedule"):
            self._phase = "rolling"

    async def _cancel_host(self, ci: str) -> None:
        child = workflow.get_external_workflow_handle(patch_host_workflow_id(self._run.change_number, ci))
        try:
            await child.cancel()
        except Exception as error:  # it closed meanwhile: its report (or its watcher) settles it
            workflow.logger.info("host %s was not cancelled: %s", ci, error)

    async def _finish(self) -> RunbookResult:
        state, run = self._state, self._run
        workflow_id = workflow.info().workflow_id
        self._stop_watching()  # every host has reported: a watch still waiting would outlive the wave
        self._stop_window_timer()
        self._phase = "summarising"
        await self._flush(force=True)
        for text in report.summary_notes(state, run.change_number, workflow_id):
            await self._note(text)
        counts = report.counts(state)
        summary = report.close_summary(state, run.change_number, workflow_id, self._csv_name())
        started = state.started_at or workflow.now()
        if state.stopped_kind:
            # Stopped by the ticket watch: an answer for the change to close by, not a failure (no incident).
            await self._file_evidence(TaskOutcome.INCOMPLETE, f"Stopped: {state.stopped}\n{summary}")
            self._phase = "done"
            await self._report_step("patch hosts", StepOutcome.CANCELED, started, summary)
            return RunbookResult(
                runbook=run.name,
                succeeded=False,
                stopped=state.stopped_kind,
                error=state.stopped,
                summary=summary,
                output={key: str(value) for key, value in counts.model_dump().items()},
            )
        problem = ""
        if state.stopped:
            problem = state.stopped
        elif counts.patched + counts.rolled_back + counts.failed + counts.canceled == 0:
            problem = f"no installed CI of {', '.join(self._params.ci_classes)} is related to the application"
        elif counts.patched == 0:
            problem = f"every host failed: {report.headline(counts)}"
        issues = counts.rolled_back + counts.failed + counts.canceled > 0
        if problem:
            outcome = TaskOutcome.INCOMPLETE
        else:
            outcome = TaskOutcome.COMPLETE_WITH_ISSUES if issues else TaskOutcome.COMPLETE
        await self._file_evidence(outcome, f"Stopped: {problem}\n{summary}" if problem else summary)
        self._phase = "done"
        if problem:
            step = state.stopped_phase or "patch hosts"
            if step != "canary":
                await self._report_step(step, StepOutcome.FAILED, started, problem)
            raise ApplicationError(
                f"patch wave {workflow_id} stopped: {problem}\n{summary}",
                counts.model_dump(),
                type="WaveFailed",
                non_retryable=True,
            )
        await self._report_step("patch hosts", StepOutcome.SUCCEEDED, started, report.headline(counts))
        return RunbookResult(
            runbook=run.name,
            succeeded=True,
            close_code="successful_issues" if issues else "successful",
            summary=summary,
            output={key: str(value) for key, value in counts.model_dump().items()},
        )

    # -- evidence: change tasks and the per-host CSV (README "Evidence on the ticket") -------------------------------
    def _evidence_on(self) -> bool:
        if self._evidence is None:
            self._evidence = bool(self._run.change_sys_id) and workflow.patched(WAVE_EVIDENCE_PATCH)
        return self._evidence

    def _csv_name(self) -> str:
        return report.csv_name(workflow.info().workflow_id) if self._evidence_on() else ""

    def _tasks_on(self) -> bool:
        return self._entry is not None and self._entry.tasks_per_step and self._evidence_on()

    def _task_request(self, name: str, short: str, description: str, ci_name: str = "") -> OpenTaskInput:
        assert self._entry is not None
        return OpenTaskInput(
            change_sys_id=self._run.change_sys_id,
            key=task_key(workflow.info().workflow_id, name),
            short_description=short,
            description=description,
            assignment_group=self._entry.task_group,
            ci_name=ci_name,
        )

    def _wave_task_request(self, name: str) -> OpenTaskInput:
        workflow_id, state = workflow.info().workflow_id, self._state
        link = report.link(state, workflow_id)
        if name == CANARY_TASK:
            short = f"Patch wave {workflow_id}: canary ({self._params.canary} host(s))"
            what = f"The first {self._params.canary} host(s) of patch wave {workflow_id} patch first"
            what += "; if any of them is not patched, no other host starts."
        else:
            short = f"Patch wave {workflow_id}: summary"
            what = f"Patch wave {workflow_id} to {self._params.target_level}"
            what += f" over {state.plan.application}." if state.plan else "."
        return self._task_request(name, short, f"{what}\nExecution: {link or workflow_id}")

    async def _open_wave_task(self, name: str) -> str:
        """The wave task `name` (canary, summary), opened once: its sys_id is carried through continue-as-new."""
        state = self._state
        if name not in state.tasks and self._tasks_on():
            ref = await writes.open_task(self._wave_task_request(name))
            if ref is not None:
                state.tasks[name] = ref.sys_id
        return state.tasks.get(name, "")

    async def _close_wave_task(self, name: str, outcome: TaskOutcome, notes: str) -> None:
        """Closed once; one a continued run never opened (an upgrade mid-wave) is opened now, at its first need."""
        if not self._tasks_on():
            return
        if sys_id := await self._open_wave_task(name):
            await writes.close_task(sys_id, outcome, notes)
            self._state.tasks.pop(name, None)

    def _canary_notes(self) -> str:
        state, number = self._state, self._run.change_number
        lines = [f"Canary {'passed' if state.canary_passed else 'FAILED'}: {', '.join(state.canary)}."]
        for name in state.canary:
            label = report.LABELS[state.states[name]]
            detail = report.detail(state, name)
            lines.append(f"- {name}: {label}" + (f" - {detail}" if detail else ""))
            lines.append(f"  {report.link(state, patch_host_workflow_id(number, name))}")
        return "\n".join(lines)

    async def _file_host_tasks(self) -> None:
        """A task per failed or rolled-back host, opened and closed as it reports (the host's work is over)."""
        state = self._state
        if not state.troubled:
            return
        hosts = list(state.troubled)
        if self._tasks_on():
            await asyncio.gather(*(self._host_task(ci) for ci in hosts))
        del state.troubled[: len(hosts)]

    async def _host_task(self, ci: str) -> None:
        state, number = self._state, self._run.change_number
        workflow_id = workflow.info().workflow_id
        label, detail = report.LABELS[state.states[ci]], report.detail(state, ci)
        link = report.link(state, patch_host_workflow_id(number, ci))
        request = self._task_request(
            f"host {ci}",
            f"Patch wave {workflow_id}: {ci} {label}",
            f"{ci} was {label} by patch wave {workflow_id}; a human looks at it.\nExecution: {link}",
            ci_name=ci,
        )
        if ref := await writes.open_task(request):
            notes = f"{ci}: {label}" + (f" - {detail}" if detail else "") + f"\nExecution: {link}"
            await writes.close_task(ref.sys_id, TaskOutcome.INCOMPLETE, notes)

    async def _attach_report(self) -> list[str]:
        """The per-host report as CSV on the change (in parts for a wave of many thousand CIs), once each; the
        file names."""
        if not self._evidence_on():
            return []
        workflow_id = workflow.info().workflow_id
        parts = report.csv_parts(self._state, self._run.change_number, workflow_id)
        for file_name, text in parts:
            request = AttachInput(
                table="change_request",
                sys_id=self._run.change_sys_id,
                file_name=file_name,
                text=text,
                content_type="text/csv",
            )
            self._report_files.append(await writes.attach(request))
        return [file_name for file_name, _ in parts]

    async def _file_evidence(self, outcome: TaskOutcome, summary: str) -> None:
        """At the wave's end: the hosts' tasks, the CSV, the canary's task if still open, the summary task."""
        await self._file_host_tasks()
        files = ", ".join(await self._attach_report())
        if CANARY_TASK in self._state.tasks:
            await self._close_wave_task(CANARY_TASK, TaskOutcome.INCOMPLETE, f"Not judged: {summary}")
        notes = summary + (f"\nPer-host report attached to the change: {files}" if files else "")
        await self._close_wave_task(SUMMARY_TASK, outcome, notes)
