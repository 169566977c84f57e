"""What every bench shares: quick or full sizes, the dev server, worker and shim processes, percentiles, event times,
the machine's load, and the one summary table `python -m bench` prints at the end.

Every figure is recorded with the 1-minute load average at the moment it was taken (`figure`): the machine has two
cores shared with other work, and a figure taken under load says so next to itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workflows import search_attributes as sa

ROOT = Path(__file__).resolve().parents[1]
INTEGRATION = ("changeloop.integration", "sn-integration-pw")
SHIM_TOKEN = "bench-token-0123456789abcdef0123456789abcdef"  # 32+ characters: shorter tokens stop the shim

FULL = False  # `python -m bench --full` / `make bench FULL=1`: the sizes; quick otherwise


def sized(quick: Any, full: Any) -> Any:
    return full if FULL else quick


# -- figures and the summary ---------------------------------------------------------------------------------------


@dataclass
class Figure:
    bench: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None
    load: float = 0.0


FIGURES: list[Figure] = []


def load_average() -> float:
    return os.getloadavg()[0]


def figure(bench: str, name: str, value: str, target: str = "", met: bool | None = None) -> Figure:
    """Record one figure for the summary, with the load average now; print it as it is taken."""
    found = Figure(bench, name, value, target, met, load_average())
    FIGURES.append(found)
    verdict = "" if met is None else ("  MET" if met else "  NOT MET")
    aim = f"  (target {target})" if target else ""
    print(f"  [{bench}] {name}: {value}{aim}{verdict}  load {found.load:.2f}", flush=True)
    return found


def summary_table(figures: list[Figure]) -> str:
    head = ("bench", "figure", "value", "target", "met", "load")
    rows = [
        (f.bench, f.name, f.value, f.target, "" if f.met is None else ("yes" if f.met else "NO"), f"{f.load:.2f}")
        for f in figures
    ]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = [line, "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([*out, line])


# -- numbers -------------------------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def event_time(event: HistoryEvent) -> float:
    """The event's server time as UNIX seconds (comparable with time.time() on this machine)."""
    return event.event_time.seconds + event.event_time.nanos / 1e9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's resident-set high-water mark (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- processes -----------------------------------------------------------------------------------------------------


@asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server (in memory) with changeloop's search attributes, shut down on the way out."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


def address_of(client: Client) -> str:
    return client.service_client.config.target_host


def _clean_env(overrides: Mapping[str, str]) -> dict[str, str]:
    # Bytecode as in production: pip compiles the wheel's modules at install (deploy/Dockerfile), while a checkout
    # run with PYTHONDONTWRITEBYTECODE compiles every workflow module again for each workflow instance (the
    # workflow sandbox re-imports it): measured at ~15 % of a worker's CPU. `compile_checkout` writes them once.
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_") and k != "PYTHONDONTWRITEBYTECODE"}
    return base | {"PYTHONPATH": str(ROOT), "CHANGELOOP_LOG_LEVEL": "WARNING"} | dict(overrides)


def compile_checkout() -> None:
    """Byte-compile the product and the benches (git-ignored __pycache__), as pip does for an installed wheel."""
    import compileall

    for package in ("config", "servicenow", "workflows", "activities", "ops", "starter", "sandbox", "bench"):
        compileall.compile_dir(ROOT / package, quiet=1)
    compileall.compile_file(ROOT / "worker.py", quiet=1)


def start_worker(temporal: str, task_queue: str, cwd: Path, **settings: str) -> subprocess.Popen[bytes]:
    """changeloop's worker as its own process (as in production); `settings` are CHANGELOOP_* names, lower case."""
    env = _clean_env(
        {"CHANGELOOP_TEMPORAL_ADDRESS": temporal, "CHANGELOOP_TASK_QUEUE": task_queue}
        | {f"CHANGELOOP_{k.upper()}": v for k, v in settings.items()}
    )
    process = subprocess.Popen(
        # Stops on SIGTERM; os._exit as the CLI does (sdk-python issue 300: no crash in interpreter exit).
        [sys.executable, "-c", "import asyncio, os, worker; asyncio.run(worker.run_worker()); os._exit(0)"],
        env=env,
        cwd=cwd,  # no developer .env
        stdout=subprocess.DEVNULL,
    )
    _profile(process, f"worker-{task_queue}")
    return process


def _profile(process: subprocess.Popen[bytes], name: str) -> None:
    """BENCH_PYSPY=<dir>: py-spy (a dev tool from PyPI: pip install py-spy) samples the process for its whole life
    and writes collapsed stacks to <dir>/<name>-<pid>.txt when it ends: where the time goes."""
    directory = os.environ.get("BENCH_PYSPY")
    if not directory:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    out = Path(directory) / f"{name}-{process.pid}.txt"
    spy = Path(sys.executable).parent / "py-spy"
    subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(process.pid),
            "--rate",
            "50",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_baseline_worker(temporal: str, task_queue: str) -> subprocess.Popen[bytes]:
    """The raw-Temporal baseline's worker (bench/baseline.py), a process like changeloop's."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.baseline", temporal, task_queue],
        env=_clean_env({}),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    _profile(process, f"baseline-{task_queue}")
    return process


def start_shim(temporal: str, task_queue: str, port: int, cwd: Path, **settings: str) -> subprocess.Popen[bytes]:
    env = _clean_env(
        {
            "CHANGELOOP_TEMPORAL_ADDRESS": temporal,
            "CHANGELOOP_TASK_QUEUE": task_queue,
            "CHANGELOOP_WEBHOOK_TOKEN": SHIM_TOKEN,
        }
        | {f"CHANGELOOP_{k.upper()}": v for k, v in settings.items()}
    )
    return subprocess.Popen(
        [sys.executable, "-m", "starter.cli", "shim", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def wait_for_pollers(client: Client, task_queue: str, count: int = 1, within: float = 60.0) -> None:
    """Until `count` worker processes poll the task queue: their start-up is not the bench's time."""
    request = DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue))
    deadline = time.monotonic() + within
    while True:
        pollers = (await client.workflow_service.describe_task_queue(request)).pollers
        if len({p.identity for p in pollers}) >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pollers)} pollers on {task_queue} after {within:.0f} s, want {count} workers")
        await asyncio.sleep(0.1)


async def wait_healthy(url: str, within: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=url) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy within {within:.0f} s")
