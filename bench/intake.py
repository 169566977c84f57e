"""Webhook intake: sustained webhooks/s through the shim, and latency from POST to the change workflow's first
activity starting, each against raw `client.start_workflow` of the same workflow on the same dev server.

The worker runs the real ChangeRequestWorkflow with stub ticket activities (the first one records when it
started), so both paths measure intake, not ServiceNow. The shim runs as its own process, as in production.
Rounds alternate raw / shim so drift in the machine's load hits both alike.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import PollerBehaviorAutoscaling, Worker

from workflows import search_attributes as sa
from workflows.change import ChangeRequestWorkflow
from workflows.models import Act, ChangeInput, ChangeTicket, NoteInput, ResolveInput, RunbookChoice

TOKEN = "bench-token"
TASK_QUEUE = "bench-intake"
PER_ROUND = int(os.environ.get("BENCH_INTAKE_N", "300"))
ROUNDS = int(os.environ.get("BENCH_INTAKE_ROUNDS", "3"))
CONCURRENCY = int(os.environ.get("BENCH_INTAKE_CONCURRENCY", "16"))


class Stubs:
    """Ticket activities that answer at once; `load_change` notes when each workflow's first activity started."""

    def __init__(self) -> None:
        self.first_activity: dict[str, float] = {}

    @activity.defn(name=Act.LOAD_CHANGE)
    async def load_change(self, number: str) -> ChangeTicket:
        self.first_activity.setdefault(number, time.perf_counter())
        return ChangeTicket(sys_id="0" * 32, number=number, state="-2", template="bench (no runbook)")

    @activity.defn(name=Act.RESOLVE_RUNBOOK)
    async def resolve_runbook(self, request: ResolveInput) -> RunbookChoice:
        return RunbookChoice()

    @activity.defn(name=Act.ADD_WORK_NOTE)
    async def add_work_note(self, request: NoteInput) -> None:
        return None


@dataclass
class Round:
    mode: str
    sent: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0

    def latencies(self, stubs: Stubs) -> list[float]:
        return [(stubs.first_activity[n] - t0) * 1000 for n, t0 in self.sent.items()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _bounded(items: list[str], send: object) -> float:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def lane() -> None:
        while not queue.empty():
            await send(queue.get_nowait())  # type: ignore[operator]

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return time.perf_counter() - start


async def raw_round(client: Client, numbers: list[str]) -> Round:
    result = Round("raw")

    async def send(number: str) -> None:
        result.sent[number] = time.perf_counter()
        await client.start_workflow(
            "ChangeRequestWorkflow",
            ChangeInput(number=number),
            id=f"change-{number}",
            task_queue=TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.CHANGE_NUMBER, number)]),
        )

    result.elapsed = await _bounded(numbers, send)
    return result


async def shim_round(http: httpx.AsyncClient, numbers: list[str]) -> Round:
    result = Round("shim")

    async def send(number: str) -> None:
        body = {
            "number": number,
            "sys_id": f"{int(number[3:]):032x}",
            "state": "-2",
            "type": "standard",
            "approval": "approved",
        }
        result.sent[number] = time.perf_counter()
        response = await http.post("/api/servicenow/change", json=body)
        if response.status_code != 202:
            raise RuntimeError(f"shim answered {response.status_code}: {response.text}")

    result.elapsed = await _bounded(numbers, send)
    return result


def _start_shim(address: str, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "CHANGELOOP_TEMPORAL_ADDRESS": address,
        "CHANGELOOP_TASK_QUEUE": TASK_QUEUE,
        "CHANGELOOP_WEBHOOK_TOKEN": TOKEN,
        "CHANGELOOP_LOG_LEVEL": "WARNING",
    }
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-m", "starter.cli", "shim", "--port", str(port)], cwd=root, env=env, stdout=subprocess.DEVNULL
    )


async def _wait_healthy(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("shim did not become healthy within 30 s")


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> None:
    temporal = Path(sys.executable).parent / "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal), search_attributes=sa.ALL, data_converter=pydantic_data_converter
    )
    address = env.client.service_client.config.target_host
    stubs = Stubs()
    port = _free_port()
    shim = _start_shim(address, port)
    counter = iter(range(1_000_000, 9_999_999))
    rounds: list[Round] = []
    try:
        worker = Worker(
            env.client,
            task_queue=TASK_QUEUE,
            workflows=[ChangeRequestWorkflow],
            activities=[stubs.load_change, stubs.resolve_runbook, stubs.add_work_note],
            workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
            activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with (
            worker,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits, timeout=60) as http,
        ):
            await _wait_healthy(http)
            for warm in (
                raw_round(env.client, [f"CHG{next(counter)}" for _ in range(30)]),
                shim_round(http, [f"CHG{next(counter)}" for _ in range(30)]),
            ):
                await warm
            for _ in range(ROUNDS):
                rounds.append(await raw_round(env.client, [f"CHG{next(counter)}" for _ in range(PER_ROUND)]))
                rounds.append(await shim_round(http, [f"CHG{next(counter)}" for _ in range(PER_ROUND)]))
            expected = {n for r in rounds for n in r.sent}
            deadline = time.monotonic() + 120
            while not expected <= stubs.first_activity.keys():
                if time.monotonic() > deadline:
                    raise RuntimeError("some workflows never reached their first activity")
                await asyncio.sleep(0.1)
    finally:
        shim.terminate()
        shim.wait(timeout=30)
        await env.shutdown()
    _report(rounds, stubs)


def _report(rounds: list[Round], stubs: Stubs) -> None:
    figures = {}
    for mode in ("raw", "shim"):
        mine = [r for r in rounds if r.mode == mode]
        rate = sum(len(r.sent) for r in mine) / sum(r.elapsed for r in mine)
        latencies = [lat for r in mine for lat in r.latencies(stubs)]
        figures[mode] = (rate, _pct(latencies, 50), _pct(latencies, 99), statistics.mean(latencies))
    raw, shim = figures["raw"], figures["shim"]
    print(f"\nwebhook intake: {ROUNDS} alternating rounds x {PER_ROUND} starts, concurrency {CONCURRENCY}")
    print(f"{'':6} {'starts/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for mode, (rate, p50, p99, mean) in figures.items():
        print(f"{mode:6} {rate:9.1f} {p50:8.1f} {p99:8.1f} {mean:8.1f}")
    print(f"intake ratio (shim / raw starts/s): {shim[0] / raw[0]:.2f}  (target >= 0.80)")
    print(f"added p50 latency: {shim[1] - raw[1]:+.1f} ms  (target <= 15 ms); p99 ratio {shim[2] / raw[2]:.2f}")
