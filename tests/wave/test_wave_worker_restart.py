"""A worker killed in the middle of a wave: a new worker finishes it, and no host is patched twice."""

from __future__ import annotations

import asyncio
import signal
import uuid

from temporalio.client import Client

from config.settings import Settings
from tests.change.test_worker_restart import _worker_process
from tests.changes import TEST_REGISTRY, Changes, start
from tests.helpers import listed_runs, wait_for
from tests.wave.conftest import FLEET, TARGET, FleetControl
from workflows.wave.models import patch_host_workflow_id


async def test_worker_killed_mid_wave_and_restarted_patches_no_host_twice(
    temporal_client: Client, settings: Settings, changes: Changes, fleet: FleetControl
) -> None:
    await fleet.configure(op_seconds=0.25)  # slow enough that the kill lands mid-wave, with patches in flight
    isolated = settings.model_copy(update={"task_queue": f"wave-restart-{uuid.uuid4().hex[:8]}"})

    async def applied() -> int:
        return sum(c["patch_calls"] for c in (await fleet.counters(FLEET)).values())

    async def patch_in_flight() -> bool:
        """A quarter of the fleet patched, and a patch call in flight (received, not yet applied) to kill under."""
        counters = (await fleet.counters(FLEET)).values()
        started = sum(c["patch_calls"] for c in counters)
        return started >= 5 and any(c["patch_calls"] > c["patches_applied"] for c in counters)

    first = _worker_process(isolated, TEST_REGISTRY)
    try:
        change = await changes.create(template="Patch Linux servers", ci="fleet")
        handle = await start(temporal_client, isolated, change["number"])
        await wait_for(patch_in_flight, timeout=30, interval=0.01)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    at_kill = await applied()

    second = _worker_process(isolated, TEST_REGISTRY)
    try:
        result = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    assert at_kill < len(FLEET), "the worker died before the wave was done"
    assert result.close_code == "successful"
    hosts = {name: await fleet.host(name) for name in FLEET}
    assert {name: h["counters"]["patch_calls"] for name, h in hosts.items()} == dict.fromkeys(FLEET, 1), (
        "no host patched twice (patch calls, a retry included), none left out"
    )
    assert {name: h["counters"]["patches_applied"] for name, h in hosts.items()} == dict.fromkeys(FLEET, 1)
    assert all(h["patch_level"] == TARGET for h in hosts.values())
    for name in FLEET:
        child = patch_host_workflow_id(change["number"], name)
        runs = await listed_runs(temporal_client, child)
        assert len(runs) == 1, f"{child} ran {len(runs)} times"
