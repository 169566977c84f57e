"""A work note retried after its write landed (the instance committed it, then the answer was lost) is written once,
also when the integration user may not read the change's journal (an ACL hides its entries: the instance still
counts them)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from activities.catalog import central_activities
from config.registry import load_registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.change.note_workflow import WriteNoteWorkflow
from tests.changes import TEST_REGISTRY, Changes
from tests.conftest import SandboxControl
from workflows.change.models import NoteInput


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def note_worker(temporal_client: Client, settings: Settings, sandbox: Any) -> AsyncIterator[Settings]:
    noted = settings.model_copy(update={"task_queue": "notes-test"})
    async with ServiceNowClient.from_settings(noted) as sn:
        activities = central_activities(temporal_client, noted, load_registry(TEST_REGISTRY), sn)
        async with Worker(
            temporal_client, task_queue=noted.task_queue, workflows=[WriteNoteWorkflow], activities=activities
        ):
            yield noted


async def _write_note(client: Client, settings: Settings, sys_id: str, text: str) -> int:
    """Run the note write; answer how many attempts its activity made."""
    handle = await client.start_workflow(
        WriteNoteWorkflow.run,
        NoteInput(sys_id=sys_id, text=text),
        id=f"note-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    await handle.result()
    history = await handle.fetch_history()
    return max(
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    )


async def _lose_the_next_answer(control: SandboxControl) -> None:
    await control.set_faults(rules=[{"method": "PATCH", "table": "change_request", "mode": "error_after_write"}])


async def test_a_note_whose_answer_was_lost_is_written_once(
    temporal_client: Client, note_worker: Settings, changes: Changes, reset_faults: SandboxControl
) -> None:
    change = await changes.create()
    text = f"Step 'one' succeeded ({uuid.uuid4().hex[:6]})\nsecond line"
    await _lose_the_next_answer(reset_faults)

    attempts = await _write_note(temporal_client, note_worker, change["sys_id"], text)

    assert attempts >= 2, "the write was retried: the fault bit"
    assert (await changes.work_notes(change["sys_id"])).count(text) == 1


async def test_a_note_whose_answer_was_lost_is_written_once_even_when_the_journal_is_hidden(
    temporal_client: Client,
    note_worker: Settings,
    changes: Changes,
    reset_faults: SandboxControl,
    hidden_rows: SandboxControl,
) -> None:
    change = await changes.create()
    text = f"Step 'two' succeeded ({uuid.uuid4().hex[:6]})\nsecond line"
    await hidden_rows.hide_rows("sys_journal_field", query=f"element_id={change['sys_id']}")
    await _lose_the_next_answer(reset_faults)

    attempts = await _write_note(temporal_client, note_worker, change["sys_id"], text)
    await hidden_rows.clear_acl()

    assert attempts >= 2, "the write was retried: the fault bit"
    assert (await changes.work_notes(change["sys_id"])).count(text) == 1, "no second note beside the hidden one"
