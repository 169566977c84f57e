"""Test workflows that make one evidence write each through the product's activities (`attach_file`,
`open_change_task`, `close_change_task`), so a test can repeat a write, or make it fail for the caller, and count
what reached the instance."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.evidence.models import AttachInput, AttachResult, CloseTaskInput, OpenTaskInput, TaskRef


@workflow.defn(name="AttachTestWorkflow")
class AttachTestWorkflow:
    @workflow.run
    async def run(self, request: AttachInput) -> AttachResult:
        return await calls.ATTACH_FILE(request)


@workflow.defn(name="OpenTaskTestWorkflow")
class OpenTaskTestWorkflow:
    @workflow.run
    async def run(self, request: OpenTaskInput) -> TaskRef:
        return await calls.OPEN_CHANGE_TASK(request)


@workflow.defn(name="CloseTaskTestWorkflow")
class CloseTaskTestWorkflow:
    @workflow.run
    async def run(self, request: CloseTaskInput) -> TaskRef:
        return await calls.CLOSE_CHANGE_TASK(request)


EVIDENCE_TEST_WORKFLOWS = [AttachTestWorkflow, OpenTaskTestWorkflow, CloseTaskTestWorkflow]
