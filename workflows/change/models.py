"""The change workflow's contract: its input, the approval gate's messages, its status and result, and the ticket
activities' payloads. The shim, the CLI and the `temporal` CLI send these shapes; they carry ticket data and IDs
only - never a credential.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from workflows.status import StepProgress, StepRecord

SIGNAL_APPROVE = "approve"
SIGNAL_REJECT = "reject"
UPDATE_DECIDE = "decide"

# Error types of a refused `decide` update.
GATE_EMPTY_APPROVER = "EmptyApprover"
GATE_UNKNOWN_APPROVER = "NotAnApprover"
GATE_NOT_OPEN = "GateNotOpen"


def change_workflow_id(number: str) -> str:
    return f"change-{number}"


# -- tickets -------------------------------------------------------------------------------------------------------
class ChangeTicket(BaseModel):
    """What a change workflow needs to know about its change_request, read from ServiceNow by an activity."""

    sys_id: str
    number: str
    state: str
    type: str = "standard"
    approval: str = ""
    category: str = ""
    template: str = ""  # std_change_producer_version display name
    cmdb_ci: str = ""  # sys_id
    cmdb_ci_name: str = ""
    short_description: str = ""


class ChangeInput(BaseModel):
    number: str
    source: Literal["webhook", "poll", "cli", "api"] = "webhook"


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class ApprovalInput(BaseModel):
    """Payload of the `approve` / `reject` signals."""

    approver: str
    comments: str = ""


class DecideInput(BaseModel):
    """Payload of the `decide` update: validated before it is accepted."""

    approver: str
    decision: Decision
    comments: str = ""


class GateStatus(StrEnum):
    NOT_REQUIRED = "not_required"
    PENDING = "pending"  # the gate will open once the runbook is known
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


class GateState(BaseModel):
    status: GateStatus = GateStatus.PENDING
    approver: str = ""
    comments: str = ""
    opened_at: datetime | None = None
    decided_at: datetime | None = None
    deadline: datetime | None = None


class ChangeOutcome(StrEnum):
    SUCCESSFUL = "successful"
    UNSUCCESSFUL = "unsuccessful"
    NO_RUNBOOK = "no_runbook"
    REJECTED = "rejected"
    APPROVAL_TIMED_OUT = "approval_timed_out"


class ChangeResult(BaseModel):
    number: str
    outcome: ChangeOutcome
    close_code: str = ""
    close_notes: str = ""
    runbook: str = ""
    steps: list[StepRecord] = []
    failed_step: str = ""
    error: str = ""
    incident: str = ""  # the incident a failure opened (number)


class ChangeStatus(StepProgress):
    """Answer of the `status` query on a change workflow."""

    number: str
    phase: str  # loading | resolving | starting | awaiting_approval | running | closing | done
    runbook: str = ""
    ticket_state: str = ""
    gate: GateState = GateState()
    result: ChangeResult | None = None


class BeginInput(BaseModel):
    ticket: ChangeTicket
    runbook: str


class BeginResult(BaseModel):
    state: str
    execution_url: str  # built in the worker from CHANGELOOP_UI_URL, which workflows cannot read


class NoteInput(BaseModel):
    table: str = "change_request"
    sys_id: str
    text: str


class CloseInput(BaseModel):
    ticket: ChangeTicket
    close_code: str
    close_notes: str
