"""Which priority each activity spends the ServiceNow request budget at (servicenow/budget.py), set in one place.

`BudgetInterceptor` runs every activity inside `spending(priority, activity name)`: the client reads it from a
context variable, so no call site passes a priority, and a new activity gets its workflow's priority without a line
of its own. The order is README "Performance"'s: a change's lifecycle, its runbook and incidents first (someone is
waiting), patch waves next (planning pages and batched host notes), the reconciliation last (a weekly bulk job that
must never make a change wait behind its writes).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from servicenow.budget import Priority, spending
from workflows import calls

# By the workflow that scheduled the activity: the same note activity is a change's when a change writes it and a
# wave's when a wave does.
WORKFLOW_PRIORITY: dict[str, Priority] = {
    "ReconcileWorkflow": Priority.RECONCILE,
    "PatchWaveWorkflow": Priority.WAVE,
    "PatchHostWorkflow": Priority.WAVE,
}
# Activities that are bulk work whoever schedules them.
ACTIVITY_PRIORITY: dict[str, Priority] = {
    calls.PLAN_WAVE.name: Priority.WAVE,
    calls.LOAD_WAVE_PAGE.name: Priority.WAVE,
    calls.PULL_CMDB.name: Priority.RECONCILE,
    calls.APPLY_BATCH.name: Priority.RECONCILE,
}


def priority_of(workflow_type: str | None, activity_type: str) -> Priority:
    """The lower (later) of the activity's and its workflow's priority; a change's by default."""
    found = [Priority.CHANGE]
    if activity_type in ACTIVITY_PRIORITY:
        found.append(ACTIVITY_PRIORITY[activity_type])
    if workflow_type in WORKFLOW_PRIORITY:
        found.append(WORKFLOW_PRIORITY[workflow_type or ""])
    return max(found)


class BudgetInterceptor(Interceptor):
    """Sets the ServiceNow spender (priority and the activity's name, for the client's call counts) per activity."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Spending(next)


class _Spending(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with spending(priority_of(info.workflow_type, info.activity_type), info.activity_type):
            return await self.next.execute_activity(input)
