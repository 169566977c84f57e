"""Patch waves at scale: `python -m bench wave`.

1. 1,000 CIs, max_parallel 50, every sandbox host operation a fixed `BENCH_WAVE_OP_SECONDS` (default 2 s; a
   host is snapshot + patch + health = 3 ops): wall time against the ideal N / parallel x per-host time.
   Target: ratio <= 1.25.
2. 10,000 CIs (fixed 0.2 s ops, max_parallel 200): the wave completes, the largest single history (any run of the
   wave, or a host) stays under 10,000 events, and the worker's peak RSS is reported.

Everything is real except the hosts: a Temporal dev server (in memory), the worker as its own process (as in
production, and so its RSS is its own), and a bench-only sandbox ServiceNow whose CMDB gets the bench's CIs
straight through the instance (never the tests' sandbox). Each wave runs as a change's runbook would, on its own
(`wave-<number>`), writing its batched notes and summary to a real change record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.registry import load_registry
from config.runbooks import runbook_digest
from sandbox.seed import seed_sys_id
from sandbox.server import SandboxConfig, SandboxServer
from workflows import search_attributes as sa
from workflows.runbook.models import RunbookResult
from workflows.wave.models import WaveRun, wave_workflow_id

ROOT = Path(__file__).resolve().parents[1]
TASK_QUEUE = "bench-wave"
USER = ("changeloop.integration", "sn-integration-pw")
OP_SECONDS = float(os.environ.get("BENCH_WAVE_OP_SECONDS", "2"))
SIZES = [int(n) for n in os.environ.get("BENCH_WAVE_SIZES", "1000,10000").split(",")]
REGISTRY = """
hosts:
  default: fleet
  drivers:
    fleet: {driver: http, base_url: "{servicenow_url}/fleet"}
runbooks:
  bench_wave:
    workflow: PatchWaveWorkflow
    timeout: 6h
    note_batch_size: 100
    note_batch_seconds: 30
    params: {target_level: "2025.06", max_parallel: "%(parallel)s", page_size: "500", ci_classes: cmdb_ci_linux_server}
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


def start_worker(address: str, sandbox_url: str, registry: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "CHANGELOOP_TEMPORAL_ADDRESS": address,
        "CHANGELOOP_TASK_QUEUE": TASK_QUEUE,
        "CHANGELOOP_SERVICENOW_URL": sandbox_url,
        "CHANGELOOP_SERVICENOW_USERNAME": USER[0],
        "CHANGELOOP_SERVICENOW_PASSWORD": USER[1],
        "CHANGELOOP_RUNBOOKS": str(registry),
        "CHANGELOOP_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run_wave(client: Client, sandbox_url: str, registry: Path, app: str) -> tuple[float, Any]:
    """Start a wave over `app` on a fresh change; answer (wall seconds, result)."""
    async with httpx.AsyncClient(base_url=sandbox_url, auth=USER, timeout=60) as http:
        response = await http.post(
            "/api/now/table/change_request",
            json={"type": "standard", "short_description": f"bench wave over {app}", "cmdb_ci": app},
        )
        change = response.json()["result"]
    runbook = load_registry(registry).runbooks["bench_wave"]
    started = time.perf_counter()
    handle = await client.start_workflow(
        "PatchWaveWorkflow",
        WaveRun(
            runbook=runbook.name,
            digest=runbook_digest(runbook),
            change_number=change["number"],
            change_sys_id=change["sys_id"],
        ),
        id=wave_workflow_id(change["number"]),
        task_queue=TASK_QUEUE,
        result_type=RunbookResult,
    )
    result = await handle.result()
    return time.perf_counter() - started, (handle.id, result)


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


def write_registries(directory: Path, plans: list[tuple[int, int, float]]) -> list[Path]:
    paths = []
    for size, parallel, _ in plans:
        path = directory / f"bench{size}.yaml"
        path.write_text(REGISTRY % {"parallel": parallel})
        paths.append(path)
    return paths


def report(
    size: int, parallel: int, op: float, wall: float, result: Any, events: tuple[int, int, int], rss: float
) -> None:
    ideal = size / parallel * 3 * op
    wave_events, runs, host_events = events
    # The ratio target is the 1,000-CI run's; the 10,000-CI run is about bounded history and memory, and on two
    # cores it is bound by the server's task throughput, so it reports hosts per second instead.
    verdict = f"ratio {wall / ideal:.3f} (target <= 1.25)" if size <= 1000 else f"{size / wall:.1f} hosts/s"
    print(
        f"wave {size} CIs, max_parallel {parallel}, op {op:g} s x3/host: {result.output.get('patched')} patched in "
        f"{wall:.1f} s; ideal {ideal:.1f} s; {verdict}"
    )
    print(
        f"  histories: largest wave run {wave_events} events over {runs} runs, largest host {host_events} events "
        f"(limit 10,000); worker peak RSS {rss:.0f} MiB"
    )


async def main() -> None:
    temporal = Path(sys.executable).parent / "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal), search_attributes=sa.ALL, data_converter=pydantic_data_converter
    )
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(SandboxConfig(port=0, seed=True)) as sandbox:
        plans = [(size, 50 if size <= 1000 else 200, OP_SECONDS if size <= 1000 else 0.2) for size in SIZES]
        registries = write_registries(Path(tmp), plans)
        for size in SIZES:
            add_application(sandbox, f"bench{size}", size)
        address = env.client.service_client.config.target_host
        async with httpx.AsyncClient(base_url=f"{sandbox.url}/fleet", timeout=30) as fleet:
            for (size, parallel, op), registry in zip(plans, registries, strict=True):
                worker = start_worker(address, sandbox.url, registry)
                try:
                    await fleet.post("/reset")
                    await run_wave(env.client, sandbox.url, registry, "fleet")  # warm-up: worker up, sandbox hot
                    await fleet.put("/config", json={"op_seconds": op})
                    wall, (wave_id, result) = await run_wave(env.client, sandbox.url, registry, f"bench{size}")
                    rss = peak_rss_mib(worker.pid)
                finally:
                    worker.terminate()
                    worker.wait(timeout=60)
                number = wave_id.removeprefix("wave-")
                samples = [f"patch-{number}-bench{size}-{n:05d}" for n in (1, size // 2, size)]
                wave_events, runs, host_events = await largest_history(env.client, wave_id, samples)
                report(size, parallel, op, wall, result, (wave_events, runs, host_events), rss)
    await env.shutdown()
