"""Change tasks: opened once when their work starts, closed once when it ends, whatever retries and restarts do.

`open_change_task` looks its key up (`correlation_id` on the change's tasks) before each create: a create whose
answer was lost, or a worker killed mid-step whose step runs again, finds the task it opened. `close_change_task`
reads the task's state first: a task already Closed or Canceled (by an earlier attempt, or by a human) is left as it
is, so a retried close writes nothing twice.

The assignment group is the runbook's (a group's name) when it names one, else the CI's support group (then its
managed-by group), else the change's own group. A CI given by name (a runbook's `{host}`) is looked up first.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.errors import servicenow_errors
from activities.evidence.text import clean
from activities.lookups import find_first
from config.settings import Settings
from servicenow import change_task
from servicenow.change_request import CloseCode
from servicenow.change_task import ChangeTask, ChangeTaskState
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from workflows import calls
from workflows.evidence.models import CORRELATION_DISPLAY, CloseTaskInput, OpenTaskInput, TaskOutcome, TaskRef

TASK_FIELDS = ["sys_id", "number", "state", "correlation_id", "assignment_group"]

_CLOSING: dict[TaskOutcome, dict[str, str]] = {
    TaskOutcome.COMPLETE: {"state": ChangeTaskState.CLOSED.value, "close_code": CloseCode.SUCCESSFUL.value},
    TaskOutcome.COMPLETE_WITH_ISSUES: {
        "state": ChangeTaskState.CLOSED.value,
        "close_code": CloseCode.SUCCESSFUL_ISSUES.value,
    },
    TaskOutcome.INCOMPLETE: {"state": ChangeTaskState.CLOSED.value, "close_code": CloseCode.UNSUCCESSFUL.value},
    TaskOutcome.CANCELED: {"state": ChangeTaskState.CANCELED.value},
}


class ChangeTaskActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.settings = settings

    @activity.defn(name=calls.OPEN_CHANGE_TASK.name)
    async def open_change_task(self, request: OpenTaskInput) -> TaskRef:
        async with servicenow_errors():
            # A task with this key that the integration user may not read stops the create (activities/lookups.py).
            existing = await find_first(
                self.sn,
                change_task.TABLE,
                Query().eq("change_request", request.change_sys_id).eq("correlation_id", request.key),
                fields=TASK_FIELDS,
                exclude_reference_link=True,
            )
            if existing is not None:
                return self._ref(existing, created=False)
            body = {
                "change_request": request.change_sys_id,
                "short_description": clean(self.settings, request.short_description)[:160],
                "description": clean(self.settings, request.description),
                "change_task_type": request.task_type,
                "state": request.state,
                "correlation_id": request.key,
                "correlation_display": CORRELATION_DISPLAY,
            }
            if request.ci_name and not request.cmdb_ci:
                request = request.model_copy(update={"cmdb_ci": await self._ci_by_name(request.ci_name)})
            if request.cmdb_ci:
                body["cmdb_ci"] = request.cmdb_ci
            if group := await self._group(request):
                body["assignment_group"] = group
            record = await self.sn.create(change_task.TABLE, body, fields=TASK_FIELDS)
        return self._ref(record, created=True)

    async def _ci_by_name(self, name: str) -> str:
        found = await self.sn.first("cmdb_ci", Query().eq("name", name), fields=["sys_id"])
        if found is None:
            activity.logger.warning("no CI named %r: the task has no CI", name)
            return ""
        return str(found["sys_id"])

    async def _group(self, request: OpenTaskInput) -> str:
        if request.assignment_group:
            found = await self.sn.first(
                "sys_user_group", Query().eq("name", request.assignment_group), fields=["sys_id"]
            )
            if found is not None:
                return str(found["sys_id"])
            activity.logger.warning("no group %r: the task is routed by its CI", request.assignment_group)
        if request.cmdb_ci:
            ci = await self.sn.get(
                "cmdb_ci", request.cmdb_ci, fields=["support_group", "managed_by_group"], exclude_reference_link=True
            )
            if group := str(ci.get("support_group") or ci.get("managed_by_group") or ""):
                return group
        change = await self.sn.get(
            "change_request", request.change_sys_id, fields=["assignment_group"], exclude_reference_link=True
        )
        return str(change.get("assignment_group") or "")

    @activity.defn(name=calls.CLOSE_CHANGE_TASK.name)
    async def close_change_task(self, request: CloseTaskInput) -> TaskRef:
        async with servicenow_errors():
            current = await self.sn.get(change_task.TABLE, request.sys_id, fields=TASK_FIELDS)
            if ChangeTask.model_validate(current).done:
                return self._ref(current, created=False)
            body = _CLOSING[request.outcome] | {"close_notes": clean(self.settings, request.close_notes)}
            record = await self.sn.update(change_task.TABLE, request.sys_id, body, fields=TASK_FIELDS)
        return self._ref(record, created=False)

    def _ref(self, record: dict[str, Any], *, created: bool) -> TaskRef:
        task = ChangeTask.model_validate(record)
        return TaskRef(
            sys_id=task.sys_id,
            number=task.number,
            state=task.state,
            key=task.correlation_id,
            created=created,
            assignment_group=task.assignment_group,
            url=self.sn.record_link(change_task.TABLE, task.sys_id),
        )
