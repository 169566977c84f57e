"""Change-ticket activities: read the change, move it along the change model, write work notes, close it.

Every write is safe to retry: state moves only step forward from the state the instance reports now
(activities/change/moves.py: the Change Management API's next states where the instance has it), and a work note
retried after a lost answer is looked up in the journal before it is written again (activities/lookups.py: also
when the integration user may not read the journal entry). Work notes and close notes pass the scrubber
(ops/scrub.py) on their way to the ticket: they quote step output.
changeloop never moves a change through Assess or Authorize: those are the approval flow's moves
(docs/architecture.md, "Trust"); it takes a change that ServiceNow has Scheduled to Implement, then to Closed, or
cancels it when it was not implemented.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.change.moves import ChangeMoves
from activities.errors import servicenow_errors
from activities.lookups import journal_has
from config.settings import Settings
from ops.scrub import SCRUBBER
from servicenow.change_request import ChangeRequest, ChangeState
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from servicenow.schedules import servicenow_datetime
from workflows import calls
from workflows.change.models import (
    INVALID_TICKET_STATE,
    BeginInput,
    BeginResult,
    ChangeTicket,
    CloseInput,
    NoteInput,
    WatchPolicy,
)
from workflows.change.readiness import CHANGE_NOT_READY, state_label

CHANGE_FIELDS = [
    "sys_id",
    "number",
    "state",
    "type",
    "approval",
    "on_hold",
    "on_hold_reason",
    "category",
    "short_description",
    "cmdb_ci",
    "std_change_producer_version",
    "start_date",
    "end_date",
]


def ticket_of(record: dict[str, object]) -> ChangeTicket:
    change = ChangeRequest.model_validate(record)
    return ChangeTicket(
        sys_id=change.sys_id,
        number=change.number,
        state=change.state,
        type=change.type or "standard",
        approval=change.approval,
        on_hold=change.on_hold == "true",
        on_hold_reason=change.on_hold_reason,
        category=change.category,
        template=change.template,
        cmdb_ci=change.cmdb_ci,
        cmdb_ci_name=change.cmdb_ci_name,
        short_description=change.short_description,
        planned_start=servicenow_datetime(change.start_date),
        planned_end=servicenow_datetime(change.end_date),
    )


class TicketActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.settings = settings
        self.moves = ChangeMoves(sn, settings.change_api)

    @activity.defn(name=calls.LOAD_CHANGE.name)
    async def load_change(self, number: str) -> ChangeTicket:
        async with servicenow_errors():
            record = await self.sn.first(
                "change_request",
                Query().eq("number", number),
                fields=CHANGE_FIELDS,
                display_value="all",
            )
        if record is None:
            raise ApplicationError(
                f"change {number} not found in ServiceNow", type="ChangeNotFound", non_retryable=True
            )
        return ticket_of(record)

    @activity.defn(name=calls.READ_TICKET.name)
    async def read_ticket(self, sys_id: str) -> ChangeTicket:
        """The change as it is now (the ticket watch: hold, cancel, reschedule), by sys_id: one GET."""
        async with servicenow_errors():
            record = await self.sn.get("change_request", sys_id, fields=CHANGE_FIELDS, display_value="all")
        return ticket_of(record)

    @activity.defn(name=calls.WATCH_POLICY.name)
    async def watch_policy(self) -> WatchPolicy:
        return WatchPolicy(
            poll_interval=self.settings.ticket_poll_interval,
            reschedule_wait=self.settings.reschedule_wait,
            hint_reads_per_hour=self.settings.ticket_hint_reads_per_hour,
        )

    @activity.defn(name=calls.BEGIN_IMPLEMENTATION.name)
    async def begin_implementation(self, request: BeginInput) -> BeginResult:
        """Scheduled -> Implement with the execution reference and the first work note, in one write (one PATCH:
        the instance journals the note with the move). A retry whose first attempt committed finds the change in
        Implement with this execution's reference and writes nothing."""
        info = activity.info()
        workflow_id = info.workflow_id or ""
        url = self.settings.execution_url(workflow_id, info.workflow_run_id)
        note = f"Started by changeloop: {url}\nRunbook: {request.runbook}\nExecution: {workflow_id}"
        body = {"correlation_id": workflow_id, "correlation_display": "changeloop"}
        if self.settings.execution_url_field:
            body[self.settings.execution_url_field] = url
        async with servicenow_errors():
            current = await self.sn.get(
                "change_request", request.ticket.sys_id, fields=["state", "approval", "on_hold", "correlation_id"]
            )
            ours = current.get("state") == ChangeState.IMPLEMENT and current.get("correlation_id") == workflow_id
            if not ours:
                self._check_ready(request.ticket.number, current)
                body |= {"state": ChangeState.IMPLEMENT.value, "work_notes": SCRUBBER.text(note)}
                await self.moves.patch(request.ticket.sys_id, body)
        return BeginResult(state=ChangeState.IMPLEMENT.value, execution_url=url)

    @staticmethod
    def _check_ready(number: str, current: dict[str, object]) -> None:
        """Re-read just before the write: the ticket may have changed since the workflow read it."""
        problems = []
        if current.get("approval") != "approved":
            problems.append(f"its approval in ServiceNow is '{current.get('approval') or '(empty)'}', not 'approved'")
        if current.get("state") != ChangeState.SCHEDULED:
            problems.append(f"it is in state {state_label(str(current.get('state', '')))}, not Scheduled")
        if current.get("on_hold") == "true":
            problems.append("it is on hold")
        if problems:
            raise ApplicationError(f"{number}: " + "; ".join(problems), type=CHANGE_NOT_READY, non_retryable=True)

    @activity.defn(name=calls.ADD_WORK_NOTE.name)
    async def add_work_note(self, request: NoteInput) -> None:
        request = request.model_copy(update={"text": SCRUBBER.text(request.text)})
        async with servicenow_errors():
            if activity.in_activity() and activity.info().attempt > 1 and await self._note_exists(request):
                return  # an earlier attempt wrote it and lost the answer
            await self.sn.update(request.table, request.sys_id, {"work_notes": request.text}, fields=["sys_id"])

    async def _note_exists(self, request: NoteInput) -> bool:
        return await journal_has(self.sn, request.sys_id, "work_notes", request.text)

    @activity.defn(name=calls.CLOSE_CHANGE.name)
    async def close_change(self, request: CloseInput) -> str:
        """Implement -> Review -> Closed with close_code and close_notes; or Canceled with the notes (`cancel`, or a
        change never implemented: nothing is faked). A change already Closed or Canceled is left as it is."""
        closing = {"close_notes": SCRUBBER.text(request.close_notes)}
        if request.close_code:
            closing["close_code"] = request.close_code
        ticket = request.ticket
        async with servicenow_errors():
            current = str((await self.sn.get("change_request", ticket.sys_id, fields=["state"])).get("state", ""))
            if current in (ChangeState.CLOSED, ChangeState.CANCELED):
                return current
            never_implemented = current in (
                ChangeState.NEW,
                ChangeState.ASSESS,
                ChangeState.AUTHORIZE,
                ChangeState.SCHEDULED,
            )
            if request.cancel or never_implemented:
                if current == ChangeState.REVIEW:
                    raise ApplicationError(
                        f"{ticket.number} is in Review: a change in Review cannot be canceled",
                        type=INVALID_TICKET_STATE,
                        non_retryable=True,
                    )
                return await self.moves.move(ticket.sys_id, ticket.type, ChangeState.CANCELED, closing)
            return await self.moves.move(ticket.sys_id, ticket.type, ChangeState.CLOSED, closing)
