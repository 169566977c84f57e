"""Cancellation as its own outcome: how a workflow tells a cancel request from a failure, and how it runs the cleanup
that must finish after one (rollbacks, the summary on the ticket, the report to its parent).

Temporal delivers a cancel request to a workflow as a cancelled await: `asyncio.CancelledError` where the workflow
waited on a timer or a condition, an `ActivityError` / `ChildWorkflowError` whose cause is a `CancelledError` where
it waited on an activity or a child (the SDK asked the server to cancel it first). A workflow that wants to wind
down rather than die catches either, does its cleanup under `uncancellable` (a second cancel request must not cut a
rollback in half), then re-raises: the execution ends CANCELED, which the incident path never reports
(workflows/incident/reporting.py) and a parent sees as a `ChildWorkflowError` caused by a `CancelledError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import is_cancelled_exception

T = TypeVar("T")


def cancel_requested() -> bool:
    """Whether someone asked to cancel this workflow (its parent, `temporal workflow cancel`, the CLI)."""
    return workflow.cancellation_reason() is not None


def canceled_by_request(error: BaseException) -> bool:
    """`error` is how a cancel request of this workflow surfaced at an await (not a failure of what was awaited)."""
    return cancel_requested() and is_cancelled_exception(error)


# Before this patch, code that turns an activity's failure into a result or an ApplicationError did the same to a
# cancel request that surfaced there: a wave canceled while its continued run resolved its runbook failed and opened
# an incident; a gate canceled mid-poll swallowed the request and went on waiting.
CANCEL_PASSES_PATCH = "cancel-passes-through"


def passes_through(error: BaseException) -> bool:
    """Whether a handler of an activity's failure must re-raise `error` unchanged: it is this workflow's cancel
    request, which ends the workflow CANCELED (or reaches its own wind-down), never a failure or a retry.

    Only for awaits in the run's own task chain: in a side task (a gather's member, a watcher) the patch marker
    could be decided after the run's last command, which the server refuses; there the run's task is cancelled
    first anyway, and `canceled_by_request` tells a cancellation apart."""
    return canceled_by_request(error) and workflow.patched(CANCEL_PASSES_PATCH)


async def uncancellable(work: Awaitable[T]) -> T:
    """Await `work` to its end even when this workflow is cancelled (again) meanwhile: what it awaits (an activity, a
    signal, a child's end) is neither cancelled nor abandoned."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()
            # A repeated cancel request: the cleanup still finishes, then the caller ends the workflow canceled.
