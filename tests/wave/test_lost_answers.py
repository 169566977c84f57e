"""A host operation whose answer is lost after the host applied it: the retry must not misread the host.

The fleet's `lose_answers` fault applies the operation, then answers 502 (the connection dropped on the way back),
so the activity is retried against a host that already changed. Counted in patch CALLS, not level changes.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from config.settings import Settings
from tests.changes import Changes
from tests.wave.conftest import BASELINE, TARGET, FleetControl, run_wave
from workflows.wave.models import CiState

PAY = [f"pay-web-0{n}" for n in range(1, 5)]


async def test_a_patch_retried_after_its_answer_was_lost_rolls_an_unhealthy_host_back_to_its_snapshot(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    await fleet.set_faults("pay-web-03", unhealthy_after_patch=True, lose_answers={"patch": 1})

    wave = await run_wave(temporal_client, wave_settings, changes, app="payments-api")

    host = await fleet.host("pay-web-03")
    states = {h.ci: h for h in wave.status.hosts}
    assert states["pay-web-03"].state == CiState.ROLLED_BACK, states["pay-web-03"].detail
    assert host["patch_level"] == BASELINE, "back on the snapshot taken before the patch"
    assert host["counters"]["rollback_calls"] == 1
    assert host["counters"]["patch_calls"] == 1, "the retry saw the patch applied and did not patch again"
    assert wave.ticket["close_code"] == "successful_issues"
    assert "pay-web-03: ROLLED BACK - health check failed after patch" in wave.ticket["close_notes"]


async def test_a_patch_retried_after_its_answer_was_lost_reports_a_healthy_host_patched_not_a_no_op(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    await fleet.set_faults("pay-web-02", lose_answers={"patch": 1})

    wave = await run_wave(temporal_client, wave_settings, changes, app="payments-api")

    assert wave.ticket["close_code"] == "successful"
    counts = wave.status.counts
    assert (counts.patched, counts.unchanged) == (4, 0), "the wave changed pay-web-02: not 'already at target'"
    assert "pay-web-02: patched" in wave.summary() and "no-op" not in wave.summary()
    hosts = await fleet.counters(PAY)
    assert {name: c["patch_calls"] for name, c in hosts.items()} == dict.fromkeys(PAY, 1)
    assert (await fleet.host("pay-web-02"))["patch_level"] == TARGET


async def test_a_refused_patch_whose_answer_was_lost_is_not_called_again_and_the_host_is_rolled_back(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    await fleet.set_faults("pay-web-04", patch_fails=True, lose_answers={"patch": 1})

    wave = await run_wave(temporal_client, wave_settings, changes, app="payments-api")

    host = await fleet.host("pay-web-04")
    states = {h.ci: h for h in wave.status.hosts}
    assert states["pay-web-04"].state == CiState.ROLLED_BACK
    assert "package transaction failed" in states["pay-web-04"].detail, "the refusal the first call got"
    assert host["counters"]["patch_calls"] == 1, "the host's own record answered the retry"
    assert host["patch_level"] == BASELINE and host["last_patch"]["result"] == "failed"
