"""A change's tasks follow the change: when it moves to Review or is canceled, its open tasks are canceled.

From ServiceNow's documentation: "Click Review ... The change request is moved to the Review state. All open change
tasks are set to Canceled" (markdown/it-service-management/change-management/t_ProcessAChangeRequest.md), and for a
canceled change the same note (markdown/it-operations-management/service-reliability-management/
sr-change-request-states.md). A task already Closed or Canceled keeps its state and close notes. The canceled tasks
are written by the system, as the instance's own rule does, so they carry no close code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.change_model import ChangeState

if TYPE_CHECKING:
    from sandbox.instance import Instance

Record = dict[str, str]

TASK_CLOSED, TASK_CANCELED = "3", "4"
_ENDS_TASKS = (ChangeState.REVIEW.value, ChangeState.CANCELED.value)


def after_write(instance: Instance, table: str, previous: Record | None, current: Record) -> None:
    if table != "change_request" or previous is None:
        return
    state = current.get("state", "")
    if state == previous.get("state") or state not in _ENDS_TASKS:
        return
    change = current["sys_id"]
    open_tasks = [
        task
        for task in instance.store.rows("change_task")
        if task.get("change_request") == change and task.get("state") not in (TASK_CLOSED, TASK_CANCELED)
    ]
    for task in open_tasks:
        instance.update("change_task", task["sys_id"], {"state": TASK_CANCELED}, "system", flow=True)
