"""ChangePollWorkflow: the scheduled safety net for missed webhooks.

Lists approved changes in Scheduled (all pages, inside an activity) and starts one ChangeRequestWorkflow per change
with the same deterministic ID the shim uses; the server refuses a second start, so poll and webhook never run a
change twice.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.calls import Act
    from workflows.poll.models import PollInput, PollQuery, PollResult, StartChangesInput

RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1), maximum_attempts=10)


@workflow.defn(name="ChangePollWorkflow")
class ChangePollWorkflow:
    @workflow.run
    async def run(self, poll: PollInput) -> PollResult:
        numbers = await workflow.execute_activity(
            Act.FIND_APPROVED_CHANGES,
            PollQuery(types=poll.types, page_size=poll.page_size),
            result_type=list[str],
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )
        if not numbers:
            return PollResult(found=0)
        return await workflow.execute_activity(
            Act.START_CHANGE_WORKFLOWS,
            StartChangesInput(numbers=numbers, source="poll"),
            result_type=PollResult,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )
