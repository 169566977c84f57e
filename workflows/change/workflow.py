"""ChangeRequestWorkflow (ID `change-<number>`): one approved change, from Scheduled to Closed.

load the ticket (none: outcome not_found) -> resolve its runbook -> ServiceNow says it may run (approved, Scheduled,
not on hold, a type the runbook allows; otherwise one work note and outcome not_ready) -> (no runbook: note it and
stop) -> take the ticket Scheduled -> Implement with the execution link -> run the runbook as a child, which holds
the approval gate of a destructive runbook -> close the ticket successful or unsuccessful. This workflow keeps the
gate's public messages (`approve`, `reject`, `decide`) and relays them to the child (workflows/gate/relay.py).
The ticket is the audit trail; this workflow's history is the execution record.

Histories recorded before GATE_PATCH held the gate here and read no readiness: they replay that path.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from servicenow.change_request import ChangeState, CloseCode
    from workflows import calls
    from workflows import search_attributes as sa
    from workflows.cancellation import canceled_by_request, uncancellable
    from workflows.change.models import (
        INVALID_TICKET_STATE,
        SIGNAL_TICKET_CHANGED,
        BeginInput,
        ChangeInput,
        ChangeOutcome,
        ChangeResult,
        ChangeStatus,
        ChangeTicket,
        CloseInput,
        NoteInput,
        TicketEvent,
        Waiting,
    )
    from workflows.change.readiness import CHANGE_NOT_READY, not_ready
    from workflows.change.watch import (
        CANCELED_IN_SERVICENOW,
        TICKET_WATCH,
        Stop,
        TicketWatch,
    )
    from workflows.evidence.models import CANCELED_NOTICE, CHANGE_CLOSED_NOTICE_PATCH, ChangeClosedInput
    from workflows.failures import failure_message
    from workflows.gate.models import (
        GATE_EMPTY_APPROVER,
        GATE_NOT_OPEN,
        GATE_PATCH,
        GATE_UNKNOWN_APPROVER,
        SIGNAL_APPROVE,
        SIGNAL_CHECK_APPROVALS,
        SIGNAL_GATE_CHANGED,
        SIGNAL_REJECT,
        UPDATE_DECIDE,
        ApprovalInput,
        DecideInput,
        Decision,
        GateReport,
        GateState,
        GateStatus,
    )
    from workflows.gate.relay import GateRelay
    from workflows.incident.models import FailureReport, IncidentRef
    from workflows.incident.reporting import generic_report, open_incident, step_report
    from workflows.runbook.models import (
        SIGNAL_STEP_PROGRESS,
        ResolveInput,
        RunbookPlan,
        RunbookResult,
        RunbookRun,
        runbook_workflow_id,
    )
    from workflows.runbook.workflow import pinned
    from workflows.status import QUERY_STATUS, StepOutcome, StepRecord
    from workflows.wave.models import wave_workflow_id


_CANCELED = "the change was canceled in ServiceNow"


def _state_name(value: str) -> str:
    return ChangeState(value).name.title() if value in ChangeState._value2member_map_ else value


def _error_type(error: ActivityError) -> str:
    cause = error.cause
    return cause.type or "" if isinstance(cause, ApplicationError) else ""


@workflow.defn(name="ChangeRequestWorkflow")
class ChangeRequestWorkflow:
    @workflow.init
    def __init__(self, change: ChangeInput) -> None:
        self._status = ChangeStatus(number=change.number, phase="loading")
        self._runbook: RunbookPlan | None = None
        self._ticket: ChangeTicket | None = None
        self._incident_reported = False  # the failure path opened it already: the interceptor must not again
        self._relay = GateRelay(on_change=self._mirror_gate)
        # Whether this execution holds the gate itself, as histories before GATE_PATCH did (None until the run knows).
        self._legacy: bool | None = None
        self._decision: DecideInput | None = None  # the legacy gate's decision
        # The ticket watch (workflows/change/watch.py), for executions started since TICKET_WATCH; a hint that arrives
        # before the run has made it is kept for it.
        self._watch: TicketWatch | None = None
        self._early_hint = False
        self._execution_url = ""

    # -- messages ----------------------------------------------------------------------------------------------------
    @workflow.query(name=QUERY_STATUS)
    def status(self) -> ChangeStatus:
        return self._status

    @workflow.signal(name=SIGNAL_STEP_PROGRESS)
    def step_progress(self, record: StepRecord) -> None:
        self._status.record_step(record)

    @workflow.signal(name=SIGNAL_GATE_CHANGED)
    def gate_changed(self, report: GateReport) -> None:
        self._relay.on_report(report)

    @workflow.signal(name=SIGNAL_TICKET_CHANGED)
    async def ticket_changed(self, event: TicketEvent) -> None:
        # A hint: the watch reads the ticket again (nothing in the body is taken), and the runbook or wave hears it too.
        self._status.ticket_events = [*self._status.ticket_events, event][-5:]
        if self._watch is None:
            self._early_hint = True
            return
        self._watch.hint()
        await self._watch.forward(event)

    @workflow.signal(name=SIGNAL_CHECK_APPROVALS)
    async def check_approvals(self) -> None:
        await workflow.wait_condition(lambda: self._legacy is not None)
        if not self._legacy:
            await self._relay.hint()

    @workflow.signal(name=SIGNAL_APPROVE)
    async def approve(self, approval: ApprovalInput) -> None:
        await self._take(
            DecideInput(approver=approval.approver, decision=Decision.APPROVED, comments=approval.comments)
        )

    @workflow.signal(name=SIGNAL_REJECT)
    async def reject(self, approval: ApprovalInput) -> None:
        await self._take(
            DecideInput(approver=approval.approver, decision=Decision.REJECTED, comments=approval.comments)
        )

    async def _take(self, decision: DecideInput) -> None:
        await workflow.wait_condition(lambda: self._legacy is not None)
        if self._legacy:
            self._accept_legacy_signal(decision)
        else:
            await self._relay.relay(decision)

    @workflow.update(name=UPDATE_DECIDE)
    async def decide(self, decision: DecideInput) -> GateState:
        await workflow.wait_condition(lambda: self._legacy is not None)
        if not self._legacy:
            return await self._relay.decide(decision)
        self._decision = decision
        await workflow.wait_condition(lambda: self._status.gate.status != GateStatus.WAITING)
        return self._status.gate

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        if not self._legacy:
            self._relay.validate(decision)
            return
        problem = self._legacy_gate_problem(decision, allow_early=False)
        if problem:
            raise ApplicationError(problem[1], type=problem[0], non_retryable=True)

    def _mirror_gate(self, gate: GateState) -> None:
        self._status.gate = gate
        if self._status.phase == "awaiting_approval" and gate.status == GateStatus.APPROVED:
            self._status.phase = "running"

    # -- the run -----------------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, change: ChangeInput) -> ChangeResult:
        # Decided here, first: every message handler acts on it, and old histories replay the path they took.
        self._legacy = not workflow.patched(GATE_PATCH)
        self._watching = not self._legacy and workflow.patched(TICKET_WATCH)
        # A `decide` update answered just before the end must get its answer, not a lost handler.
        try:
            result = await self._run(change)
        except (asyncio.CancelledError, ActivityError, ChildWorkflowError) as error:
            if not (self._watching and canceled_by_request(error)):
                raise
            # Cancellation is its own outcome: what runs has wound down (the child, cancelled, waited for), the
            # ticket is canceled with the reason, and the execution ends CANCELED (no incident).
            reason = workflow.cancellation_reason() or ""
            await uncancellable(
                self._close_canceled("changeloop's execution was canceled" + (f" ({reason})" if reason else ""))
            )
            self._relay.close("the change's execution was canceled")
            raise asyncio.CancelledError(workflow.cancellation_reason() or "canceled") from None
        except ApplicationError:
            self._relay.close("the change's execution has ended")
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        self._relay.close("the change's execution has ended")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _run(self, change: ChangeInput) -> ChangeResult:
        try:
            ticket = self._ticket = await calls.LOAD_CHANGE(change.number)
        except ActivityError as error:
            if self._legacy or _error_type(error) != "ChangeNotFound":
                raise
            return self._not_found(change.number)
        self._status.ticket_state = _state_name(ticket.state)
        self._status.phase = "resolving"
        choice = await calls.RESOLVE_RUNBOOK(ResolveInput(template=ticket.template, category=ticket.category))
        if not self._legacy and (reason := not_ready(ticket, choice.runbook)):
            return await self._not_ready(ticket, choice.runbook, reason)
        if choice.runbook is None:
            return await self._no_runbook(ticket)
        runbook = self._runbook = choice.runbook
        self._status.runbook = runbook.name
        self._status.progress.total = len(runbook.steps)
        if not runbook.destructive:
            self._status.gate.status = GateStatus.NOT_REQUIRED
            self._relay.close(f"runbook {runbook.name!r} is not destructive: it has no approval gate")
        workflow.upsert_search_attributes(
            [
                sa.CHANGE_NUMBER.value_set(ticket.number),
                sa.RUNBOOK.value_set(runbook.name),
                sa.CMDB_CI.value_set([ticket.cmdb_ci_name] if ticket.cmdb_ci_name else []),
            ]
        )

        if self._watching:
            self._watch = TicketWatch(
                ticket.sys_id, window=runbook.window != "ignore", note=self._note_text, mirror=self._mirror_wait
            )
            if self._early_hint:
                self._watch.hint()
            await self._watch.begin(ticket)
            stop = await self._watch.guard("it starts (Implement)", schedules=True, reschedulable=True)
            if stop is not None:
                return await self._stopped_before_implement(ticket, runbook, stop)

        self._status.phase = "starting"
        try:
            begun = await calls.BEGIN_IMPLEMENTATION(BeginInput(ticket=ticket, runbook=runbook.name))
        except ActivityError as error:
            if self._legacy or _error_type(error) != CHANGE_NOT_READY:
                raise
            return await self._not_ready(ticket, runbook, failure_message(error))  # it changed since it was read
        self._set_ticket_state(ChangeState.IMPLEMENT)
        self._execution_url = begun.execution_url

        if self._legacy and runbook.destructive and not await self._legacy_approval_gate(ticket, runbook):
            return await self._close_unapproved(ticket, runbook, begun.execution_url)

        self._status.phase = "awaiting_approval" if runbook.destructive and not self._legacy else "running"
        runbook = await pinned(runbook)
        try:
            child = await workflow.start_child_workflow(
                "RunbookWorkflow" if runbook.workflow == "steps" else runbook.workflow,
                RunbookRun(
                    runbook=runbook.name,
                    digest=runbook.digest,
                    variables=self._variables(ticket, runbook),
                    change_number=ticket.number,
                    change_sys_id=ticket.sys_id,
                    report_to=workflow.info().workflow_id,
                    ticket=self._watch.ticket if self._watch is not None else None,
                ),
                id=self._child_id(runbook, ticket.number),
                search_attributes=sa.of_change(ticket.number, [ticket.cmdb_ci_name]),
                result_type=RunbookResult,
                # Since TICKET_WATCH the runbook bounds its own step time (ticket writes never count against it).
                execution_timeout=None if self._watching else runbook.timeout,
            )
            self._relay.attach(child)
            if self._watch is not None:
                self._watch.attach(child)
            result = await child
        except ChildWorkflowError as error:
            if self._watching and canceled_by_request(error):
                raise
            if self._watching and is_cancelled_exception(error):
                # The child itself was canceled (`temporal workflow cancel` on runbook-/wave-<number>): it has wound
                # down; a cancellation is no failure, so the ticket is canceled, not closed unsuccessful.
                child_id = self._child_id(runbook, ticket.number)
                why = f"its {'wave' if child_id.startswith('wave-') else 'runbook'} {child_id} was canceled"
                return await self._close_canceled(why)
            return await self._close_failed(ticket, runbook, begun.execution_url, error)
        if result.gate is not None and result.gate.status in (GateStatus.REJECTED, GateStatus.TIMED_OUT):
            self._mirror_gate(result.gate)
            return await self._close_unapproved(ticket, runbook, begun.execution_url)
        if self._watch is not None:
            if result.stopped:
                return await self._close_stopped(ticket, runbook, begun.execution_url, result)
            # A change on hold cannot be closed (only canceled): wait for the release. Canceled meanwhile: not ours.
            stop = await self._watch.guard("closing the change", windowed=False)
            if stop is not None:
                return await self._stopped_after_run(ticket, runbook, stop, result)
        return await self._close_succeeded(ticket, runbook, begun.execution_url, result)

    # -- pieces ------------------------------------------------------------------------------------------------------
    async def _note(self, ticket: ChangeTicket, text: str) -> None:
        await calls.ADD_WORK_NOTE(NoteInput(sys_id=ticket.sys_id, text=text))

    async def _note_text(self, text: str) -> None:
        assert self._ticket is not None
        await self._note(self._ticket, text)

    def _mirror_wait(self, waiting: Waiting | None) -> None:
        self._status.waiting = waiting
        if waiting is not None:
            self._status.phase = waiting.phase

    def _set_ticket_state(self, state: ChangeState) -> None:
        self._status.ticket_state = _state_name(state.value)
        workflow.upsert_search_attributes([sa.TICKET_STATE.value_set(self._status.ticket_state)])

    @staticmethod
    def _variables(ticket: ChangeTicket, runbook: RunbookPlan) -> dict[str, str]:
        return runbook.params | {"host": ticket.cmdb_ci_name, "change": ticket.number}

    async def _no_runbook(self, ticket: ChangeTicket) -> ChangeResult:
        what = f"template '{ticket.template}'" if ticket.template else "no template"
        what += f", category '{ticket.category}'" if ticket.category else ""
        await self._note(
            ticket,
            f"changeloop: no runbook for {what}. Nothing was run; this change is left for a human. "
            f"(Execution {workflow.info().workflow_id})",
        )
        return self._finish(ChangeResult(number=ticket.number, outcome=ChangeOutcome.NO_RUNBOOK))

    def _not_found(self, number: str) -> ChangeResult:
        """A change that ServiceNow does not know: bad input (a webhook for a missing change), not a production
        failure, so no incident and nothing to write to."""
        workflow.logger.warning("change %s not found in ServiceNow: nothing to run", number)
        self._relay.close(f"{number} does not exist in ServiceNow")
        return self._finish(
            ChangeResult(number=number, outcome=ChangeOutcome.NOT_FOUND, error=f"{number} not found in ServiceNow")
        )

    async def _not_ready(self, ticket: ChangeTicket, runbook: RunbookPlan | None, reason: str) -> ChangeResult:
        """ServiceNow does not let this change be implemented now: one work note, no state change, no incident."""
        self._relay.close(f"{ticket.number} is not ready to be implemented")
        await self._note(
            ticket,
            f"changeloop did not run this change: {reason}. ServiceNow decides what may run: a change runs once it is "
            f"approved, Scheduled and not on hold. Nothing was run and the state was not changed. "
            f"(Execution {workflow.info().workflow_id})",
        )
        return self._finish(
            ChangeResult(
                number=ticket.number,
                outcome=ChangeOutcome.NOT_READY,
                runbook=runbook.name if runbook else "",
                error=reason,
            )
        )

    # -- the gate as histories before GATE_PATCH held it (kept so they replay) ----------------------------------------
    def _accept_legacy_signal(self, decision: DecideInput) -> None:
        problem = self._legacy_gate_problem(decision, allow_early=True)
        if problem:
            workflow.logger.warning("ignored %s signal: %s", decision.decision.value, problem[1])
            return
        self._decision = decision

    def _legacy_gate_problem(self, decision: DecideInput, *, allow_early: bool) -> tuple[str, str] | None:
        if not decision.approver.strip():
            return GATE_EMPTY_APPROVER, "approver must not be empty"
        gate = self._status.gate.status
        open_states = {GateStatus.WAITING, GateStatus.PENDING} if allow_early else {GateStatus.WAITING}
        if gate not in open_states or self._decision is not None:
            return GATE_NOT_OPEN, f"no approval gate is open for {self._status.number} (gate: {gate.value})"
        if self._runbook and self._runbook.approvers and decision.approver not in self._runbook.approvers:
            return GATE_UNKNOWN_APPROVER, f"{decision.approver!r} is not an approver of runbook {self._runbook.name!r}"
        return None

    async def _legacy_approval_gate(self, ticket: ChangeTicket, runbook: RunbookPlan) -> bool:
        gate = self._status.gate
        gate.status = GateStatus.WAITING
        gate.opened_at = workflow.now()
        gate.deadline = gate.opened_at + runbook.approval_timeout
        self._status.phase = "awaiting_approval"
        who = ", ".join(runbook.approvers) if runbook.approvers else "any approver"
        await self._note(
            ticket,
            f"Waiting for approval: runbook '{runbook.name}' is destructive. Approve or reject ({who}) with "
            f"`changeloop change approve {ticket.number}`, the ServiceNow approval, or "
            f"`temporal workflow update execute --workflow-id {workflow.info().workflow_id} --name decide`. "
            f"Deadline {gate.deadline:%Y-%m-%d %H:%M:%S} UTC.",
        )
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=runbook.approval_timeout)
        except TimeoutError:
            gate.status = GateStatus.TIMED_OUT
            gate.decided_at = workflow.now()
            return False
        assert self._decision is not None
        gate.approver, gate.comments, gate.decided_at = self._decision.approver, self._decision.comments, workflow.now()
        gate.status = GateStatus.APPROVED if self._decision.decision == Decision.APPROVED else GateStatus.REJECTED
        comments = f": {gate.comments}" if gate.comments else ""
        await self._note(
            ticket,
            f"{gate.status.value.title()} by {gate.approver} at {gate.decided_at:%Y-%m-%d %H:%M:%S} UTC{comments}",
        )
        return gate.status == GateStatus.APPROVED

    async def _close(self, ticket: ChangeTicket, code: CloseCode | None, notes: str, *, cancel: bool = False) -> str:
        """Closed with the code, or Canceled (`cancel`: not implemented). Once begun, a close finishes even when the
        execution is cancelled meanwhile (a walk cut between Review and Closed would strand the ticket)."""
        self._status.phase = "closing"
        closing = calls.CLOSE_CHANGE(
            CloseInput(ticket=ticket, close_code=code.value if code else "", close_notes=notes, cancel=cancel)
        )
        if not self._watching:
            await closing
            self._set_ticket_state(ChangeState.CLOSED)
            await self._confirm_closed(ticket, code, notes)
            return ChangeState.CLOSED.value
        try:
            state = await uncancellable(closing)
        except ActivityError as error:
            if not (cancel and _error_type(error) == INVALID_TICKET_STATE):
                raise
            # A human moved the change to Review meanwhile: Review belongs to its reviewers and cannot be canceled.
            # changeloop leaves the ticket there and says why on it.
            await uncancellable(
                self._note(ticket, f"{notes}\n\nchangeloop left the ticket as it is: {failure_message(error)}.")
            )
            self._set_ticket_state(ChangeState.REVIEW)
            return ChangeState.REVIEW.value
        self._set_ticket_state(ChangeState(state) if state in ChangeState._value2member_map_ else ChangeState.CLOSED)
        await self._confirm_closed(ticket, code, notes)
        return state

    async def _confirm_closed(self, ticket: ChangeTicket, code: CloseCode | None, notes: str) -> None:
        """The Slack confirmation of the close (opt-in, the worker's setting decides): a courtesy that never fails
        the change."""
        if not workflow.patched(CHANGE_CLOSED_NOTICE_PATCH):
            return
        info = workflow.info()
        notice = ChangeClosedInput(
            number=ticket.number,
            sys_id=ticket.sys_id,
            close_code=code.value if code else CANCELED_NOTICE,
            runbook=self._runbook.name if self._runbook else "",
            summary=notes.splitlines()[0] if notes else "",
            workflow_id=info.workflow_id,
            run_id=info.run_id,
        )
        try:
            self._status.closed_notice = await calls.NOTIFY_CHANGE_CLOSED(notice)
        except ActivityError as error:
            self._status.closed_notice = f"failed: {failure_message(error)}"

    def _finish(self, result: ChangeResult) -> ChangeResult:
        self._status.phase = "done"
        self._status.result = result
        self._status.waiting = None
        return result

    # -- the ticket watch's outcomes (TICKET_WATCH) -------------------------------------------------------------------
    def _ran(self) -> str:
        """What ran, for close notes: each step (or wave stage) with its outcome."""
        if not self._status.steps:
            return "Nothing was run."
        lines = [f"- {s.name}: {s.outcome.value}" + (f" - {s.detail}" if s.detail else "") for s in self._status.steps]
        return "Steps:\n" + "\n".join(lines)

    async def _stopped_before_implement(self, ticket: ChangeTicket, runbook: RunbookPlan, stop: Stop) -> ChangeResult:
        """Nothing was changed yet: the ticket stays as ServiceNow has it; one note says why nothing ran."""
        self._relay.close(f"{ticket.number} did not start: {stop.reason}")
        outcome = ChangeOutcome.CANCELED_IN_SERVICENOW if stop.kind == CANCELED_IN_SERVICENOW else ChangeOutcome.BLOCKED
        await self._note(
            ticket,
            f"changeloop did not run this change: {stop.reason}. Nothing was run and changeloop has stopped. "
            f"(Execution {workflow.info().workflow_id})",
        )
        return self._finish(
            ChangeResult(number=ticket.number, outcome=outcome, runbook=runbook.name, error=stop.reason)
        )

    async def _close_stopped(
        self, ticket: ChangeTicket, runbook: RunbookPlan, url: str, result: RunbookResult
    ) -> ChangeResult:
        """The runbook (or wave) stopped before its end because the watch said so. Canceled in ServiceNow: the ticket
        is ServiceNow's now, it gets a note. The window ended: closed unsuccessful (not completed in its window)."""
        what = result.summary or self._ran()
        if result.stopped == CANCELED_IN_SERVICENOW:
            await self._note(
                ticket,
                f"changeloop stopped runbook '{runbook.name}': {result.error}. No further step or host was started; "
                f"the ticket was left as ServiceNow has it.\n{what}\nExecution: {url}",
            )
            self._set_ticket_state(ChangeState.CANCELED)
            return self._finish(
                ChangeResult(
                    number=ticket.number,
                    outcome=ChangeOutcome.CANCELED_IN_SERVICENOW,
                    runbook=runbook.name,
                    steps=self._status.steps,
                    error=result.error,
                )
            )
        notes = (
            f"Not completed in its planned window: {result.error}. No further step or host was started.\n{what}\n"
            f"Execution: {url}"
        )
        await self._close(ticket, CloseCode.UNSUCCESSFUL, notes)
        return self._finish(
            ChangeResult(
                number=ticket.number,
                outcome=ChangeOutcome.WINDOW_ENDED,
                close_code=CloseCode.UNSUCCESSFUL.value,
                close_notes=notes,
                runbook=runbook.name,
                steps=self._status.steps,
                error=result.error,
            )
        )

    async def _stopped_after_run(
        self, ticket: ChangeTicket, runbook: RunbookPlan, stop: Stop, result: RunbookResult
    ) -> ChangeResult:
        """Everything ran, then ServiceNow canceled (or closed) the change before changeloop could close it."""
        await self._note(
            ticket,
            f"changeloop ran runbook '{runbook.name}' to its end, but {stop.reason} before changeloop closed it: the "
            f"ticket was left as ServiceNow has it.\n{result.summary or self._ran()}",
        )
        return self._finish(
            ChangeResult(
                number=ticket.number,
                outcome=ChangeOutcome.CANCELED_IN_SERVICENOW,
                runbook=runbook.name,
                steps=self._status.steps,
                error=stop.reason,
            )
        )

    async def _close_canceled(self, why: str) -> ChangeResult:
        """The execution (or its child) was cancelled in Temporal: the runbook has wound down (its running step marked
        canceled, a wave's hosts rolled back or left as they were), and the ticket is canceled with `why`. Run
        uncancellable when the execution itself was cancelled."""
        ticket, runbook = self._ticket, self._runbook
        self._status.phase = "canceling"
        result = ChangeResult(
            number=self._status.number,
            outcome=ChangeOutcome.CANCELED,
            runbook=runbook.name if runbook else "",
            steps=self._status.steps,
            error=why,
        )
        if ticket is not None and runbook is not None:
            notes = f"Canceled, not implemented: {why}.\n{self._ran()}"
            if self._execution_url:
                notes += f"\nExecution: {self._execution_url}"
            await self._close(ticket, None, notes, cancel=True)
            result.close_notes = notes
        self._finish(result)
        return result

    async def _close_unapproved(self, ticket: ChangeTicket, runbook: RunbookPlan, url: str) -> ChangeResult:
        gate = self._status.gate
        if gate.status == GateStatus.TIMED_OUT:
            reason = f"no approval within {runbook.approval_timeout} for destructive runbook '{runbook.name}'"
            outcome = ChangeOutcome.APPROVAL_TIMED_OUT
        else:
            reason = f"rejected by {gate.approver}" + (f": {gate.comments}" if gate.comments else "")
            outcome = ChangeOutcome.REJECTED
        notes = f"Not implemented: {reason}. Nothing was run.\nExecution: {url}"
        # Since TICKET_WATCH a change its gate refused is canceled (never walked through Review as if implemented).
        code = None if self._watching else CloseCode.UNSUCCESSFUL
        await self._close(ticket, code, notes, cancel=self._watching)
        return self._finish(
            ChangeResult(
                number=ticket.number,
                outcome=outcome,
                close_code=code.value if code else "",
                close_notes=notes,
                runbook=runbook.name,
                error=reason,
            )
        )

    async def _close_succeeded(
        self, ticket: ChangeTicket, runbook: RunbookPlan, url: str, result: RunbookResult
    ) -> ChangeResult:
        if result.summary:
            lines = [result.summary]
        else:
            lines = [f"Runbook '{runbook.name}' completed: {len(result.steps)} step(s) succeeded."]
            lines += [f"- {s.name} ({self._seconds(s):.1f} s)" for s in result.steps]
        lines.append(f"Execution: {url}")
        notes = "\n".join(lines)
        # A wave with hosts rolled back still succeeded, with issues: the runbook says so through close_code.
        code = CloseCode(result.close_code) if result.close_code else CloseCode.SUCCESSFUL
        if await self._close(ticket, code, notes) == ChangeState.CANCELED and self._watching:
            # Canceled in ServiceNow after the watch last looked: the close wrote nothing; the note says what ran.
            return await self._stopped_after_run(ticket, runbook, Stop(CANCELED_IN_SERVICENOW, _CANCELED), result)
        return self._finish(
            ChangeResult(
                number=ticket.number,
                outcome=ChangeOutcome.SUCCESSFUL,
                close_code=code.value,
                close_notes=notes,
                runbook=runbook.name,
                steps=result.steps,
            )
        )

    async def _close_failed(
        self, ticket: ChangeTicket, runbook: RunbookPlan, url: str, error: ChildWorkflowError
    ) -> ChangeResult:
        failed = next((s for s in self._status.steps if s.outcome == StepOutcome.FAILED), None)
        step = failed.name if failed else self._status.step
        message = failed.detail if failed else failure_message(error.cause or error)
        notes = f"Runbook '{runbook.name}' failed at step '{step}': {message}\nExecution: {url}"
        # Opened before closing, so the close notes can name it (the interceptor would only see the raise).
        incident = await self._open_incident(runbook, failed, error)
        if incident is not None and incident.number:
            notes += f"\nIncident: {incident.number} {incident.url}"
        elif incident is not None:
            notes += f"\nIncident: being opened by {incident.workflow_id}"
        await self._close(ticket, CloseCode.UNSUCCESSFUL, notes)
        self._finish(
            ChangeResult(
                number=ticket.number,
                outcome=ChangeOutcome.UNSUCCESSFUL,
                close_code=CloseCode.UNSUCCESSFUL.value,
                close_notes=notes,
                runbook=runbook.name,
                steps=self._status.steps,
                failed_step=step,
                error=message,
                incident=incident.number if incident else "",
            )
        )
        named = f" (incident {incident.number})" if incident and incident.number else ""
        # The execution itself fails, so the UI, `temporal workflow list` and the incident path all see it.
        raise ApplicationError(
            f"{ticket.number}: runbook '{runbook.name}' failed at step '{step}': {message}{named}",
            self._status.result.model_dump(mode="json") if self._status.result else None,
            type="RunbookFailed",
            non_retryable=True,
        )

    # -- incidents ---------------------------------------------------------------------------------------------------
    async def _open_incident(
        self, runbook: RunbookPlan, failed: StepRecord | None, error: ChildWorkflowError
    ) -> IncidentRef | None:
        self._incident_reported = True
        return await open_incident(step_report(failed, error, **self._change_fields(runbook)))

    def _change_fields(self, runbook: RunbookPlan | None) -> dict[str, object]:
        ticket = self._ticket
        return {
            "production": runbook.production if runbook else None,
            "change_number": self._status.number,
            "change_sys_id": ticket.sys_id if ticket else "",
            "ci_sys_ids": [ticket.cmdb_ci] if ticket and ticket.cmdb_ci else [],
            "ci_names": [ticket.cmdb_ci_name] if ticket and ticket.cmdb_ci_name else [],
        }

    def failure_report(self, error: BaseException) -> FailureReport | None:
        """For the interceptor: a failure outside the runbook (a ticket write refused, ...) is reported with the
        change's CIs; a runbook failure was reported by `_close_failed` already."""
        if self._incident_reported:
            return None
        report = generic_report(error).model_copy(update=self._change_fields(self._runbook))
        report.step = report.step or f"({self._status.phase})"
        return report

    @staticmethod
    def _child_id(runbook: RunbookPlan, number: str) -> str:
        # docs/architecture.md, "Contract": a patch wave is `wave-<number>`, whatever runs it; other runbooks keep `runbook-<number>`.
        return wave_workflow_id(number) if runbook.workflow == "PatchWaveWorkflow" else runbook_workflow_id(number)

    @staticmethod
    def _seconds(step: StepRecord) -> float:
        return ((step.ended_at or step.started_at) - step.started_at).total_seconds()
