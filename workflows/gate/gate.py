"""The approval gate, held by the workflow that runs destructive work (RunbookWorkflow, PatchWaveWorkflow).

Whatever started the run (a change, a flow run, a wave, `temporal workflow start`), nothing destructive runs until
the gate is approved by one of the runbook's approvers, and the approval is proven (docs/architecture.md, "Trust"):

- ServiceNow: a `sysapproval_approver` record for the change, approved by a listed approver (a user named in the
  runbook's `approvers`, or a member of its `approver_group`). The gate reads the records when it opens, whenever
  the approval Business Rule's hint arrives (`check_approvals`), and every `poll_interval` while it waits.
- The shim: a decision signed by the shim (workflows/gate/signing.py) for its authenticated principal; an activity
  checks the signature and its age, because the key must stay out of workflow code and history.
- The Temporal frontend: a plain `approve` / `reject` / `decide` counts as the approver it names only where the
  operator declares that the cluster authorizes who may signal (GatePolicy, read through an activity). Elsewhere it
  is refused and makes the gate read ServiceNow's approval records at once.

Decisions that arrive before the gate opens are kept and judged when it opens, in arrival order, against the list;
each gets a verdict, which `decide` answers (a refusal fails the update with a typed error) and which the gate
reports to the workflow that started it, with its state, on every change (`gate_changed`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.cancellation import passes_through
    from workflows.change.models import NoteInput
    from workflows.gate.models import (
        GATE_EMPTY_APPROVER,
        GATE_NOT_OPEN,
        GATE_NOT_PROVEN,
        GATE_PATCH,
        GATE_UNKNOWN_APPROVER,
        SIGNAL_APPROVE,
        SIGNAL_CHECK_APPROVALS,
        SIGNAL_GATE_CHANGED,
        SIGNAL_GATE_DECISION,
        SIGNAL_REJECT,
        UPDATE_DECIDE,
        ApprovalFinding,
        ApprovalInput,
        ApprovalQuery,
        ApproverQuery,
        DecideInput,
        Decision,
        GateDecision,
        GatePolicy,
        GateReport,
        GateSpec,
        GateState,
        GateStatus,
        Proof,
        ProofKind,
        Verdict,
        VerifyInput,
    )
    from workflows.runbook.models import RunbookPlan, RunbookResult

# A waiting gate asks ServiceNow a few times, then waits for its next poll: an outage delays, it never blocks.
SERVICENOW_ATTEMPTS = calls.attempts(3)


def gate_spec(runbook: RunbookPlan) -> GateSpec:
    return GateSpec(
        runbook=runbook.name,
        approvers=[a.strip() for a in runbook.approvers if a.strip()],
        approver_group=runbook.approver_group.strip(),
        timeout=runbook.approval_timeout,
    )


async def pass_gate(gate: Gate, runbook: RunbookPlan) -> RunbookResult | None:
    """The one insertion point of a holding workflow, before its first step or host. None: go on (approved, or the
    runbook is not destructive). A result: rejected or timed out, nothing ran, and that is an answer, not a failure
    (no incident); every waiting `decide` has its verdict by then."""
    if not (runbook.destructive and workflow.patched(GATE_PATCH)):
        await gate.settle(
            f"runbook {runbook.name!r} is not destructive: it has no approval gate", GateStatus.NOT_REQUIRED
        )
        return None
    if await gate.hold(gate_spec(runbook)):
        return None
    state = gate.state
    if state.status == GateStatus.TIMED_OUT:
        error = f"no approval within {runbook.approval_timeout} for destructive runbook '{runbook.name}'"
    else:
        error = f"rejected by {state.approver}" + (f": {state.comments}" if state.comments else "")
    await workflow.wait_condition(workflow.all_handlers_finished)
    return RunbookResult(runbook=runbook.name, succeeded=False, error=error, gate=state)


def refusal(decision: DecideInput) -> tuple[str, str] | None:
    """What no gate needs to open to refuse: a decision without an approver."""
    if not decision.approver.strip():
        return GATE_EMPTY_APPROVER, "approver must not be empty"
    return None


def who_may(spec: GateSpec) -> str:
    named = ", ".join(spec.approvers)
    group = f"members of the ServiceNow group '{spec.approver_group}'" if spec.approver_group else ""
    return " or ".join(p for p in (named, group) if p) or "nobody (the runbook names no approvers)"


class Gate:
    """One gate per holding workflow. Handlers call `receive` / `hint` (no commands); the run calls `hold` once,
    or `settle` when no gate will open (a runbook that is not destructive, a later run of a wave)."""

    def __init__(self, *, ticket: str = "", report_to: str = "", closed: str = "") -> None:
        self.state = GateState()
        self._ticket = ticket  # change_request sys_id; "" for a flow run: no approval records, no notes
        self._report_to = report_to  # the workflow that started this one: gets every gate change
        self._inbox: list[GateDecision] = []
        self._awaited: dict[str, Verdict | None] = {}  # verdicts a local `decide` waits for
        self._unreported: list[Verdict] = []
        self._check_now = False
        self._closed = closed  # why decisions are no longer taken

    # -- handlers -------------------------------------------------------------------------------------------------
    def receive(self, decision: DecideInput, *, awaited: bool = False) -> str:
        decision_id = str(workflow.uuid4())
        if awaited:
            self._awaited[decision_id] = None
        if self._closed:
            self._verdict(Verdict(id=decision_id, accepted=False, error_type=GATE_NOT_OPEN, message=self._closed))
        else:
            self._inbox.append(GateDecision(id=decision_id, decision=decision, received_at=workflow.now()))
        return decision_id

    def receive_relayed(self, relayed: GateDecision) -> None:
        # A closed gate drops it: the relay refuses what is still pending once it learns the gate was decided.
        if not self._closed:
            self._inbox.append(relayed)

    def hint(self) -> None:
        self._check_now = True

    def validate(self, decision: DecideInput) -> None:
        """The `decide` validator: refused at once, before it enters history, when no gate will judge it."""
        problem = refusal(decision)
        if problem is None and self._closed:
            problem = (GATE_NOT_OPEN, self._closed)
        if problem:
            raise ApplicationError(problem[1], type=problem[0], non_retryable=True)

    async def decide(self, decision: DecideInput) -> GateState:
        decision_id = self.receive(decision, awaited=True)
        await workflow.wait_condition(lambda: self._awaited.get(decision_id) is not None)
        verdict = self._awaited.pop(decision_id)
        assert verdict is not None
        if not verdict.accepted:
            raise ApplicationError(verdict.message, type=verdict.error_type, non_retryable=True)
        return self.state

    # -- the run --------------------------------------------------------------------------------------------------
    async def hold(self, spec: GateSpec) -> bool:
        """Wait for a proven decision by a listed approver, or the deadline. True when approved."""
        policy = await calls.GATE_POLICY(None)
        gate = self.state
        gate.status, gate.opened_at = GateStatus.WAITING, workflow.now()
        gate.deadline = gate.opened_at + spec.timeout
        gate.approvers, gate.approver_group = spec.approvers, spec.approver_group
        await self._note(self._waiting_note(spec, policy))
        await self._report()
        check, next_poll, outsiders_noted = bool(self._ticket), gate.opened_at, set[str]()
        while gate.status == GateStatus.WAITING:
            while self._inbox and gate.status == GateStatus.WAITING:
                check = await self._judge(self._inbox.pop(0), spec, policy) or check
            if (
                gate.status == GateStatus.WAITING
                and self._ticket
                and (check or self._check_now or workflow.now() >= next_poll)
            ):
                check, self._check_now = False, False
                next_poll = workflow.now() + policy.poll_interval
                finding = await self._servicenow(spec)
                if finding is not None:
                    self._accept_finding(finding)
                    new = sorted(set(finding.outsiders) - outsiders_noted)
                    if new and gate.status == GateStatus.WAITING:
                        outsiders_noted |= set(new)
                        await self._note_outsiders(spec, new)
            await self._report()
            if gate.status != GateStatus.WAITING:
                break
            await self._wait(gate.deadline, next_poll if self._ticket else None)
        self._closed = self._closed or f"the approval gate was {gate.status.value}" + (
            f" by {gate.approver}" if gate.approver else ""
        )
        self._refuse_inbox()
        gate.decided_at = gate.decided_at or workflow.now()
        if gate.status in (GateStatus.APPROVED, GateStatus.REJECTED):
            await self._note(self._decided_note())
        await self._report()
        return gate.status == GateStatus.APPROVED

    def close(self, reason: str) -> None:
        """The run is ending (failed, cancelled): refuse whatever still waits, so every `decide` gets its answer."""
        self._closed = self._closed or reason
        self._refuse_inbox()

    async def settle(self, reason: str, status: GateStatus | None = None) -> None:
        """No gate will open here (or it was decided in an earlier run): refuse whatever is waiting."""
        self._closed = reason
        if status is not None:
            self.state.status = status
        self._refuse_inbox()
        if self._unreported:  # only then: a run without a gate sends its parent nothing
            await self._report()

    async def _wait(self, deadline: datetime, next_poll: datetime | None) -> None:
        until = min(deadline, next_poll) if next_poll else deadline
        remaining = until - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(lambda: bool(self._inbox) or self._check_now, timeout=remaining)
            except TimeoutError:
                pass
        if workflow.now() >= deadline and not self._inbox and self.state.status == GateStatus.WAITING:
            self.state.status = GateStatus.TIMED_OUT

    # -- judging --------------------------------------------------------------------------------------------------
    async def _judge(self, item: GateDecision, spec: GateSpec, policy: GatePolicy) -> bool:
        """Judge one decision; True when it asks for a look at ServiceNow's records (an unproven signal)."""
        decision = item.decision
        problem = refusal(decision)
        if problem is None:
            proof, problem = await self._prove(item, policy)
        if problem is None:
            problem = await self._listed(decision.approver, spec)
        if problem is not None:
            self._verdict(Verdict(id=item.id, accepted=False, error_type=problem[0], message=problem[1]))
            self.state.waiting_for = f"refused a decision by {decision.approver or '(nobody)'}: {problem[1]}"
            return problem[0] == GATE_NOT_PROVEN
        self._decided(decision.decision, decision.approver, decision.comments, proof)
        self._verdict(Verdict(id=item.id, accepted=True))
        return False

    async def _prove(self, item: GateDecision, policy: GatePolicy) -> tuple[Proof, tuple[str, str] | None]:
        decision = item.decision
        if decision.signature:
            executions = [workflow.info().workflow_id] + ([self._report_to] if self._report_to else [])
            check = await calls.VERIFY_DECISION(
                VerifyInput(decision=decision, received_at=item.received_at, executions=executions)
            )
            if not check.valid:
                return Proof(kind=ProofKind.SHIM), (
                    GATE_NOT_PROVEN,
                    f"the shim's signature does not hold: {check.reason}",
                )
            return Proof(kind=ProofKind.SHIM, reference=decision.approver), None
        if policy.temporal_authorizes_decisions:
            return Proof(kind=ProofKind.TEMPORAL, reference="signal or update"), None
        where = "ServiceNow's approval records are checked now; " if self._ticket else ""
        return Proof(kind=ProofKind.TEMPORAL), (
            GATE_NOT_PROVEN,
            f"a decision sent through Temporal does not prove who made it (this worker does not trust the cluster to "
            f"authorize signals: CHANGELOOP_TEMPORAL_AUTHORIZES_DECISIONS is off); {where}approve in ServiceNow or "
            f"through the shim's /api/executions/<id>/approve as yourself",
        )

    async def _listed(self, approver: str, spec: GateSpec) -> tuple[str, str] | None:
        if approver in spec.approvers:
            return None
        if spec.approver_group:
            try:
                answer = await calls.CHECK_APPROVER.narrowed(retry=SERVICENOW_ATTEMPTS)(
                    ApproverQuery(approver=approver, approvers=spec.approvers, approver_group=spec.approver_group)
                )
            except ActivityError:
                return (
                    GATE_NOT_PROVEN,
                    f"could not read the members of '{spec.approver_group}' from ServiceNow; try again",
                )
            if answer.listed:
                return None
        return (
            GATE_UNKNOWN_APPROVER,
            f"{approver!r} is not an approver of runbook {spec.runbook!r} (approvers: {who_may(spec)})",
        )

    async def _servicenow(self, spec: GateSpec) -> ApprovalFinding | None:
        query = ApprovalQuery(change_sys_id=self._ticket, approvers=spec.approvers, approver_group=spec.approver_group)
        try:
            return await calls.CHECK_APPROVALS.narrowed(retry=SERVICENOW_ATTEMPTS)(query)
        except ActivityError as error:
            if passes_through(error):
                raise
            workflow.logger.warning("approval records unreadable, next poll retries: %s", error)
            return None

    def _accept_finding(self, finding: ApprovalFinding) -> None:
        if finding.decision is not None:
            self._decided(
                finding.decision, finding.approver, "", Proof(kind=ProofKind.SERVICENOW, reference=finding.record)
            )

    def _decided(self, decision: Decision, approver: str, comments: str, proof: Proof) -> None:
        gate = self.state
        gate.status = GateStatus.APPROVED if decision == Decision.APPROVED else GateStatus.REJECTED
        gate.approver, gate.comments, gate.proof, gate.decided_at = approver, comments, proof, workflow.now()
        gate.waiting_for = ""

    def _verdict(self, verdict: Verdict) -> None:
        if verdict.id in self._awaited:
            self._awaited[verdict.id] = verdict
        else:
            self._unreported.append(verdict)

    def _refuse_inbox(self) -> None:
        for item in self._inbox:
            self._verdict(Verdict(id=item.id, accepted=False, error_type=GATE_NOT_OPEN, message=self._closed))
        self._inbox.clear()

    # -- telling people -------------------------------------------------------------------------------------------
    async def _report(self) -> None:
        verdicts, self._unreported = self._unreported, []
        if not self._report_to:
            return
        try:
            parent = workflow.get_external_workflow_handle(self._report_to)
            await parent.signal(SIGNAL_GATE_CHANGED, GateReport(gate=self.state, verdicts=verdicts))
        except Exception as error:  # the parent may have been terminated: the gate still decides for this run
            workflow.logger.warning("gate report to %s failed: %s", self._report_to, error)

    async def _note(self, text: str) -> None:
        if self._ticket:
            await calls.ADD_WORK_NOTE(NoteInput(sys_id=self._ticket, text=text))

    def _execution(self) -> str:
        return self._report_to or workflow.info().workflow_id

    def _waiting_note(self, spec: GateSpec, policy: GatePolicy) -> str:
        ways = ["in ServiceNow (the change's approval record)"] if self._ticket else []
        ways.append(f"through the changeloop shim as yourself (POST /api/executions/{self._execution()}/approve)")
        if policy.temporal_authorizes_decisions:
            ways.append(
                f"with `changeloop change approve` or `temporal workflow update execute --workflow-id "
                f"{self._execution()} --name decide`"
            )
        assert self.state.deadline is not None
        return (
            f"Waiting for approval: runbook '{spec.runbook}' is destructive. Nothing runs until {who_may(spec)} "
            f"approves, {', or '.join(ways)}. Deadline {self.state.deadline:%Y-%m-%d %H:%M:%S} UTC."
        )

    def _decided_note(self) -> str:
        gate = self.state
        assert gate.decided_at is not None and gate.proof is not None
        comments = f": {gate.comments}" if gate.comments else ""
        return (
            f"{gate.status.value.title()} by {gate.approver} at {gate.decided_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(proof: {gate.proof.describe()}){comments}"
        )

    async def _note_outsiders(self, spec: GateSpec, users: list[str]) -> None:
        names = ", ".join(users)
        self.state.waiting_for = f"ServiceNow decision(s) by {names} do not count"
        await self._note(
            f"ServiceNow approval by {names} does not count for runbook '{spec.runbook}': only {who_may(spec)} may "
            f"approve it. Nothing has run; still waiting for approval."
        )


class GateHolder:
    """The gate's messages on the workflow that holds it (mixed into RunbookWorkflow and PatchWaveWorkflow)."""

    _gate: Gate

    @workflow.signal(name=SIGNAL_APPROVE)
    def approve(self, approval: ApprovalInput) -> None:
        self._gate.receive(
            DecideInput(approver=approval.approver, decision=Decision.APPROVED, comments=approval.comments)
        )

    @workflow.signal(name=SIGNAL_REJECT)
    def reject(self, approval: ApprovalInput) -> None:
        self._gate.receive(
            DecideInput(approver=approval.approver, decision=Decision.REJECTED, comments=approval.comments)
        )

    @workflow.signal(name=SIGNAL_GATE_DECISION)
    def gate_decision(self, relayed: GateDecision) -> None:
        self._gate.receive_relayed(relayed)

    @workflow.signal(name=SIGNAL_CHECK_APPROVALS)
    def check_approvals(self) -> None:
        self._gate.hint()

    @workflow.update(name=UPDATE_DECIDE)
    async def decide(self, decision: DecideInput) -> GateState:
        return await self._gate.decide(decision)

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        self._gate.validate(decision)
