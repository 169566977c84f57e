"""`watch_hosts`: tell a wave run when host workflows that an earlier run started have closed.

A child workflow's end is delivered only to the run that started it, and a wave continues as new per CMDB page, so
the current run cannot await the children it inherited. Their `host_done` signal normally says it all; a child that
ends without one (terminated, failed by a bug, timed out) would otherwise keep the wave waiting forever. This
activity waits on each child's close event with the server's long poll (`WorkflowHandle.result`, no polling
interval) and answers as soon as one closes: its report when it completed, how it ended otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import CancelledError, TerminatedError
from temporalio.exceptions import TimeoutError as TimedOut

from activities.heartbeat import heartbeating
from workflows import calls
from workflows.failures import failure_message
from workflows.wave.models import ClosedHost, HostReport, WatchInput, WatchResult, patch_host_workflow_id


class ChildWatch:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name=calls.WATCH_HOSTS.name)
    async def watch_hosts(self, request: WatchInput) -> WatchResult:
        closing = {ci: asyncio.create_task(self._closed(request.change_number, ci)) for ci in request.cis}
        try:
            await heartbeating(
                asyncio.wait(
                    closing.values(), timeout=request.wait.total_seconds(), return_when=asyncio.FIRST_COMPLETED
                ),
                f"watching {len(closing)} host workflow(s)",
            )
        finally:
            for task in closing.values():
                task.cancel()
            for task in closing.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task  # a look-up that failed is raised below, by result()
        # A failed look-up (the server unreachable) fails the activity: Temporal retries it.
        return WatchResult(closed=[t.result() for t in closing.values() if t.done() and not t.cancelled()])

    async def _closed(self, number: str, ci: str) -> ClosedHost:
        handle = self.client.get_workflow_handle(patch_host_workflow_id(number, ci), result_type=HostReport)
        try:
            report: HostReport = await handle.result(follow_runs=False)
        except WorkflowFailureError as failure:
            cause = failure.cause
            if isinstance(cause, TerminatedError):
                status = "terminated"
            elif isinstance(cause, CancelledError):
                status = "canceled"
            elif isinstance(cause, TimedOut):
                status = "timed_out"
            else:
                status = "failed"
            return ClosedHost(ci=ci, status=status, detail=f"{status}: {failure_message(cause)}")
        return ClosedHost(ci=ci, status="completed", report=report)
