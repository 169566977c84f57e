"""When the ticket watch reads the ticket (review findings): a hint while the ticket cannot be read does not make it
read in a loop; a wait that reaches its time reads the ticket before it goes on."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client

from config.registry import Registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.change.windows import later, plan, status_when
from tests.changes import Changes, start
from tests.conftest import SandboxControl
from tests.helpers import wait_for
from worker import build_worker
from workflows.change.models import SIGNAL_TICKET_CHANGED, TicketEvent

pytestmark = pytest.mark.usefixtures("worker")


async def _reads_of_the_ticket(handle: Any) -> int:
    history = await handle.fetch_history()
    return sum(
        1
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "read_ticket"
    )


async def test_a_hint_while_the_ticket_cannot_be_read_does_not_spin_the_watch(
    temporal_client: Client, settings: Settings, changes: Changes, hidden_rows: SandboxControl
) -> None:
    """A failed read re-armed the hint, so one hint during an outage (here: the ticket hidden, every GET a 404) read
    in a tight loop - 16 reads in 0.3 s - towards the history's event limit. The next read waits for the poll."""
    change = await changes.create(template="Restart application service")
    start_at = later(3600)
    await plan(changes, change, start_at, start_at + timedelta(hours=1))
    handle = await start(temporal_client, settings, change["number"])
    try:
        await status_when(handle, lambda s: s.phase == "waiting_for_window", "waiting for the window")
        await hidden_rows.hide_rows("change_request", sys_ids=[change["sys_id"]])
        before = await _reads_of_the_ticket(handle)
        await handle.signal(SIGNAL_TICKET_CHANGED, TicketEvent(number=change["number"], sys_id=change["sys_id"]))
        await wait_for(lambda: _reads_after(handle, before, 1), timeout=15, message="the hint's read")
        began = time.monotonic()
        await asyncio.sleep(4)  # the scenario is a rate: reads over 4 s, at a 1 s poll interval
        reads = await _reads_of_the_ticket(handle) - before
        assert reads <= 1 + 4 + 1, f"{reads} reads of an unreadable ticket within {time.monotonic() - began:.1f} s"
    finally:
        await handle.terminate(reason="test over")


async def _reads_after(handle: Any, before: int, count: int) -> bool:
    return await _reads_of_the_ticket(handle) - before >= count


async def test_a_start_moved_later_between_two_polls_is_read_when_the_old_start_comes(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    """An unchanged wait backs its poll off (1, 2, 4, 8, 16 s here; up to an hour in production). The planned start
    moved later between two polls, with no Business Rule hint, started the change at the old start; now the watch
    reads the ticket when the old start comes and waits for the new one."""
    change = await changes.create(template="Restart application service")
    started = time.monotonic()
    start_at = later(27)
    await plan(changes, change, start_at, start_at + timedelta(hours=2))
    handle = await start(temporal_client, settings, change["number"])
    try:
        await status_when(handle, lambda s: s.phase == "waiting_for_window", "waiting for the window")
        # After the watch's backed-off read at ~16 s (the next one is due at ~32 s), before the old start at 27 s.
        await wait_for(lambda: time.monotonic() - started > 18, timeout=30, interval=0.1, message="18 s passed")
        new_start = later(3600)
        await plan(changes, change, new_start, new_start + timedelta(hours=1))
        waiting = await status_when(
            handle,
            lambda s: s.waiting is not None and s.waiting.until == new_start,
            "waiting for the new planned start",
            within=30,
        )
        ticket = await changes.get(change["sys_id"])
    finally:
        await handle.terminate(reason="test over")

    assert waiting.phase == "waiting_for_window"
    assert ticket["state"] == "-2", "still Scheduled: it did not start at its old planned start"


async def test_a_flood_of_hints_reads_the_ticket_at_most_the_hourly_hint_budget(
    temporal_client: Client, settings: Settings, registry: Registry, changes: Changes, sandbox: Any
) -> None:
    """An attacker holding the Business Rule's credential (`change:webhook`) sends hint after hint to a change that
    waits for its window: each hint used to cost a ticket read (an activity in the history), so enough of them fill
    the history to its event limit. Hinted reads now stop at the hourly budget; later hints wait for the poll."""
    budget = 3
    watched = settings.model_copy(
        update={"task_queue": f"hint-budget-{uuid.uuid4().hex[:6]}", "ticket_hint_reads_per_hour": budget}
    )
    change = await changes.create(template="Restart application service")
    start_at = later(3600)
    await plan(changes, change, start_at, start_at + timedelta(hours=1))
    async with ServiceNowClient.from_settings(watched) as sn, build_worker(temporal_client, watched, registry, sn):
        handle = await start(temporal_client, watched, change["number"])
        try:
            await status_when(handle, lambda s: s.phase == "waiting_for_window", "waiting for the window")
            # Past the first backed-off polls: from here a poll comes every 8 s or later.
            await wait_for(lambda: _reads_after(handle, 0, 5), timeout=30, message="the first polls")
            hint = TicketEvent(number=change["number"], sys_id=change["sys_id"])
            answered = 0
            for _ in range(budget + 4):
                before = await _reads_of_the_ticket(handle)
                await handle.signal(SIGNAL_TICKET_CHANGED, hint)
                try:
                    # A hint within the budget is answered, however loaded the machine: wait 5 s for its read (a late
                    # one still spends the budget). Past the budget, 2 s shows whether a read follows the hint at once.
                    wait = 5 if answered < budget else 2
                    await wait_for(lambda b=before: _reads_after(handle, b, 1), timeout=wait, interval=0.05)  # type: ignore[misc]
                    answered += 1
                except TimeoutError:
                    pass
        finally:
            await handle.terminate(reason="test over")
    assert budget <= answered <= budget + 1, f"{answered} hints answered by a read (budget {budget}; one poll may land)"
