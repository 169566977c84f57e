"""The gate's messages on a workflow that starts a gated child (ChangeRequestWorkflow, FlowRunWorkflow).

Callers keep addressing the execution they know (`change-<number>`, `flow-<flow>-<key>`): the DESIGN contract, the
shim, `changeloop change approve` and `temporal workflow update --workflow-id change-...` all do. The relay keeps
each decision until the child exists (its ID is deterministic), forwards it with its ID and arrival time, mirrors
the child's gate into the parent's status from the child's `gate_changed` reports, and answers `decide` with the
child's verdict. A decision no gate will judge (the runbook is not destructive, the run ended before its gate, the
gate was decided already) is refused with GateNotOpen, never left waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.gate.gate import refusal
    from workflows.gate.models import (
        DECIDED,
        GATE_NOT_OPEN,
        SIGNAL_APPROVE,
        SIGNAL_CHECK_APPROVALS,
        SIGNAL_GATE_CHANGED,
        SIGNAL_GATE_DECISION,
        SIGNAL_REJECT,
        UPDATE_DECIDE,
        ApprovalInput,
        DecideInput,
        Decision,
        GateDecision,
        GateReport,
        GateState,
        GateStatus,
        Verdict,
    )


class GateRelay:
    def __init__(self, on_change: Callable[[GateState], None]) -> None:
        self.gate = GateState()
        self._on_change = on_change
        self._child: Any = None  # the child's handle, once started
        self._closed = ""
        self._verdicts: dict[str, Verdict | None] = {}  # pending decisions (None) and their answers

    # -- from the parent's run ------------------------------------------------------------------------------------
    def attach(self, child: Any) -> None:
        self._child = child

    def close(self, reason: str, status: GateStatus | None = None) -> None:
        """No gate will judge anything relayed from now on; what waits is refused."""
        self._closed = self._closed or reason
        if status is not None:
            self._mirror(self.gate.model_copy(update={"status": status}))
        self._refuse_pending(self._closed)

    # -- from the parent's handlers -------------------------------------------------------------------------------
    def validate(self, decision: DecideInput) -> None:
        problem = refusal(decision)
        if problem is None and (self._closed or self.gate.status in (*DECIDED, GateStatus.NOT_REQUIRED)):
            problem = (GATE_NOT_OPEN, self._closed or f"the approval gate is {self.gate.status.value}")
        if problem:
            raise ApplicationError(problem[1], type=problem[0], non_retryable=True)

    async def relay(self, decision: DecideInput, *, awaited: bool = False) -> str:
        """Forward a decision once the child exists. Only an awaited one (`decide`) keeps a slot for its verdict."""
        decision_id = str(workflow.uuid4())
        if awaited:
            self._verdicts[decision_id] = None
        item = GateDecision(id=decision_id, decision=decision, received_at=workflow.now())
        await workflow.wait_condition(lambda: self._child is not None or bool(self._closed))
        if self._closed:
            self._refuse_pending(self._closed)
            return decision_id
        try:
            await self._child.signal(SIGNAL_GATE_DECISION, item)
        except Exception as error:  # the child has closed: nothing will judge it
            self._answer(Verdict(id=decision_id, accepted=False, error_type=GATE_NOT_OPEN, message=str(error)))
        return decision_id

    async def decide(self, decision: DecideInput) -> GateState:
        decision_id = await self.relay(decision, awaited=True)
        await workflow.wait_condition(lambda: self._verdicts.get(decision_id) is not None)
        verdict = self._verdicts.pop(decision_id)
        assert verdict is not None
        if not verdict.accepted:
            raise ApplicationError(verdict.message, type=verdict.error_type, non_retryable=True)
        return self.gate

    async def hint(self) -> None:
        """ServiceNow says an approval was decided: the child's gate reads the records now (one that has not opened
        yet reads them when it opens anyway)."""
        if self._child is not None and not self._closed:
            try:
                await self._child.signal(SIGNAL_CHECK_APPROVALS)
            except Exception as error:
                workflow.logger.info("approval hint not relayed: %s", error)

    def on_report(self, report: GateReport) -> None:
        self._mirror(report.gate)
        for verdict in report.verdicts:
            self._answer(verdict)
        if report.gate.status in DECIDED:
            # Whatever the child had not judged when it decided will never be judged.
            self._refuse_pending(f"the approval gate was {report.gate.status.value}")

    def pending(self) -> int:
        return sum(1 for v in self._verdicts.values() if v is None)

    # -- pieces ---------------------------------------------------------------------------------------------------
    def _mirror(self, gate: GateState) -> None:
        self.gate = gate
        self._on_change(gate)

    def _answer(self, verdict: Verdict) -> None:
        if verdict.id in self._verdicts and self._verdicts[verdict.id] is None:
            self._verdicts[verdict.id] = verdict

    def _refuse_pending(self, reason: str) -> None:
        for decision_id, verdict in self._verdicts.items():
            if verdict is None:
                self._verdicts[decision_id] = Verdict(
                    id=decision_id, accepted=False, error_type=GATE_NOT_OPEN, message=reason
                )


class GateRelayHandlers:
    """The gate's messages on a workflow that relays them to its child (mixed into FlowRunWorkflow)."""

    _relay: GateRelay

    @workflow.signal(name=SIGNAL_APPROVE)
    async def approve(self, approval: ApprovalInput) -> None:
        decision = DecideInput(approver=approval.approver, decision=Decision.APPROVED, comments=approval.comments)
        await self._relay.relay(decision)

    @workflow.signal(name=SIGNAL_REJECT)
    async def reject(self, approval: ApprovalInput) -> None:
        decision = DecideInput(approver=approval.approver, decision=Decision.REJECTED, comments=approval.comments)
        await self._relay.relay(decision)

    @workflow.signal(name=SIGNAL_CHECK_APPROVALS)
    async def check_approvals(self) -> None:
        await self._relay.hint()

    @workflow.signal(name=SIGNAL_GATE_CHANGED)
    def gate_changed(self, report: GateReport) -> None:
        self._relay.on_report(report)

    @workflow.update(name=UPDATE_DECIDE)
    async def decide(self, decision: DecideInput) -> GateState:
        return await self._relay.decide(decision)

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        self._relay.validate(decision)
