"""A test workflow that writes one work note through the product's activity (`add_work_note`), so a test can make
that one write fail for the caller and watch its retry."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.change.models import NoteInput


@workflow.defn(name="WriteNoteWorkflow")
class WriteNoteWorkflow:
    @workflow.run
    async def run(self, note: NoteInput) -> None:
        await calls.ADD_WORK_NOTE(note)
