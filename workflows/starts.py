"""Starting a change workflow: the one place that decides what a duplicate delivery does.

The shim (webhook) and the poll both start `change-<number>` through here. ID reuse policy REJECT_DUPLICATE with
conflict policy FAIL lets the Temporal server decide atomically: a change runs once, whether it arrives five times
by webhook, by the poll, or both, and even after its first run has closed.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from config.settings import Settings
from workflows.change.models import ChangeInput, change_workflow_id
from workflows.search_attributes import CHANGE_NUMBER

CHANGE_WORKFLOW = "ChangeRequestWorkflow"


async def start_change(client: Client, settings: Settings, change: ChangeInput) -> tuple[str, str, bool]:
    """Start ChangeRequestWorkflow for one change. Returns (workflow id, run id, started-now)."""
    workflow_id = change_workflow_id(change.number)
    try:
        handle = await client.start_workflow(
            CHANGE_WORKFLOW,
            change,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes([SearchAttributePair(CHANGE_NUMBER, change.number)]),
        )
    except WorkflowAlreadyStartedError as exc:
        return workflow_id, exc.run_id or "", False
    return workflow_id, handle.result_run_id or "", True
