"""A change task's look-up before its create, as the integration user sees the instance: a task with the key that
an ACL hides from it must not be opened a second time (the instance still counts it: X-Total-Count)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.lookups import HIDDEN_RECORD
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import Changes
from tests.conftest import ADMIN_USER, SandboxControl
from tests.evidence.conftest import Evidence
from workflows.evidence.models import OpenTaskInput, TaskRef, task_key


async def test_a_task_the_integration_user_may_not_read_is_not_opened_again(
    evidence: Evidence, changes: Changes, sandbox_url: str, hidden_rows: SandboxControl
) -> None:
    change = await changes.create()
    request = OpenTaskInput(
        change_sys_id=change["sys_id"], key=task_key(f"runbook-{change['number']}", "restart"), short_description="x"
    )
    first, _ = await evidence.run("OpenTaskTestWorkflow", request, TaskRef)
    await hidden_rows.hide_rows("change_task", sys_ids=[first.sys_id])  # reassigned to a restricted group

    with pytest.raises(WorkflowFailureError) as failure:
        await evidence.run("OpenTaskTestWorkflow", request, TaskRef)

    async with ServiceNowClient(sandbox_url, BasicAuth(*ADMIN_USER)) as admin:
        tasks = await admin.list("change_task", Query().eq("correlation_id", request.key), fields=["number"])
    assert len(tasks) == 1, "no second task beside the hidden one"
    cause = failure.value.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError) and cause.type == HIDDEN_RECORD
