"""ReconcileWorkflow on the dev server against the sandbox: drift both ways, idempotent re-runs, failed sources,
dry runs, attribute drift, batching."""

from __future__ import annotations

import json

from config.reconcile import config_digest
from tests.reconcile.conftest import Scenario

PRIORITY_OF = {("1", "1"): "1", ("3", "3"): "5"}


async def test_drift_both_ways_creates_cis_for_review_and_opens_routed_incidents(scenario: Scenario) -> None:
    s = scenario
    await s.ci("app-01", ip_address="10.9.0.1", os="Linux Ubuntu")
    critical = await s.ci(
        "pay-01", support_group=await s.group("Payments SRE"), busines_criticality="1 - most critical"
    )
    orphan = await s.ci("old-01", ci_class="cmdb_ci_server")  # no group, no criticality: the defaults
    live = [
        s.host("app-01", "10.9.0.1"),
        s.host("new-01", "10.9.0.21", os_version="24.04"),
        s.host("new-02", "10.9.0.22", sys_class_name="cmdb_ci_server"),
    ]
    source = s.source("dc1", live, mapping={"key": "serial_number", "attributes": {"os_version": "os_version"}})

    summary = await s.run(s.config(source))

    assert summary.created_total == 2 and summary.incidents_total == 2 and summary.unknown_total == 0
    created = {ci["name"]: ci for ci in await s.cis() if ci["name"].startswith(s.name("new-"))}
    assert set(created) == {s.name("new-01"), s.name("new-02")}
    new = created[s.name("new-01")]
    assert new["u_review_needed"] == "true" and new["discovery_source"] == "changeloop:dc1"
    assert (new["serial_number"], new["ip_address"], new["os"], new["os_version"]) == (
        s.name("SN-new-01"),
        "10.9.0.21",
        "Linux Ubuntu",
        "24.04",
    )
    assert new["sys_class_name"] == "cmdb_ci_linux_server"
    assert created[s.name("new-02")]["sys_class_name"] == "cmdb_ci_server"  # the class the source reported

    (pay,) = await s.incidents_for(critical["sys_id"])
    assert (pay["cmdb_ci"], pay["impact"], pay["urgency"]) == (critical["sys_id"], "1", "1")
    assert pay["priority"] == "1"  # computed by the instance from impact x urgency, never written by us
    assert pay["assignment_group"] == await s.group("Payments SRE")
    assert pay["correlation_display"] == "changeloop" and s.name("pay-01") in pay["short_description"]
    (old,) = await s.incidents_for(orphan["sys_id"])
    assert (old["impact"], old["urgency"], old["assignment_group"]) == ("3", "3", await s.group("Service Desk"))

    (row,) = [t for t in summary.tallies if t.ci_class == "cmdb_ci_linux_server"]
    assert (row.source, row.matched, row.new, row.created, row.missing, row.incidents) == ("dc1", 1, 1, 1, 1, 1)
    assert summary.slack == "posted"
    assert any(summary.run in text and "created 2" in text for text in await s.slack_messages())


async def test_a_second_run_creates_and_opens_nothing_new(scenario: Scenario) -> None:
    s = scenario
    gone = await s.ci("gone-01")
    config = s.config(s.source("dc1", [s.host("new-01", "10.9.1.1")]))
    first = await s.run(config)
    assert (first.created_total, first.incidents_total) == (1, 1)

    second = await s.run(config)

    assert (second.created_total, second.incidents_total) == (0, 0)
    assert second.incidents_already_open == 1  # the open incident is found by correlation_id, not duplicated
    assert second.new == [] and second.missing == [s.name("gone-01")]
    assert [ci["name"] for ci in await s.cis()].count(s.name("new-01")) == 1
    assert len(await s.incidents_for(gone["sys_id"])) == 1


async def test_a_failing_source_marks_its_cis_unknown_and_opens_no_incident(scenario: Scenario) -> None:
    s = scenario
    linux = await s.ci("lin-01")
    server = await s.ci("srv-01", ci_class="cmdb_ci_server")
    healthy = s.source("linux", [], covers=["cmdb_ci_linux_server"])
    broken = {
        "name": "windows",
        "kind": "command",
        "argv": [*s.source("unused", [])["argv"][:2], "import sys; sys.exit('inventory API down')"],
        "covers": ["cmdb_ci_server"],
        "attempts": 2,
    }

    summary = await s.run(s.config(healthy, broken))

    failed = {r.source: r for r in summary.sources}["windows"]
    assert not failed.ok and "inventory API down" in failed.error
    assert summary.unknown == [s.name("srv-01")] and summary.unknown_total == 1
    assert await s.incidents_for(server["sys_id"]) == []  # unknown is never missing
    assert summary.missing == [s.name("lin-01")] and len(await s.incidents_for(linux["sys_id"])) == 1
    (row,) = [t for t in summary.tallies if t.source == "windows"]
    assert (row.ci_class, row.unknown, row.incidents) == ("cmdb_ci_server", 1, 0)


async def test_a_dry_run_reports_the_drift_and_writes_nothing(scenario: Scenario, sandbox_control: object) -> None:
    s = scenario
    await s.ci("gone-01")
    config = s.config(s.source("dc1", [s.host("new-01", "10.9.2.1")]))
    before = await sandbox_control.stats()  # type: ignore[attr-defined]

    summary = await s.run(config, dry_run=True)

    after = await sandbox_control.stats()  # type: ignore[attr-defined]
    assert after["writes"] == before["writes"]
    assert summary.dry_run and summary.new == [s.name("new-01")] and summary.missing == [s.name("gone-01")]
    assert (summary.created_total, summary.incidents_total) == (0, 0)
    assert [ci["name"] for ci in await s.cis()] == [s.name("gone-01")]


async def test_attribute_drift_is_reported_by_default_and_written_when_configured(scenario: Scenario) -> None:
    s = scenario
    ci = await s.ci("app-01", ip_address="10.9.3.1", os="Linux Ubuntu")
    source = s.source("dc1", [s.host("app-01", "10.9.3.99", os="Linux Debian")])

    reported = await s.run(s.config(source))
    assert reported.drifted == [
        f"{s.name('app-01')}: ip_address '10.9.3.1' -> '10.9.3.99', os 'Linux Ubuntu' -> 'Linux Debian'"
    ]
    assert (await s.sn.get("cmdb_ci_server", ci["sys_id"]))["ip_address"] == "10.9.3.1"

    updated = await s.run(s.config(source, drift="update"))
    assert updated.drift_written == 1
    record = await s.sn.get("cmdb_ci_server", ci["sys_id"])
    assert (record["ip_address"], record["os"]) == ("10.9.3.99", "Linux Debian")


async def test_a_large_delta_is_applied_in_batches_that_each_fit_the_budget(scenario: Scenario) -> None:
    s = scenario
    for n in range(4):
        await s.ci(f"gone-{n:02d}")
    live = [s.host(f"new-{n:02d}", f"10.9.4.{n}") for n in range(8)]
    config = s.config(s.source("dc1", live), batch_bytes=1_000)
    handle = await s.client.start_workflow(
        "ReconcileWorkflow",
        {"config": s.publish(config), "digest": config_digest(config)},
        id=f"reconcile-test-{s.prefix}batches",
        task_queue=s.settings.task_queue,
    )
    await handle.result()
    summary = await handle.result()
    assert summary["batches"] > 2 and summary["created_total"] == 8 and summary["incidents_total"] == 4

    history = await handle.fetch_history()
    largest = 0
    for event in history.events:
        for attributes in ("activity_task_scheduled_event_attributes", "activity_task_completed_event_attributes"):
            if event.HasField(attributes):
                payloads = getattr(event, attributes)
                box = payloads.input if attributes.startswith("activity_task_scheduled") else payloads.result
                largest = max([largest, *(p.ByteSize() for p in box.payloads)])
    assert largest < 4_000, (
        "a delta batch plus the run's config reference stays small; the inventory never enters history"
    )
    assert json.dumps(summary)  # the result is plain JSON


async def test_a_live_host_named_like_a_retired_ci_and_an_installed_one_matches_the_installed_one(
    scenario: Scenario,
) -> None:
    s = scenario
    # The retired CI is pulled first (its class comes first in the scope), so a first-come name index keeps it.
    await s.ci("app-01", install_status="7", serial_number=s.name("SN-app-01-old"))
    installed = await s.ci("app-01", ci_class="cmdb_ci_server", serial_number=s.name("SN-app-01-new"))
    # The live host reports a serial neither CI carries (a rebuilt board): only its name can match it.
    live = [s.host("app-01", "10.9.5.1", serial_number=s.name("SN-app-01-live"))]

    summary = await s.run(s.config(s.source("dc1", live)))

    assert summary.new == [] and summary.created_total == 0, "matched, not new"
    assert summary.missing == [] and summary.incidents_total == 0, "the installed CI is seen, not missing"
    assert await s.incidents_for(installed["sys_id"]) == []
    assert [ci["name"] for ci in await s.cis()].count(s.name("app-01")) == 2, "no CI created"


async def test_a_live_host_sharing_a_key_with_a_retired_ci_matches_the_installed_one(scenario: Scenario) -> None:
    s = scenario
    await s.ci("old-name", install_status="7", serial_number=s.name("SN-shared"))
    installed = await s.ci("new-name", ci_class="cmdb_ci_server", serial_number=s.name("SN-shared"))
    live = [s.host("renamed", "10.9.5.2", serial_number=s.name("SN-shared"))]

    summary = await s.run(s.config(s.source("dc1", live)))

    assert summary.new == [] and summary.missing == []
    assert await s.incidents_for(installed["sys_id"]) == []


async def test_a_live_host_whose_only_same_name_cis_are_retired_is_matched_and_never_missing(
    scenario: Scenario,
) -> None:
    s = scenario
    retired = await s.ci("batch-01", install_status="7", serial_number=s.name("SN-batch-01-a"))
    await s.ci("batch-01", ci_class="cmdb_ci_server", install_status="100", serial_number=s.name("SN-batch-01-b"))
    live = [s.host("batch-01", "10.9.5.3", serial_number=s.name("SN-batch-01-live"))]

    summary = await s.run(s.config(s.source("dc1", live)))

    assert summary.new == [] and summary.created_total == 0, "a retired CI still names the host: not new"
    assert summary.missing == [] and summary.incidents_total == 0
    assert await s.incidents_for(retired["sys_id"]) == []
    (row,) = [t for t in summary.tallies if t.source == "dc1"]
    assert row.matched == 1 and row.new == 0
