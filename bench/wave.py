"""Patch waves at scale: `python -m bench wave`.

1. Against raw Temporal: a wave over 1,000 CIs (quick: 100) with 0 s host operations (pure orchestration) against
   PlainWaveWorkflow of the same shape (one child per host, three activities each, the same window of 50), in
   hosts per second. Target: ratio >= 0.8.
2. 1,000 CIs (quick: 100), max_parallel 50, every host operation a fixed 2 s (snapshot + patch + health = 6 s per
   host): wall time against the ideal N / 50 x 6 s, three runs in a row (quick: one). Target: <= 1.2 each. The plain
   wave at the same 2 s says what raw Temporal itself reaches on this machine.
3. 10,000 CIs, max_parallel 200, ops 0.2 s (full only; BENCH_WAVE_10K=0 skips it): completes, bounded histories,
   the worker's peak RSS.
4. The realistic ServiceNow profile: a 200-host wave's ServiceNow calls (per host) and time (quick: 100 hosts).

Everything is real except the hosts: a Temporal dev server (in memory), the worker as its own process, and a
bench-only sandbox ServiceNow whose CMDB gets the bench's CIs straight through the instance. Each wave runs as a
change's runbook would, on its own (`wave-<number>`), writing its batched notes and summary to a real change record.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import httpx
from temporalio.client import Client

from bench.common import (
    INTEGRATION,
    address_of,
    dev_server,
    figure,
    peak_rss_mib,
    sized,
    start_baseline_worker,
    start_worker,
    stop,
    wait_for_pollers,
)
from config.registry import load_registry
from config.runbooks import runbook_digest
from sandbox.seed import seed_sys_id
from sandbox.server import SandboxConfig, SandboxServer
from workflows.runbook.models import RunbookResult
from workflows.wave.models import WaveRun, wave_workflow_id

NAME = "wave"
QUEUE = "bench-wave"
PLAIN_QUEUE = "bench-wave-plain"
REGISTRY = """
hosts:
  default: fleet
  drivers:
    fleet: {driver: http, base_url: "{servicenow_url}/fleet"}
runbooks:
  bench_wave_50:
    workflow: PatchWaveWorkflow
    timeout: 6h
    note_batch_size: 100
    note_batch_seconds: 30
    params: {target_level: "2025.06", max_parallel: "50", page_size: "500", ci_classes: cmdb_ci_linux_server}
  bench_wave_200:
    workflow: PatchWaveWorkflow
    timeout: 6h
    note_batch_size: 100
    note_batch_seconds: 30
    params: {target_level: "2025.06", max_parallel: "200", page_size: "500", ci_classes: cmdb_ci_linux_server}
"""


def add_application(server: SandboxServer, app: str, hosts: int) -> None:
    """An application with `hosts` linux servers related "Runs on::Runs", written through the instance."""
    instance = server.app_state.instance
    app_id = seed_sys_id("cmdb_ci", app)
    instance.create("cmdb_ci_appl", {"name": app, "install_status": "1"}, "admin", rules=False, sys_id=app_id)
    runs_on = seed_sys_id("cmdb_rel_type", "Runs on::Runs")
    for n in range(1, hosts + 1):
        name = f"{app}-{n:05d}"
        host_id = seed_sys_id("cmdb_ci", name)
        body = {"name": name, "install_status": "1", "ip_address": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"}
        instance.create("cmdb_ci_linux_server", body, "admin", rules=False, sys_id=host_id)
        instance.create("cmdb_rel_ci", {"parent": app_id, "child": host_id, "type": runs_on}, "admin", rules=False)


class Waves:
    """Starts waves on one worker and one sandbox, and the plain baseline on its own worker."""

    def __init__(self, client: Client, sandbox: SandboxServer, registry: Path) -> None:
        self.client, self.sandbox, self.registry = client, sandbox, registry
        self.runs = 0

    async def fleet(self, op_seconds: float) -> None:
        async with httpx.AsyncClient(base_url=f"{self.sandbox.url}/fleet", timeout=30) as fleet:
            await fleet.post("/reset")
            await fleet.put("/config", json={"op_seconds": op_seconds})

    async def changeloop(self, app: str, runbook_name: str) -> tuple[float, str, RunbookResult]:
        """Start a wave over `app` on a fresh change; answer (wall seconds, workflow ID, result)."""
        async with httpx.AsyncClient(base_url=self.sandbox.url, auth=INTEGRATION, timeout=60) as http:
            response = await http.post(
                "/api/now/table/change_request",
                json={"type": "standard", "short_description": f"bench wave over {app}", "cmdb_ci": app},
            )
            change = response.json()["result"]
        runbook = load_registry(self.registry).runbooks[runbook_name]
        started = time.perf_counter()
        handle = await self.client.start_workflow(
            "PatchWaveWorkflow",
            WaveRun(
                runbook=runbook.name,
                digest=runbook_digest(runbook),
                change_number=change["number"],
                change_sys_id=change["sys_id"],
            ),
            id=wave_workflow_id(change["number"]),
            task_queue=QUEUE,
            result_type=RunbookResult,
        )
        result = await handle.result()
        return time.perf_counter() - started, handle.id, result

    async def plain(self, hosts: int, window: int, op_seconds: float) -> float:
        self.runs += 1
        started = time.perf_counter()
        await self.client.execute_workflow(
            "PlainWaveWorkflow",
            args=[hosts, window, op_seconds],
            id=f"plain-wave-{self.runs}",
            task_queue=PLAIN_QUEUE,
        )
        return time.perf_counter() - started


async def largest_history(client: Client, wave_id: str, sample_host_ids: list[str]) -> tuple[int, int, int]:
    """(largest wave run, number of wave runs, largest sampled host history) in events."""
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{wave_id}'")]
    wave_max = 0
    for run in runs:
        description = await client.get_workflow_handle(wave_id, run_id=run.run_id).describe()
        wave_max = max(wave_max, description.raw_description.workflow_execution_info.history_length)
    host_max = 0
    for host_id in sample_host_ids:
        description = await client.get_workflow_handle(host_id).describe()
        host_max = max(host_max, description.raw_description.workflow_execution_info.history_length)
    return wave_max, len(runs), host_max


async def against_plain(waves: Waves, size: int, rounds: int) -> None:
    """Alternating rounds, changeloop then plain: the machine's load drifts over both alike."""
    ours, theirs = 0.0, 0.0
    for _ in range(rounds):
        await waves.fleet(0.0)
        wall, _, result = await waves.changeloop(f"bench{size}", "bench_wave_50")
        assert result.output.get("patched") == str(size), result.output
        ours += wall
        theirs += await waves.plain(size, 50, 0.0)
    ratio = theirs / ours  # hosts/s over hosts/s, the same hosts on both sides
    figure(
        NAME,
        f"{size} CIs, 0 s ops, window 50: hosts/s vs PlainWaveWorkflow, {rounds} alternating rounds",
        f"{size * rounds / ours:.1f} vs {size * rounds / theirs:.1f}: ratio {ratio:.2f}",
        ">= 0.80",
        ratio >= 0.8,
    )


async def two_second_ops(waves: Waves, size: int, runs: int) -> None:
    """Consecutive runs, each followed by the plain wave at the same 2 s: what raw Temporal reaches at that moment."""
    ideal = size / 50 * 3 * 2.0
    for run in range(1, runs + 1):
        await waves.fleet(2.0)
        wall, _, result = await waves.changeloop(f"bench{size}", "bench_wave_50")
        plain = await waves.plain(size, 50, 2.0)
        figure(
            NAME,
            f"{size} CIs, 2 s ops, window 50, run {run}/{runs}: wall / ideal {ideal:.0f} s (PlainWaveWorkflow's)",
            f"{wall:.1f} s: ratio {wall / ideal:.3f} (plain {plain:.1f} s: {plain / ideal:.3f}); "
            f"{result.output.get('patched')} patched",
            "<= 1.20",
            wall / ideal <= 1.2,
        )


async def ten_thousand(waves: Waves, worker_pid: int) -> None:
    size = 10_000
    await waves.fleet(0.2)
    wall, wave_id, result = await waves.changeloop(f"bench{size}", "bench_wave_200")
    number = wave_id.removeprefix("wave-")
    samples = [f"patch-{number}-bench{size}-{n:05d}" for n in (1, size // 2, size)]
    wave_events, runs, host_events = await largest_history(waves.client, wave_id, samples)
    figure(
        NAME,
        "10,000 CIs, 0.2 s ops, window 200",
        f"{result.output.get('patched')} patched in {wall:.0f} s ({size / wall:.1f} hosts/s); largest wave run "
        f"{wave_events} events over {runs} runs, host {host_events}; worker peak RSS {peak_rss_mib(worker_pid):.0f} MiB",
        "histories < 10,000 events",
        max(wave_events, host_events) < 10_000,
    )


async def realistic(waves: Waves, size: int) -> None:
    await waves.fleet(0.0)
    async with httpx.AsyncClient(base_url=waves.sandbox.url) as http:
        (await http.put("/sandbox/profile", json={"name": "realistic"})).raise_for_status()
        await http.post("/sandbox/stats/reset")
        try:
            wall, _, result = await waves.changeloop(f"bench{size}r", "bench_wave_50")
            stats = (await http.get("/sandbox/stats")).json()
        finally:
            (await http.put("/sandbox/profile", json={"name": "default"})).raise_for_status()
    calls = stats["total_requests"]
    by_kind = ", ".join(f"{m} {t} {n}" for m, tables in stats["requests"].items() for t, n in tables.items())
    figure(
        NAME,
        f"realistic profile: {size}-host wave (0 s ops), ServiceNow calls and time",
        f"{calls} calls ({calls / size:.2f} per host: {by_kind}) in {wall:.1f} s ({result.output.get('patched')} patched)",
    )


async def main() -> None:
    size0, size2, runs, real = sized(100, 1000), sized(100, 1000), sized(1, 3), sized(100, 200)
    huge = os.environ.get("BENCH_WAVE_10K", sized("0", "1")) == "1"  # the 10,000-CI wave: about 16 minutes
    print(f"\nwave bench: {size0} CIs against raw Temporal, {size2} CIs at 2 s ops x{runs}, realistic {real} hosts")
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(SandboxConfig(port=0, seed=True)) as sandbox:
        registry = Path(tmp) / "bench-waves.yaml"
        registry.write_text(REGISTRY)
        for size in sorted({size0, size2, *([10_000] if huge else [])}):
            add_application(sandbox, f"bench{size}", size)
        add_application(sandbox, f"bench{real}r", real)
        add_application(sandbox, "benchwarm", 20)
        async with dev_server() as env:
            address = address_of(env.client)
            worker = start_worker(
                address,
                QUEUE,
                Path(tmp),
                servicenow_url=sandbox.url,
                servicenow_username=INTEGRATION[0],
                servicenow_password=INTEGRATION[1],
                runbooks=str(registry),
            )
            plain_worker = start_baseline_worker(address, PLAIN_QUEUE)
            try:
                await wait_for_pollers(env.client, QUEUE)
                await wait_for_pollers(env.client, PLAIN_QUEUE)
                waves = Waves(env.client, sandbox, registry)
                await waves.fleet(0.0)
                await waves.changeloop("benchwarm", "bench_wave_50")  # warm-up: worker caches, connections
                await waves.plain(20, 50, 0.0)
                await against_plain(waves, size0, sized(2, 3))
                await two_second_ops(waves, size2, runs)
                await realistic(waves, real)
                if huge:
                    await ten_thousand(waves, worker.pid)
            finally:
                stop(worker, plain_worker)
