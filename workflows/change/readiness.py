"""Whether ServiceNow lets a change be implemented now: the change workflow asks before it touches the ticket.

ServiceNow decides what may run (docs/architecture.md, "Trust"): the ticket as the integration user reads it, never
the webhook's body. A change is ready when its approval is `approved`, it is Scheduled (a standard change is
pre-approved into Scheduled; a normal or emergency change gets there through its approvals, never through
changeloop's PATCHes), it is not on hold, and its type is one its runbook allows. Pure: the ticket was read by an
activity, so this runs in workflow code and its answer replays.
"""

from __future__ import annotations

from servicenow.change_request import Approval, ChangeState
from workflows.change.models import ChangeTicket
from workflows.runbook.models import RunbookPlan

# The error type begin_implementation raises when the ticket changed between the read and the write.
CHANGE_NOT_READY = "ChangeNotReady"


def state_label(value: str) -> str:
    return ChangeState(value).name.title() if value in ChangeState._value2member_map_ else (value or "(empty)")


def not_ready(ticket: ChangeTicket, runbook: RunbookPlan | None) -> str:
    """Why the change may not be implemented now ("" when it may)."""
    reasons = []
    if ticket.approval != Approval.APPROVED:
        reasons.append(f"its approval in ServiceNow is '{ticket.approval or '(empty)'}', not 'approved'")
    if ticket.state != ChangeState.SCHEDULED:
        reasons.append(f"it is in state {state_label(ticket.state)}, not Scheduled")
    if ticket.on_hold:
        reasons.append("it is on hold" + (f" ({ticket.on_hold_reason})" if ticket.on_hold_reason else ""))
    if runbook is not None and ticket.type not in runbook.change_types:
        allowed = ", ".join(runbook.change_types)
        reasons.append(f"it is a {ticket.type} change and runbook '{runbook.name}' runs {allowed} changes only")
    return "; ".join(reasons)
