"""A test workflow that runs the product's `close_change` activity once, as the change workflow does, so a test can
watch how it moves a change (and how it refuses one it cannot move)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.change.models import CloseInput


@workflow.defn(name="CloseChangeTestWorkflow")
class CloseChangeWorkflow:
    @workflow.run
    async def run(self, request: CloseInput) -> str:
        return await calls.CLOSE_CHANGE(request)
