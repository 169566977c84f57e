"""The scheduled poll's side: find approved changes and start one change workflow each.

Starts use the same deterministic ID and policies as the shim, so a change that arrived by webhook is never started
a second time by the poll: the server refuses the duplicate, nobody races a look-up.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from activities.errors import servicenow_errors
from config.settings import Settings
from servicenow.change_request import Approval, ChangeState
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from workflows import calls
from workflows.change.models import ChangeInput
from workflows.poll.models import PollQuery, PollResult, StartChangesInput
from workflows.starts import start_change


class IntakeActivities:
    def __init__(self, sn: ServiceNowClient, client: Client, settings: Settings) -> None:
        self.sn = sn
        self.client = client
        self.settings = settings

    @activity.defn(name=calls.FIND_APPROVED_CHANGES.name)
    async def find_approved_changes(self, request: PollQuery) -> list[str]:
        query = (
            Query()
            .eq("state", ChangeState.SCHEDULED.value)
            .eq("approval", Approval.APPROVED.value)
            .in_("type", request.types)
            .order_by("number")
        )
        numbers: list[str] = []
        async with servicenow_errors():
            async for page in self.sn.iter_pages(
                "change_request", query, fields=["number"], page_size=request.page_size
            ):
                numbers.extend(str(r["number"]) for r in page.records)
                activity.heartbeat(len(numbers))
        return numbers

    @activity.defn(name=calls.START_CHANGE_WORKFLOWS.name)
    async def start_change_workflows(self, request: StartChangesInput) -> PollResult:
        result = PollResult(found=len(request.numbers))
        for number in request.numbers:
            _, _, started = await start_change(
                self.client, self.settings, ChangeInput(number=number, source=request.source)
            )
            (result.started if started else result.already_known).append(number)
            activity.heartbeat(number)
        return result
