"""Change-ticket activities: read the change, move it along the change model, write work notes, close it.

Every write is safe to retry: state moves only step forward from the state the instance reports now, and a work
note retried after a lost answer is looked up in the journal before it is written again (activities/lookups.py:
also when the integration user may not read the journal entry). Work notes and close notes pass the scrubber
(ops/scrub.py) on their way to the ticket: they quote step output.
changeloop never moves a change through Assess or Authorize: those are the approval flow's moves
(docs/architecture.md, "Trust"); it takes a change that ServiceNow has Scheduled to Implement, and nothing else.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import servicenow_errors
from activities.lookups import journal_has
from config.settings import Settings
from ops.scrub import SCRUBBER
from servicenow.change_request import ChangeRequest, ChangeState, transitions_between
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from workflows import calls
from workflows.change.models import BeginInput, BeginResult, ChangeTicket, CloseInput, NoteInput
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
]


class TicketActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.settings = settings

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
        )

    async def _current_state(self, sys_id: str) -> str:
        record = await self.sn.get("change_request", sys_id, fields=["state"])
        return str(record.get("state", ""))

    async def _walk_to(self, ticket: ChangeTicket, target: ChangeState, extra: dict[str, str]) -> str:
        """Move one allowed transition at a time: the change model refuses jumps (403 from a business rule)."""
        current = await self._current_state(ticket.sys_id)
        path = transitions_between(ticket.type, current, target)
        if current != target and not path:
            raise ApplicationError(
                f"{ticket.number} is in state {ChangeState(current).name if current in ChangeState._value2member_map_ else current}"
                f" and cannot move to {target.name} along the {ticket.type} change model",
                type="InvalidTicketState",
                non_retryable=True,
            )
        for state in path:
            body = {"state": state.value} | (extra if state == target else {})
            await self.sn.update("change_request", ticket.sys_id, body, fields=["state"])
        if not path and extra:
            await self.sn.update("change_request", ticket.sys_id, extra, fields=["state"])
        return target.value

    @activity.defn(name=calls.BEGIN_IMPLEMENTATION.name)
    async def begin_implementation(self, request: BeginInput) -> BeginResult:
        info = activity.info()
        workflow_id = info.workflow_id or ""
        url = self.settings.execution_url(workflow_id, info.workflow_run_id)
        reference = {"correlation_id": workflow_id, "correlation_display": "changeloop"}
        if self.settings.execution_url_field:
            reference[self.settings.execution_url_field] = url
        async with servicenow_errors():
            current = await self.sn.get(
                "change_request", request.ticket.sys_id, fields=["state", "approval", "on_hold", "correlation_id"]
            )
            state = str(current.get("state", ""))
            ours = state == ChangeState.IMPLEMENT and current.get("correlation_id") == workflow_id  # a retry
            if not ours:
                self._check_ready(request.ticket.number, current)
                # Scheduled -> Implement, with the execution reference, in one write.
                body = reference | {"state": ChangeState.IMPLEMENT.value}
                await self.sn.update("change_request", request.ticket.sys_id, body, fields=["state"])
            state = ChangeState.IMPLEMENT.value
        await self.add_work_note(
            NoteInput(
                sys_id=request.ticket.sys_id,
                text=f"Started by changeloop: {url}\nRunbook: {request.runbook}\nExecution: {workflow_id}",
            )
        )
        return BeginResult(state=state, execution_url=url)

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
        closing = {"close_code": request.close_code, "close_notes": SCRUBBER.text(request.close_notes)}
        async with servicenow_errors():
            current = await self._current_state(request.ticket.sys_id)
            if current == ChangeState.CLOSED:
                return current
            if current in (ChangeState.NEW, ChangeState.ASSESS, ChangeState.AUTHORIZE, ChangeState.SCHEDULED):
                # Never implemented (rejected or timed out at the gate): cancel rather than fake an implementation.
                await self.sn.update(
                    "change_request",
                    request.ticket.sys_id,
                    {"state": ChangeState.CANCELED.value} | closing,
                    fields=["state"],
                )
                return ChangeState.CANCELED.value
            return await self._walk_to(request.ticket, ChangeState.CLOSED, closing)
