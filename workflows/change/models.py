"""The change workflow's contract: its input, the approval gate's messages, its status and result, and the ticket
activities' payloads. The shim, the CLI and the `temporal` CLI send these shapes; they carry ticket data and IDs
only - never a credential.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from config.runbooks import Duration

# The approval gate's contract lives in workflows/gate/models.py (the gate is held by the runbook's own workflow);
# these names stay importable from here, where callers knew them.
from workflows.gate.models import (
    GATE_EMPTY_APPROVER as GATE_EMPTY_APPROVER,
)
from workflows.gate.models import (
    GATE_NOT_OPEN as GATE_NOT_OPEN,
)
from workflows.gate.models import (
    GATE_NOT_PROVEN as GATE_NOT_PROVEN,
)
from workflows.gate.models import (
    GATE_UNKNOWN_APPROVER as GATE_UNKNOWN_APPROVER,
)
from workflows.gate.models import (
    SIGNAL_APPROVE as SIGNAL_APPROVE,
)
from workflows.gate.models import (
    SIGNAL_REJECT as SIGNAL_REJECT,
)
from workflows.gate.models import (
    UPDATE_DECIDE as UPDATE_DECIDE,
)
from workflows.gate.models import (
    ApprovalInput as ApprovalInput,
)
from workflows.gate.models import (
    DecideInput as DecideInput,
)
from workflows.gate.models import (
    Decision as Decision,
)
from workflows.gate.models import (
    GateState as GateState,
)
from workflows.gate.models import (
    GateStatus as GateStatus,
)
from workflows.status import StepProgress, StepRecord

# A hint from ServiceNow's change-event Business Rule (canceled, on hold, rescheduled): the change's ticket watch reads
# the ticket again, and the change forwards it to its runbook or wave, whose watch does the same (watch.py).
SIGNAL_TICKET_CHANGED = "ticket_changed"
# The failure type of a move the change's state does not allow (e.g. Canceled from Review): never retried.
INVALID_TICKET_STATE = "InvalidTicketState"


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
    on_hold: bool = False
    on_hold_reason: str = ""
    category: str = ""
    template: str = ""  # std_change_producer_version display name
    cmdb_ci: str = ""  # sys_id
    cmdb_ci_name: str = ""
    short_description: str = ""
    # The planned window (start_date / end_date, UTC); None when the change has none.
    planned_start: datetime | None = None
    planned_end: datetime | None = None


class ChangeInput(BaseModel):
    """A change to run. Only the number is taken from the caller: everything else is read from ServiceNow."""

    number: str
    source: Literal["webhook", "poll", "cli", "api"] = "webhook"


class ChangeOutcome(StrEnum):
    SUCCESSFUL = "successful"
    UNSUCCESSFUL = "unsuccessful"
    NO_RUNBOOK = "no_runbook"
    REJECTED = "rejected"
    APPROVAL_TIMED_OUT = "approval_timed_out"
    NOT_READY = "not_ready"  # ServiceNow does not let it be implemented (approval, state, hold, type): nothing ran
    NOT_FOUND = "not_found"  # no such change in ServiceNow: bad input, not a failure (no incident)
    CANCELED = "canceled"  # the execution was cancelled (Temporal): the ticket is Canceled with the reason
    CANCELED_IN_SERVICENOW = "canceled_in_servicenow"  # someone canceled (or closed) the ticket: changeloop stopped
    WINDOW_ENDED = "window_ended"  # the planned end passed mid-run: the rest did not run, closed unsuccessful
    BLOCKED = "blocked"  # no allowed time in its window and not rescheduled in time: nothing ran


class TicketEvent(BaseModel):
    """What the change-event Business Rule sends (canceled, put on hold, rescheduled): a hint to re-read the ticket."""

    number: str = ""
    sys_id: str = ""
    state: str = ""
    on_hold: str = ""
    on_hold_reason: str = ""
    start_date: str = ""
    end_date: str = ""


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


class Waiting(BaseModel):
    """Why a change (or its runbook, its wave) does not go on now, and until when (None: until the ticket changes)."""

    phase: str  # waiting_for_window | blackout | on_hold | waiting_for_reschedule
    reason: str
    until: datetime | None = None
    since: datetime | None = None


class ChangeStatus(StepProgress):
    """Answer of the `status` query on a change workflow."""

    number: str
    # loading | resolving | waiting_for_window | blackout | on_hold | waiting_for_reschedule | starting |
    # awaiting_approval | running | closing | canceling | done
    phase: str
    runbook: str = ""
    ticket_state: str = ""
    gate: GateState = GateState()
    result: ChangeResult | None = None
    ticket_events: list[TicketEvent] = []  # hints from ServiceNow about this change, newest last (kept: last 5)
    waiting: Waiting | None = None  # what the change waits for before it goes on (window, blackout, hold)
    closed_notice: str = ""  # the Slack confirmation of the close: sent | off | not configured | failed: <why>


class BeginInput(BaseModel):
    ticket: ChangeTicket
    runbook: str


class BeginResult(BaseModel):
    state: str
    execution_url: str  # built in the worker from CHANGELOOP_UI_URL, which workflows cannot read


class NoteInput(BaseModel):
    # Only the change request: a free table name would let an input aim the integration user's writes anywhere.
    # (The field stays, so inputs recorded in histories before it was narrowed still decode.)
    table: Literal["change_request"] = "change_request"
    sys_id: str
    text: str


class CloseInput(BaseModel):
    ticket: ChangeTicket
    close_code: str
    close_notes: str
    # Cancel the change (state Canceled, from any state before Review) instead of walking it to Closed: it was not
    # implemented (rejected or timed-out gate, an execution cancelled). close_code may then be empty.
    cancel: bool = False


# -- the ticket watch (workflows/change/watch.py) ------------------------------------------------------------------
class WatchPolicy(BaseModel):
    """The worker's settings for the ticket watch, read through an activity (workflows cannot read settings)."""

    poll_interval: Duration = timedelta(seconds=60)
    reschedule_wait: Duration = timedelta(days=14)
    hint_reads_per_hour: int = 60


class ScheduleQuery(BaseModel):
    """Is the change allowed to run at `at` by ServiceNow's blackout and maintenance schedules?"""

    change_sys_id: str
    ci_sys_id: str
    planned_start: datetime
    planned_end: datetime
    at: datetime


class ScheduleFinding(BaseModel):
    blocked_by: str = ""  # why not at `at` ("" when allowed)
    allowed_from: datetime | None = None  # the next allowed moment before the planned end (None: none remains)
    checked_with: str = ""  # change_api (conflict check) | table_api (cmn_schedule)
