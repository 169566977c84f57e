"""A batch of writes some of which fail mid-batch: every CI and incident exists once, and the summary counts what
this run wrote, even when an earlier try of an item, or an earlier attempt of the whole batch, wrote it.

The sandbox is slow (150 ms a call) so that a batch's writes are in flight together when the instance answers 503:
once (the item tries again in place), or in a burst long enough that an item runs out of tries and the batch fails
while its siblings are writing (Temporal then retries the batch).
"""

from __future__ import annotations

from collections import Counter

import pytest
from temporalio.api.enums.v1 import EventType

from config.reconcile import config_digest
from tests.conftest import SandboxControl
from tests.helpers import wait_for
from tests.reconcile.conftest import Scenario
from workflows.reconcile.models import ReconcileInput, ReconcileSummary

HOSTS = 60
# 503s in a row on the creates: 1 is absorbed by the failing item's own next try; 12 exceed what the 4 items in
# flight can absorb (ITEM_TRIES each), so the batch fails with writes in flight and is retried.
BURSTS = {"one 503": 1, "a burst of 503s": 12}


async def _apply_attempts(s: Scenario, workflow_id: str) -> int:
    history = await s.client.get_workflow_handle(workflow_id).fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "reconcile_apply_batch"
    }
    return max(
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    )


@pytest.mark.parametrize("burst", list(BURSTS))
async def test_503s_mid_batch_create_every_ci_once_and_count_all_of_them(
    burst: str, scenario: Scenario, reset_faults: SandboxControl
) -> None:
    s = scenario
    live = [s.host(f"new-{n:02d}", f"10.9.6.{n}") for n in range(HOSTS)]
    config = s.config(s.source("dc1", live))
    await reset_faults.set_faults(latency_ms=150)
    workflow_id = f"reconcile-test-{s.prefix}retry"
    # Counted before the start: the run may write before the test reads the count.
    before = await reset_faults.requests_to("POST", "cmdb_ci_linux_server")
    handle = await s.client.start_workflow(
        "ReconcileWorkflow",
        ReconcileInput(config=s.publish(config), digest=config_digest(config)),
        id=workflow_id,
        task_queue=s.settings.task_queue,
        result_type=ReconcileSummary,
    )

    async def some_created() -> bool:  # counted by the instance's stats: a query would wait its 150 ms
        return await reset_faults.requests_to("POST", "cmdb_ci_linux_server") - before >= 8

    await wait_for(some_created, timeout=60, interval=0.02, message="the batch is writing")
    rule = {"method": "POST", "table": "cmdb_ci_linux_server", "count": BURSTS[burst], "mode": "error_503"}
    await reset_faults.set_faults(latency_ms=150, rules=[rule])
    summary = await handle.result()

    assert (await reset_faults.faults())["rules"] == [], "every 503 was answered"
    if BURSTS[burst] > 1:
        assert await _apply_attempts(s, workflow_id) >= 2, "the batch was retried"
    else:
        assert await _apply_attempts(s, workflow_id) == 1, "the item tried again in place: the batch did not fail"
    names = Counter(ci["name"] for ci in await s.cis())
    assert len(names) == HOSTS and set(names.values()) == {1}, f"duplicates: {[n for n, c in names.items() if c > 1]}"
    assert summary.created_total == HOSTS, "a CI an earlier attempt created is still this run's creation"
    assert summary.already_in_cmdb == 0
    (row,) = [t for t in summary.tallies if t.source == "dc1"]
    assert row.created == HOSTS


async def test_a_batch_retried_after_a_burst_of_503s_opens_one_incident_per_missing_ci_and_counts_each(
    scenario: Scenario, reset_faults: SandboxControl
) -> None:
    s = scenario
    gone = [await s.ci(f"gone-{n:02d}") for n in range(30)]
    config = s.config(s.source("dc1", []))
    await reset_faults.set_faults(latency_ms=150)
    workflow_id = f"reconcile-test-{s.prefix}retry-incidents"
    # Counted before the start: the run may write before the test reads the count.
    before = await reset_faults.requests_to("POST", "incident")
    handle = await s.client.start_workflow(
        "ReconcileWorkflow",
        ReconcileInput(config=s.publish(config), digest=config_digest(config)),
        id=workflow_id,
        task_queue=s.settings.task_queue,
        result_type=ReconcileSummary,
    )

    async def some_opened() -> bool:  # counted by the instance's stats: a query would wait its 150 ms
        return await reset_faults.requests_to("POST", "incident") - before >= 3

    await wait_for(some_opened, timeout=60, interval=0.02, message="the batch is opening incidents")
    rule = {"method": "POST", "table": "incident", "count": BURSTS["a burst of 503s"], "mode": "error_503"}
    await reset_faults.set_faults(latency_ms=150, rules=[rule])
    summary = await handle.result()
    await reset_faults.clear_faults()

    assert (await reset_faults.faults())["rules"] == []
    assert await _apply_attempts(s, workflow_id) >= 2, "the batch was retried"
    per_ci = [len(await s.incidents_for(ci["sys_id"])) for ci in gone]
    assert per_ci == [1] * len(gone), "one incident per missing CI"
    assert summary.incidents_total == len(gone) and summary.incidents_already_open == 0
