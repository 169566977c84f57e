"""Change tasks: opened once per key (looked up before each create), routed to the runbook's or the CI's group,
closed once with the outcome and an excerpt of the output (scrubbed), whatever retries do."""

from __future__ import annotations

import uuid

from sandbox.seed import seed_sys_id
from servicenow.change_task import ChangeTaskState
from servicenow.client import ServiceNowClient
from tests.changes import Changes
from tests.conftest import INTEGRATION_USER, SandboxControl
from tests.evidence.conftest import Evidence
from workflows.evidence.models import CloseTaskInput, OpenTaskInput, TaskOutcome, TaskRef, task_key

PAYMENTS_SRE = seed_sys_id("sys_user_group", "Payments SRE")  # payments-api's support group
CAB = seed_sys_id("sys_user_group", "Change Advisory Board")


def _open(change: dict[str, str], step: str, **fields: str) -> OpenTaskInput:
    key = task_key(f"runbook-{change['number']}", step)
    return OpenTaskInput(change_sys_id=change["sys_id"], key=key, short_description=f"Step '{step}'", **fields)


async def test_a_task_is_opened_once_per_key_and_routed_to_the_ci_group(
    evidence: Evidence, changes: Changes, sandbox_control: SandboxControl
) -> None:
    change = await changes.create()  # on payments-api
    request = _open(change, "restart", cmdb_ci=change["cmdb_ci"], description="systemctl restart payments")
    before = await sandbox_control.requests_to("POST", "change_task")

    first, _ = await evidence.run("OpenTaskTestWorkflow", request, TaskRef)
    again, _ = await evidence.run("OpenTaskTestWorkflow", request, TaskRef)

    assert first.created and not again.created and again.sys_id == first.sys_id
    assert await sandbox_control.requests_to("POST", "change_task") - before == 1
    [task] = await evidence.tasks(change["sys_id"])
    assert task["number"].startswith("CTASK") and task["state"] == ChangeTaskState.IN_PROGRESS.value
    assert task["correlation_id"] == f"runbook-{change['number']}:restart" == first.key
    assert task["correlation_display"] == "changeloop" and task["change_task_type"] == "implementation"
    assert task["assignment_group"] == PAYMENTS_SRE and task["cmdb_ci"] == change["cmdb_ci"]


async def test_the_runbook_group_wins_over_the_ci_group(evidence: Evidence, changes: Changes) -> None:
    change = await changes.create()
    request = _open(change, "notify", cmdb_ci=change["cmdb_ci"], assignment_group="Change Advisory Board")

    ref, _ = await evidence.run("OpenTaskTestWorkflow", request, TaskRef)

    assert ref.assignment_group == CAB


async def test_a_create_whose_answer_was_lost_opens_one_task(
    evidence: Evidence, changes: Changes, reset_faults: SandboxControl
) -> None:
    change = await changes.create()
    await reset_faults.set_faults(
        rules=[{"method": "POST", "table": "change_task", "mode": "timeout_after_write", "hang_seconds": 4}]
    )

    ref, attempts = await evidence.run("OpenTaskTestWorkflow", _open(change, "drain"), TaskRef)

    assert attempts >= 2 and not ref.created, "the retry found the task the first attempt had created"
    assert [t["sys_id"] for t in await evidence.tasks(change["sys_id"])] == [ref.sys_id]


async def test_a_task_is_closed_once_with_its_outcome_and_a_scrubbed_excerpt(
    evidence: Evidence, changes: Changes, sandbox_control: SandboxControl, sn_client: ServiceNowClient
) -> None:
    change = await changes.create()
    ref, _ = await evidence.run("OpenTaskTestWorkflow", _open(change, "health"), TaskRef)
    marker = uuid.uuid4().hex[:8]
    notes = f"Step 'health' FAILED (exit 2)\n...\nlogin with {INTEGRATION_USER[1]} refused {marker}"
    close = CloseTaskInput(sys_id=ref.sys_id, outcome=TaskOutcome.INCOMPLETE, close_notes=notes)
    patches = await sandbox_control.requests_to("PATCH", "change_task")

    closed, _ = await evidence.run("CloseTaskTestWorkflow", close, TaskRef)
    repeated, _ = await evidence.run(
        "CloseTaskTestWorkflow", close.model_copy(update={"outcome": TaskOutcome.COMPLETE}), TaskRef
    )

    assert closed.state == repeated.state == ChangeTaskState.CLOSED.value
    assert await sandbox_control.requests_to("PATCH", "change_task") - patches == 1, "the repeat wrote nothing"
    task = await sn_client.get("change_task", ref.sys_id, exclude_reference_link=True)
    assert task["state"] == "3" and task["close_code"] == "unsuccessful" and task["active"] == "false"
    assert marker in task["close_notes"] and INTEGRATION_USER[1] not in task["close_notes"]
    assert task["closed_at"]


async def test_closing_complete_and_canceled(evidence: Evidence, changes: Changes, sn_client: ServiceNowClient) -> None:
    change = await changes.create()
    done, _ = await evidence.run("OpenTaskTestWorkflow", _open(change, "one"), TaskRef)
    never, _ = await evidence.run("OpenTaskTestWorkflow", _open(change, "two", state="1"), TaskRef)

    await evidence.run(
        "CloseTaskTestWorkflow", CloseTaskInput(sys_id=done.sys_id, outcome="complete", close_notes="ok"), TaskRef
    )
    await evidence.run(
        "CloseTaskTestWorkflow", CloseTaskInput(sys_id=never.sys_id, outcome="canceled", close_notes="not run"), TaskRef
    )

    states = {t["sys_id"]: (t["state"], t["close_code"]) for t in await evidence.tasks(change["sys_id"])}
    assert states == {done.sys_id: ("3", "successful"), never.sys_id: ("4", "")}


def test_a_long_key_stays_within_correlation_id_and_unique() -> None:
    long_a, long_b = "x" * 120 + "a", "x" * 120 + "b"
    key_a, key_b = task_key("runbook-CHG0030001", long_a), task_key("runbook-CHG0030001", long_b)
    assert len(key_a) == len(key_b) == 100 and key_a != key_b
    assert task_key("wave-CHG0030001", "canary") == "wave-CHG0030001:canary"
