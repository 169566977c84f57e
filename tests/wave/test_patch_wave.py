"""A patching change runs a wave over its application's CIs and closes with what happened to each host.

Real dev server, real worker, the sandbox ServiceNow and its fleet over HTTP.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from config.settings import Settings
from tests.changes import Changes
from tests.helpers import listed_runs
from tests.wave.conftest import BASELINE, FLEET, TARGET, FleetControl, run_wave
from workflows.wave.models import CiState, patch_host_workflow_id, wave_workflow_id


async def test_wave_of_20_with_two_failures_patches_18_rolls_back_2_and_closes_successful_issues(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    await fleet.set_faults("fleet-04", patch_fails=True)
    await fleet.set_faults("fleet-13", unhealthy_after_patch=True)

    wave = await run_wave(temporal_client, wave_settings, changes)

    assert wave.error is None and wave.result is not None
    assert wave.ticket["state"] == "3"
    assert wave.ticket["close_code"] == "successful_issues"
    assert "18 patched, 2 rolled back, 0 failed, 0 skipped of 20 CI(s)" in wave.ticket["close_notes"]
    assert "fleet-04: ROLLED BACK - patch failed: fleet-04: package transaction failed" in wave.ticket["close_notes"]
    assert "fleet-13: ROLLED BACK - health check failed after patch: app failed" in wave.ticket["close_notes"]

    counts = wave.status.counts
    assert (counts.total, counts.patched, counts.rolled_back, counts.failed, counts.pending, counts.running) == (
        20,
        18,
        2,
        0,
        0,
        0,
    )
    states = {host.ci: host.state for host in wave.status.hosts}
    assert states == {name: CiState.PATCHED for name in FLEET} | {
        "fleet-04": CiState.ROLLED_BACK,
        "fleet-13": CiState.ROLLED_BACK,
    }
    links = {host.ci: host.url for host in wave.status.hosts}
    assert (
        links["fleet-07"]
        == f"http://127.0.0.1:8233/namespaces/default/workflows/{patch_host_workflow_id(wave.number, 'fleet-07')}"
    )

    summary = wave.summary()
    for name in FLEET:
        assert f"{name}: " in summary
        assert f"/workflows/{patch_host_workflow_id(wave.number, name)}" in summary, f"{name} has no link"
    assert summary.count("patched") >= 18 and summary.count("ROLLED BACK") == 2

    hosts = {name: await fleet.host(name) for name in FLEET}
    assert hosts["fleet-04"]["patch_level"] == BASELINE and hosts["fleet-04"]["counters"]["patches_applied"] == 0
    assert hosts["fleet-13"]["patch_level"] == BASELINE, "the unhealthy host is back on its snapshot"
    assert hosts["fleet-13"]["counters"]["rollback_calls"] == 1
    assert all(hosts[n]["patch_level"] == TARGET for n in FLEET if n not in ("fleet-04", "fleet-13"))
    assert {n: h["counters"]["patch_calls"] for n, h in hosts.items()} == dict.fromkeys(FLEET, 1), (
        "no host patched twice"
    )


async def test_per_host_progress_reaches_the_ticket_as_batched_work_notes(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    wave = await run_wave(temporal_client, wave_settings, changes)

    assert wave.ticket["close_code"] == "successful"
    host_notes = [n for n in wave.notes if n.startswith("fleet-")]
    reported = [line.split(":")[0] for note in host_notes for line in note.splitlines() if line.startswith("fleet-")]
    assert sorted(reported) == FLEET, "every host's outcome is noted once"
    assert len(host_notes) < len(FLEET), "notes are batched, not one journal entry per host"
    assert any(n.startswith(f"Patch wave {wave_workflow_id(wave.number)}: 20 installed CI(s)") for n in wave.notes)


async def test_canary_failure_stops_the_wave_before_the_rest(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    await fleet.set_faults("fleet-02", patch_fails=True)  # the canary is fleet-01 and fleet-02

    wave = await run_wave(temporal_client, wave_settings, changes, category="WaveCanary")

    assert wave.error is not None, "a stopped wave fails, so the change closes unsuccessful"
    assert wave.ticket["state"] == "3" and wave.ticket["close_code"] == "unsuccessful"
    assert "failed at step 'canary'" in wave.ticket["close_notes"]
    assert "canary failed on fleet-02" in wave.ticket["close_notes"]
    assert wave.status.canary == ["fleet-01", "fleet-02"]
    assert wave.status.counts.not_attempted == 18
    counters = await fleet.counters(FLEET[2:])
    assert all(c["snapshot_calls"] == 0 and c["patch_calls"] == 0 for c in counters.values()), "nothing else started"
    assert "fleet-20: not attempted" in wave.summary()


async def test_failure_budget_stops_new_starts_and_reports_the_rest_not_attempted(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    for name in ("fleet-01", "fleet-02", "fleet-03"):  # 3 of 20 = 15% > the 10% budget; one host at a time
        await fleet.set_faults(name, unhealthy_after_patch=True)

    wave = await run_wave(temporal_client, wave_settings, changes, category="WaveBudget")

    assert wave.ticket["close_code"] == "unsuccessful"
    assert "failure budget exceeded: 3 of 20 host(s)" in wave.ticket["close_notes"]
    counts = wave.status.counts
    assert (counts.rolled_back, counts.patched, counts.not_attempted) == (3, 0, 17)
    counters = await fleet.counters(FLEET[3:])
    assert all(c["patch_calls"] == 0 for c in counters.values()), "no host started after the budget ran out"


async def test_already_patched_ci_is_a_no_op_that_says_so(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    await fleet.patch_by_hand("pay-web-02", TARGET)

    wave = await run_wave(temporal_client, wave_settings, changes, app="payments-api")

    assert wave.ticket["close_code"] == "successful"
    counters = await fleet.counters([f"pay-web-0{n}" for n in range(1, 5)])
    assert counters["pay-web-02"]["patches_applied"] == 1, "only the admin's own patch: the wave changed nothing"
    assert all(c["patches_applied"] == 1 for c in counters.values())
    assert [c["patch_calls"] for c in counters.values()] == [1, 2, 1, 1], "one call each from the wave (+ the admin's)"
    assert wave.status.counts.patched == 4 and wave.status.counts.unchanged == 1
    assert "pay-web-02: patched - already at 2025.06: nothing to do (no-op)" in wave.summary()


async def test_ci_not_installed_is_skipped_with_a_note(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    wave = await run_wave(temporal_client, wave_settings, changes, app="legacy-batch")  # batch-02 is retired

    states = {host.ci: host.state for host in wave.status.hosts}
    assert states["batch-02"] == CiState.SKIPPED
    assert not any(host.workflow_id for host in wave.status.hosts if host.ci == "batch-02"), "nothing ran for it"
    assert any("batch-02: skipped - install_status Retired, not Installed" in n for n in wave.notes)
    assert "batch-02: skipped" in wave.summary()


async def test_wave_continues_as_new_per_cmdb_page_and_patches_every_ci_once(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    wave = await run_wave(temporal_client, wave_settings, changes, category="WavePaged")  # 8 CIs per page

    assert wave.ticket["close_code"] == "successful"
    assert wave.status.run == 3 and wave.status.counts.patched == 20
    runs = await listed_runs(temporal_client, wave_workflow_id(wave.number), at_least=3)
    assert len(runs) == 3
    counters = await fleet.counters(FLEET)
    assert {n: c["patch_calls"] for n, c in counters.items()} == dict.fromkeys(FLEET, 1), "each CI patched once"
    assert all(c["patches_applied"] == 1 for c in counters.values())
