"""`changeloop schedules apply` is idempotent and keeps an operator's pause; list and delete act on our table."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from config.registry import Registry
from config.settings import Settings
from starter import schedules


async def test_apply_creates_then_updates_keeping_pause_and_delete_removes(
    temporal_client: Client, shim_settings: Settings, registry: Registry
) -> None:
    await schedules.delete(temporal_client)  # another run on this server may have left it
    try:
        first = await schedules.apply(temporal_client, shim_settings, registry)
        assert (schedules.CHANGE_POLL, "created") in [(a.id, a.action) for a in first]

        handle = temporal_client.get_schedule_handle(schedules.CHANGE_POLL)
        await handle.pause(note="incident in progress")
        faster = registry.model_copy(
            update={"poll": registry.poll.model_copy(update={"interval": timedelta(minutes=1)})}
        )
        second = await schedules.apply(temporal_client, shim_settings, faster, [schedules.CHANGE_POLL])
        assert [a.action for a in second] == ["updated"]

        described = await handle.describe()
        assert described.schedule.spec.intervals[0].every == timedelta(minutes=1)
        assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert described.schedule.state.paused is True  # a deploy must not resume what an operator paused
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "ChangePollWorkflow" and action.task_queue == shim_settings.task_queue

        (report,) = await schedules.describe(temporal_client, [schedules.CHANGE_POLL])
        assert report.exists and report.paused and report.workflow == "ChangePollWorkflow"
        assert report.note == "incident in progress"
    finally:
        assert schedules.CHANGE_POLL in await schedules.delete(temporal_client)
    (gone,) = await schedules.describe(temporal_client, [schedules.CHANGE_POLL])
    assert gone.exists is False
    assert await schedules.delete(temporal_client) == []
