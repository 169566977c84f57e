"""ChangePollWorkflow: the scheduled safety net for missed webhooks.

Lists approved changes in Scheduled (all pages, inside an activity) and starts one ChangeRequestWorkflow per change
with the same deterministic ID the shim uses; the server refuses a second start, so poll and webhook never run a
change twice.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.poll.models import PollInput, PollQuery, PollResult, StartChangesInput


@workflow.defn(name="ChangePollWorkflow")
class ChangePollWorkflow:
    @workflow.run
    async def run(self, poll: PollInput) -> PollResult:
        numbers = await calls.FIND_APPROVED_CHANGES(PollQuery(types=poll.types, page_size=poll.page_size))
        if not numbers:
            return PollResult(found=0)
        return await calls.START_CHANGE_WORKFLOWS(StartChangesInput(numbers=numbers, source="poll"))
