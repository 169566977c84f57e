"""Starting an execution from outside a workflow: the one place that decides what a duplicate delivery does.

The shim (webhook, flow runs) and the poll start executions through here. ID reuse policy REJECT_DUPLICATE with
conflict policy FAIL lets the Temporal server decide atomically: a change runs once, whether it arrives five times
by webhook, by the poll, or both, and even after its first run has closed; a flow run with a caller's key likewise.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from config.settings import Settings
from workflows.change.models import ChangeInput, change_workflow_id
from workflows.flow.models import FlowRun, flow_workflow_id
from workflows.search_attributes import CHANGE_NUMBER, RUNBOOK

CHANGE_WORKFLOW = "ChangeRequestWorkflow"
FLOW_WORKFLOW = "FlowRunWorkflow"


async def start_once(
    client: Client,
    settings: Settings,
    workflow: str,
    arg: Any,
    workflow_id: str,
    attribute: tuple[SearchAttributeKey[str], str],
) -> tuple[str, str, bool]:
    """Start `workflow_id` unless it exists or existed. Returns (workflow id, run id, started-now); a duplicate answers
    the existing execution's run id. The search attribute is set at start, so the execution is searchable at once."""
    try:
        handle = await client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes([SearchAttributePair(*attribute)]),
        )
    except WorkflowAlreadyStartedError as exc:
        return workflow_id, exc.run_id or "", False
    return workflow_id, handle.result_run_id or "", True


async def start_change(client: Client, settings: Settings, change: ChangeInput) -> tuple[str, str, bool]:
    """ChangeRequestWorkflow `change-<number>` for one change."""
    return await start_once(
        client, settings, CHANGE_WORKFLOW, change, change_workflow_id(change.number), (CHANGE_NUMBER, change.number)
    )


async def start_flow(client: Client, settings: Settings, run: FlowRun, key: str) -> tuple[str, str, bool]:
    """FlowRunWorkflow `flow-<flow>-<key>`: the caller's key (or a fresh uuid) makes a repeat collapse into one."""
    return await start_once(client, settings, FLOW_WORKFLOW, run, flow_workflow_id(run.flow, key), (RUNBOOK, run.flow))
