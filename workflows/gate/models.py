"""The approval gate's contract: its messages, its state, how a decision is proven, and its activities' payloads.

The gate lives in the workflow that runs destructive work (RunbookWorkflow, PatchWaveWorkflow); the workflows that
start those (ChangeRequestWorkflow, FlowRunWorkflow) take the same messages and relay them to their child
(docs/architecture.md, "Trust"). These shapes carry names, IDs and signatures: never a key or a token.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

# Public: the shim, `changeloop change approve` and `temporal workflow signal/update` send these (README).
SIGNAL_APPROVE = "approve"
SIGNAL_REJECT = "reject"
UPDATE_DECIDE = "decide"
# The Business Rule's hint (`POST /api/servicenow/approval`): read ServiceNow's approval records now.
SIGNAL_CHECK_APPROVALS = "check_approvals"
# Between workflows: a parent relays a decision (with its ID and arrival time); a gate reports every change of state.
SIGNAL_GATE_DECISION = "gate_decision"
SIGNAL_GATE_CHANGED = "gate_changed"

# Error types of a refused decision (the `decide` update fails with one; the shim maps each to its HTTP code).
GATE_EMPTY_APPROVER = "EmptyApprover"  # 422
GATE_UNKNOWN_APPROVER = "NotAnApprover"  # 403
GATE_NOT_PROVEN = "DecisionNotProven"  # 403
GATE_NOT_OPEN = "GateNotOpen"  # 409

# Workflows that moved the gate into the runbook's own workflow (and learnt to prove approvals) mark it with this
# patch: histories recorded before it replay the old path.
GATE_PATCH = "approvals-proven"


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class ApprovalInput(BaseModel):
    """Payload of the `approve` / `reject` signals."""

    approver: str
    comments: str = ""


class DecideInput(BaseModel):
    """Payload of the `decide` update. The shim fills the last three (workflows/gate/signing.py): its HMAC over the
    decision, the execution it addressed and when; a decision without them came from the Temporal frontend."""

    approver: str
    decision: Decision
    comments: str = ""
    execution_id: str = ""
    issued_at: datetime | None = None
    signature: str = ""


class GateDecision(BaseModel):
    """A decision as a gate keeps it until it can judge it: its ID (for the verdict) and when it first arrived."""

    id: str
    decision: DecideInput
    received_at: datetime


class Verdict(BaseModel):
    id: str
    accepted: bool
    error_type: str = ""
    message: str = ""


class GateStatus(StrEnum):
    NOT_REQUIRED = "not_required"
    PENDING = "pending"  # the gate will open once the run reaches it
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


DECIDED = (GateStatus.APPROVED, GateStatus.REJECTED, GateStatus.TIMED_OUT)


class ProofKind(StrEnum):
    SERVICENOW = "servicenow"  # a sysapproval_approver record by a listed approver
    SHIM = "shim"  # an authenticated shim principal, signed by the shim
    TEMPORAL = "temporal"  # a signal or update, on a cluster declared to authorize who may signal


class Proof(BaseModel):
    kind: ProofKind
    reference: str = ""  # the approval record's sys_id; the principal; the message name

    def describe(self) -> str:
        if self.kind == ProofKind.SERVICENOW:
            return f"ServiceNow approval sysapproval_approver {self.reference}"
        if self.kind == ProofKind.SHIM:
            return f"authenticated shim principal {self.reference}, decision signed by the shim"
        return f"Temporal {self.reference or 'message'}; the cluster is declared to authorize who may signal"


class GateState(BaseModel):
    status: GateStatus = GateStatus.PENDING
    approver: str = ""
    comments: str = ""
    opened_at: datetime | None = None
    decided_at: datetime | None = None
    deadline: datetime | None = None
    proof: Proof | None = None
    approvers: list[str] = []
    approver_group: str = ""
    waiting_for: str = ""  # why an open gate still waits (an approval that does not count, ...)


class GateReport(BaseModel):
    """A gate's signal to the workflow that started it: its state, and verdicts on decisions it judged."""

    gate: GateState
    verdicts: list[Verdict] = []


class GateSpec(BaseModel):
    """What a gate needs of its runbook."""

    runbook: str
    approvers: list[str] = []
    approver_group: str = ""
    timeout: timedelta = timedelta(hours=24)


# -- activity payloads (activities/gate/) -----------------------------------------------------------------------------
class GatePolicy(BaseModel):
    """The worker's settings a gate obeys, read through an activity so the answer is recorded in history."""

    temporal_authorizes_decisions: bool = False
    poll_interval: timedelta = timedelta(seconds=60)


class VerifyInput(BaseModel):
    decision: DecideInput
    received_at: datetime
    executions: list[str]  # the IDs a signature may name: the gate's workflow and the one that started it


class Verification(BaseModel):
    valid: bool
    reason: str = ""


class ApproverQuery(BaseModel):
    approver: str
    approvers: list[str] = []
    approver_group: str = ""


class ApproverAnswer(BaseModel):
    listed: bool
    how: str = ""  # "named in approvers" | "member of <group>"


class ApprovalQuery(BaseModel):
    change_sys_id: str
    approvers: list[str] = []
    approver_group: str = ""


class ApprovalFinding(BaseModel):
    """What ServiceNow's approval records say about the change, judged against the runbook's approvers."""

    decision: Decision | None = None
    approver: str = ""  # user_name
    record: str = ""  # the sysapproval_approver sys_id
    decided_on: str = ""
    outsiders: list[str] = []  # users outside the list who approved or rejected (their records do not count)
