"""The ticket watch: what the change, runbook and wave workflows consult between units of work (steps, hosts, pages)
and while they wait, so that ServiceNow's say over a running change holds until its end.

It answers *proceed*, *stop* (the change was canceled or closed in ServiceNow; its planned window ended; no allowed
time remains in it) or waits itself until it may proceed: the change is on hold, its planned start is ahead, or a
blackout (or the lack of a maintenance window) blocks it now - until the time it names, or until the ticket changes.

The ticket is read (one GET, `read_ticket`) only when there is a reason to: a `ticket_changed` hint arrived (the
change-event Business Rule fires on cancel, hold and reschedule; the change forwards its hints to its runbook or
wave, as workflows/gate/relay.py forwards decisions), or the poll interval passed (`CHANGELOOP_TICKET_POLL_INTERVAL`,
read through an activity). While a wait goes on unchanged the poll backs off to an hour at most (a hint still wakes
it at once), so a change held for days keeps its history small. A read that fails (the instance is down) is not a
verdict: the watch goes on with what it last knew and reads again at the next poll (at the base interval; a hint
during the outage does not make it read more often). A wait that ends at its time (a planned start, a blackout's
end) reads the ticket before it goes on. Schedules are asked only where
the caller says (before Implement, before each wave page) and only of a change with a CI and both planned dates
(what ServiceNow's conflict detection needs).

Each wait is noted on the ticket once (and again when what it waits for changes: a rescheduled start), and shown in
the owner's status (`Waiting`). Pure orchestration: every read is an activity, every time is `workflow.now()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from servicenow.change_request import Approval, ChangeState
    from servicenow.schedules import shown
    from workflows import calls
    from workflows.change.models import (
        SIGNAL_TICKET_CHANGED,
        ChangeTicket,
        ScheduleQuery,
        TicketEvent,
        Waiting,
        WatchPolicy,
    )
    from workflows.change.readiness import state_label
    from workflows.gate.gate import Gate, pass_gate
    from workflows.runbook.models import RunbookPlan, RunbookResult

# Changed workflow logic of issue 13 / 14 (the watch, cancellation as an outcome, step-time budgets, windows): every
# workflow that has it asks `workflow.patched(TICKET_WATCH)` first thing in its run; older histories replay without.
TICKET_WATCH = "ticket-watch"

# Why a watch stops a run (RunbookResult.stopped, the change's outcome).
CANCELED_IN_SERVICENOW = "canceled_in_servicenow"
WINDOW_ENDED = "window_ended"
NO_ALLOWED_TIME = "no_allowed_time"
BLOCKED = "blocked"

# Phases of a wait (the owners' status).
WAITING_FOR_WINDOW = "waiting_for_window"
BLACKOUT = "blackout"
ON_HOLD = "on_hold"
WAITING_FOR_RESCHEDULE = "waiting_for_reschedule"

# One attempt (the client retries a GET itself, a few seconds): a watch in an outage goes on with what it knew.
READ_ATTEMPTS = calls.attempts(1)
READ_TIMEOUT = timedelta(seconds=30)
LONGEST_POLL = timedelta(hours=1)


@dataclass(frozen=True)
class Stop:
    kind: str  # canceled_in_servicenow | window_ended | no_allowed_time | blocked
    reason: str


Note = Callable[[str], Awaitable[None]]
Mirror = Callable[[Waiting | None], None]


class TicketWatch:
    """One per workflow that works on a ticket. Handlers call `hint` (no commands); the run calls `begin` once,
    then `guard` between units and `watch_until_stopped` while something else waits (the approval gate)."""

    def __init__(self, sys_id: str, *, window: bool = True, note: Note | None = None, mirror: Mirror | None = None):
        self.sys_id = sys_id
        self.window = window  # the runbook respects the planned window and the schedules (`window: respect`)
        self.ticket: ChangeTicket | None = None
        self.policy = WatchPolicy()
        self.waiting: Waiting | None = None
        self._note = note
        self._mirror = mirror
        self._hinted = False
        self._hint_reads: list[datetime] = []  # when hints were answered with a read, the last hour's
        self._next_read: datetime | None = None
        self._backoff = 0
        self._noted = ""
        self._child = ""  # the child's workflow ID

    # -- messages -------------------------------------------------------------------------------------------------
    def hint(self) -> None:
        self._hinted = True

    def attach(self, child: Any) -> None:
        """The run's child (runbook or wave): hints received from now on are forwarded to it - by ID, so a wave that
        continued as new gets them in its current run."""
        self._child = child.id

    async def forward(self, event: TicketEvent) -> None:
        if not self._child:
            return
        try:
            await workflow.get_external_workflow_handle(self._child).signal(SIGNAL_TICKET_CHANGED, event)
        except Exception as error:  # the child has closed: nothing left to tell
            workflow.logger.info("ticket hint not forwarded: %s", error)

    # -- the run --------------------------------------------------------------------------------------------------
    async def begin(self, ticket: ChangeTicket | None = None) -> None:
        """Read the watch's settings; `ticket` is the change as just read (else the first guard reads it)."""
        self.policy = await calls.WATCH_POLICY(None)
        self.ticket = ticket
        self._next_read = workflow.now() + self.policy.poll_interval if ticket is not None else workflow.now()

    async def guard(
        self,
        before: str,
        *,
        schedules: bool = False,
        read: bool = False,
        reschedulable: bool = False,
        windowed: bool = True,
    ) -> Stop | None:
        """None: go on with `before` (a step, a host, a page, Implement). Stop: do not. Waits here meanwhile.

        `schedules`: ask ServiceNow's schedules too. `read`: read the ticket now whatever the poll says.
        `reschedulable`: nothing was changed yet, so a window that ended or has no allowed time left is waited out
        until the change is rescheduled (or `reschedule_wait` passes: then Stop(blocked)); so is a change taken back
        out of Scheduled to be rescheduled and approved again. `windowed=False`: hold and cancel only (closing)."""
        force, since = read, workflow.now()
        while True:
            if force or self._hint_due() or self._next_read is None or workflow.now() >= self._next_read:
                await self._read()
                force = False
            stop, wait = self._judge(before, windowed=windowed, unstarted=reschedulable)
            if stop is None and wait is None and schedules and windowed:
                stop, wait = await self._schedules(before)
            unrunnable = stop.reason if stop is not None and stop.kind in (WINDOW_ENDED, NO_ALLOWED_TIME) else ""
            if wait is not None and wait.phase == WAITING_FOR_RESCHEDULE:
                unrunnable = wait.reason
            if reschedulable and unrunnable:
                deadline = since + self.policy.reschedule_wait
                if workflow.now() >= deadline:
                    await self._settle(before, resumed=False)
                    return Stop(BLOCKED, f"{unrunnable}; it was not rescheduled by {shown(deadline)}")
                stop, wait = (
                    None,
                    Waiting(
                        phase=WAITING_FOR_RESCHEDULE,
                        reason=f"{unrunnable}. Reschedule it (a new planned start and end) and changeloop runs it then, "
                        f"or cancel it; changeloop waits until {shown(deadline)}",
                        until=deadline,
                    ),
                )
            if stop is not None:
                await self._settle(before, resumed=False)
                return stop
            if wait is None:
                await self._settle(before, resumed=True)
                return None
            await self._wait(wait, before)
            # The time it waited for has come: judge the ticket as it is now, not as the last (backed-off) poll saw
            # it - a planned start moved later meanwhile, without a hint, must not start the change at the old one.
            force = wait.until is not None and workflow.now() >= wait.until

    async def window_end(self) -> Stop:
        """Answers when the planned window has ended (read again then: a rescheduled end moves it), for a run whose
        running work may have to stop at the end, not only before its next unit (a wave's `window_end: roll_back`).
        Never answers for a runbook that ignores the window or a change without a planned end."""
        while True:
            end = self.ticket.planned_end if self.ticket is not None and self.window else None
            if end is None:
                await workflow.wait_condition(lambda: False)  # nothing ends it: cancelled with the run
            assert end is not None
            if workflow.now() < end:
                await workflow.sleep(end - workflow.now())
            await self._read()
            stop, _ = self._judge("the next host", windowed=True, unstarted=False)
            if stop is not None and stop.kind == WINDOW_ENDED:
                return stop

    async def watch_until_stopped(self, doing: str) -> Stop:
        """While the run waits for something else (the approval gate): read on hints and polls, and answer once the
        ticket says stop. A hold or a window ahead does not stop a gate: the guard before the first unit waits."""
        while True:
            await self._sleep(None)
            await self._read()
            stop, _ = self._judge(doing, windowed=False, unstarted=False)
            if stop is not None:
                return stop

    # -- judging --------------------------------------------------------------------------------------------------
    def _judge(self, before: str, *, windowed: bool, unstarted: bool) -> tuple[Stop | None, Waiting | None]:
        ticket, now = self.ticket, workflow.now()
        if ticket is None:
            return None, None
        if ticket.state == ChangeState.CANCELED:
            return Stop(CANCELED_IN_SERVICENOW, "the change was canceled in ServiceNow"), None
        if ticket.state == ChangeState.CLOSED:
            return Stop(CANCELED_IN_SERVICENOW, "the change was closed in ServiceNow"), None
        if ticket.on_hold:
            why = f" ({ticket.on_hold_reason})" if ticket.on_hold_reason else ""
            return None, Waiting(phase=ON_HOLD, reason=f"the change is on hold{why}")
        if unstarted and (ticket.state != ChangeState.SCHEDULED or ticket.approval != Approval.APPROVED):
            # Taken back to be rescheduled (a normal change goes back to New, then through its approvals again).
            return None, Waiting(
                phase=WAITING_FOR_RESCHEDULE,
                reason=f"it is {state_label(ticket.state)} with approval '{ticket.approval or '(empty)'}'; "
                "changeloop runs it once it is approved and Scheduled again",
            )
        if not (self.window and windowed):
            return None, None
        if ticket.planned_start is not None and now < ticket.planned_start:
            return None, Waiting(
                phase=WAITING_FOR_WINDOW,
                reason=f"its planned start is {shown(ticket.planned_start)}",
                until=ticket.planned_start,
            )
        if ticket.planned_end is not None and now >= ticket.planned_end:
            return Stop(WINDOW_ENDED, f"its planned window ended at {shown(ticket.planned_end)}"), None
        return None, None

    async def _schedules(self, before: str) -> tuple[Stop | None, Waiting | None]:
        ticket = self.ticket
        if not (self.window and ticket and ticket.cmdb_ci and ticket.planned_start and ticket.planned_end):
            return None, None
        finding = await calls.CHECK_SCHEDULES(
            ScheduleQuery(
                change_sys_id=ticket.sys_id,
                ci_sys_id=ticket.cmdb_ci,
                planned_start=ticket.planned_start,
                planned_end=ticket.planned_end,
                at=workflow.now(),
            )
        )
        if not finding.blocked_by:
            return None, None
        if finding.allowed_from is None:
            reason = (
                f"{finding.blocked_by}, and no allowed time remains in its planned window "
                f"(ends {shown(ticket.planned_end)})"
            )
            return Stop(NO_ALLOWED_TIME, reason), None
        reason = f"{finding.blocked_by}; the next allowed time in its planned window is {shown(finding.allowed_from)}"
        return None, Waiting(phase=BLACKOUT, reason=reason, until=finding.allowed_from)

    # -- reading and waiting --------------------------------------------------------------------------------------
    def _hint_due(self) -> bool:
        """A hint is waiting and this hour's hinted reads are not spent: read now. Spent, the hint waits for the
        poll (which reads anyway), so a flood of hints costs at most `hint_reads_per_hour` reads an hour."""
        if not self._hinted:
            return False
        hour_ago = workflow.now() - timedelta(hours=1)
        return sum(1 for at in self._hint_reads if at > hour_ago) < self.policy.hint_reads_per_hour

    async def _read(self) -> None:
        if self._hint_due():
            hour_ago = workflow.now() - timedelta(hours=1)
            self._hint_reads = [at for at in self._hint_reads if at > hour_ago] + [workflow.now()]
        self._hinted = False
        poll = min(self.policy.poll_interval * (2**self._backoff), LONGEST_POLL)
        self._next_read = workflow.now() + poll
        try:
            self.ticket = await calls.READ_TICKET.narrowed(retry=READ_ATTEMPTS, timeout=READ_TIMEOUT)(self.sys_id)
        except Exception as error:  # an outage: go on with what was known, read again at the next poll
            if is_cancelled_exception(error):
                raise
            # The hint is spent: re-arming it would read again at once, in a loop, for as long as the ticket cannot
            # be read (one hint would fill the history). The next poll, at the base interval, reads again.
            self._next_read = workflow.now() + self.policy.poll_interval
            workflow.logger.warning("ticket %s unreadable, the next poll reads again: %s", self.sys_id, error)

    async def _sleep(self, until: datetime | None) -> None:
        """Until `until`, the next poll or a hint, whichever comes first."""
        assert self._next_read is not None
        wake = min(until, self._next_read) if until is not None else self._next_read
        remaining = wake - workflow.now()
        if remaining > timedelta(0) and not self._hint_due():
            try:
                await workflow.wait_condition(self._hint_due, timeout=remaining)
            except TimeoutError:
                pass

    async def _wait(self, wait: Waiting, before: str) -> None:
        key = f"{wait.phase}|{wait.reason}"
        if key != self._noted:
            self._noted = key
            wait.since = workflow.now()
            self.waiting = wait
            if self._mirror is not None:
                self._mirror(wait)
            await self._tell(_waiting_note(wait, before))
        else:
            self._backoff += 1  # nothing changed since the last look: look less often
        await self._sleep(wait.until)

    async def _settle(self, before: str, *, resumed: bool) -> None:
        """A wait has ended (or there was none): the status says so, and a released hold is noted."""
        self._backoff = 0
        if self.waiting is None:
            return
        ended, self.waiting, self._noted = self.waiting, None, ""
        if self._mirror is not None:
            self._mirror(None)
        if resumed and ended.phase == ON_HOLD:
            await self._tell(f"changeloop goes on: the hold was released. Next: {before}.")

    async def _tell(self, text: str) -> None:
        if self._note is not None:
            await self._note(f"{text} (Execution {workflow.info().workflow_id})")


def _waiting_note(wait: Waiting, before: str) -> str:
    if wait.phase == WAITING_FOR_WINDOW:
        return f"changeloop waits for the change's planned start ({shown(wait.until) if wait.until else '?'}) before {before}."
    if wait.phase == ON_HOLD:
        return f"changeloop paused before {before}: {wait.reason}. It goes on once the hold is released."
    if wait.phase == BLACKOUT:
        return f"changeloop waits before {before}: {wait.reason}."
    return f"changeloop did not run this change: {wait.reason}. Nothing was run and the state was not changed."


async def pass_gate_watched(gate: Gate, plan: RunbookPlan, watch: TicketWatch | None) -> RunbookResult | Stop | None:
    """The approval gate (workflows/gate/gate.py `pass_gate`), and meanwhile the watch: a change canceled in ServiceNow
    while its gate waits stops the wait (the gate is closed, refusing what is pending) and answers why."""
    if watch is None or not plan.destructive:
        return await pass_gate(gate, plan)
    held = asyncio.ensure_future(pass_gate(gate, plan))
    watching = asyncio.ensure_future(watch.watch_until_stopped("its approval gate"))
    await workflow.wait([held, watching], return_when=asyncio.FIRST_COMPLETED)
    if held.done():
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        return held.result()
    held.cancel()
    await asyncio.gather(held, return_exceptions=True)
    stop = watching.result()
    gate.close(f"the approval gate was closed: {stop.reason}")
    return stop
