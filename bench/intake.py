"""Webhook intake: sustained webhooks/s through the shim, and latency from POST to the change workflow's first
activity starting, each against raw `client.start_workflow` of the same workflow on the same dev server.

The worker runs the real ChangeRequestWorkflow with stub ticket activities (the first one records when it
started), so both paths measure intake, not ServiceNow. The shim runs as its own process, as in production.
Rounds alternate raw / shim so drift in the machine's load hits both alike.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

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

from bench.common import ROOT, SHIM_TOKEN, figure, free_port, pct, sized, start_shim, wait_healthy
from bench.loadgen import Connection
from workflows import calls
from workflows import search_attributes as sa
from workflows.change.models import ChangeInput, ChangeTicket, NoteInput
from workflows.change.workflow import ChangeRequestWorkflow
from workflows.runbook.models import ResolveInput, RunbookChoice

RATE_QUEUE = "bench-intake-rate"  # no worker polls it: phase 1 measures intake alone
LATENCY_QUEUE = "bench-intake-latency"
CONCURRENCY = int(os.environ.get("BENCH_INTAKE_CONCURRENCY", "16"))
LATENCY_INTERVAL = float(os.environ.get("BENCH_INTAKE_INTERVAL", "0.05"))  # open loop: one start every 50 ms
# Quick / full sizes (bench/common.py `sized`), each overridable; set by `main` when it runs.
PER_ROUND = ROUNDS = LATENCY_SAMPLES = 0


def _sizes() -> None:
    global PER_ROUND, ROUNDS, LATENCY_SAMPLES
    PER_ROUND = int(os.environ.get("BENCH_INTAKE_N", sized(150, 300)))
    ROUNDS = int(os.environ.get("BENCH_INTAKE_ROUNDS", sized(2, 3)))
    LATENCY_SAMPLES = int(os.environ.get("BENCH_INTAKE_LATENCY_SAMPLES", sized(80, 200)))


class Stubs:
    """Ticket activities that answer at once; `load_change` notes when each workflow's first activity started."""

    def __init__(self) -> None:
        self.first_activity: dict[str, float] = {}

    @activity.defn(name=calls.LOAD_CHANGE.name)
    async def load_change(self, number: str) -> ChangeTicket:
        self.first_activity.setdefault(number, time.perf_counter())
        return ChangeTicket(sys_id="0" * 32, number=number, state="-2", template="bench (no runbook)")

    @activity.defn(name=calls.RESOLVE_RUNBOOK.name)
    async def resolve_runbook(self, request: ResolveInput) -> RunbookChoice:
        return RunbookChoice()

    @activity.defn(name=calls.ADD_WORK_NOTE.name)
    async def add_work_note(self, request: NoteInput) -> None:
        return None


@dataclass
class Round:
    mode: str
    sent: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0


def _body(number: str) -> dict[str, str]:
    """What the Business Rule sends (deploy/servicenow/changeloop_business_rule.js), for a fake change."""
    return {
        "number": number,
        "sys_id": f"{int(number[3:]):032x}",
        "state": "-2",
        "type": "standard",
        "approval": "approved",
        "category": "Software",
        "short_description": "bench",
    }


class Starter:
    """Starts one change either raw (client.start_workflow, as the shim does it) or through the shim's HTTP API."""

    def __init__(self, client: Client, shims: dict[str, asyncio.Queue[Connection]]) -> None:
        self.client = client
        self.shims = shims  # per task queue, a pool of keep-alive connections to that shim

    async def raw(self, number: str, queue: str) -> None:
        await self.client.start_workflow(
            "ChangeRequestWorkflow",
            ChangeInput(number=number),
            id=f"change-{number}",
            task_queue=queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.CHANGE_NUMBER, number)]),
        )

    async def shim(self, number: str, queue: str) -> None:
        pool = self.shims[queue]
        connection = await pool.get()
        try:
            status, body = await connection.post_json("/api/servicenow/change", _body(number))
        finally:
            pool.put_nowait(connection)
        if status != 202:
            raise RuntimeError(f"shim answered {status}: {body.decode(errors='replace')}")


async def rate_round(mode: str, start: Callable[[str], Awaitable[None]], numbers: list[str]) -> Round:
    """Closed loop, CONCURRENCY lanes: how many starts per second each path sustains."""
    result = Round(mode)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for number in numbers:
        queue.put_nowait(number)

    async def lane() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            result.sent[number] = time.perf_counter()
            await start(number)

    began = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    result.elapsed = time.perf_counter() - began
    return result


async def latency_run(starter: Starter, numbers: Iterator[str]) -> tuple[Round, Round]:
    """Open loop at a load the worker keeps up with, raw and shim interleaved one by one, so both see the same
    machine at the same moment: latency is POST (or start call) to the first activity starting."""
    raw, shim = Round("raw"), Round("shim")
    tasks = []
    for i in range(2 * LATENCY_SAMPLES):
        number = next(numbers)
        target = raw if i % 2 == 0 else shim
        call = starter.raw if target is raw else starter.shim
        target.sent[number] = time.perf_counter()
        tasks.append(asyncio.create_task(call(number, LATENCY_QUEUE)))
        await asyncio.sleep(LATENCY_INTERVAL)
    await asyncio.gather(*tasks)
    return raw, shim


async def _wait_first_activities(stubs: Stubs, expected: set[str]) -> None:
    deadline = time.monotonic() + 120
    while not expected <= stubs.first_activity.keys():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(expected - stubs.first_activity.keys())} workflows never reached their first activity"
            )
        await asyncio.sleep(0.1)


async def main() -> None:
    _sizes()
    temporal = Path(sys.executable).parent / "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal), search_attributes=sa.ALL, data_converter=pydantic_data_converter
    )
    address = env.client.service_client.config.target_host
    ports = {RATE_QUEUE: free_port(), LATENCY_QUEUE: free_port()}
    shims = {queue: start_shim(address, queue, port, ROOT) for queue, port in ports.items()}
    numbers = (f"CHG{n}" for n in range(1_000_000, 9_999_999))
    stubs = Stubs()
    headers = {"Authorization": f"Bearer {SHIM_TOKEN}"}
    pools: dict[str, asyncio.Queue[Connection]] = {}
    try:
        async with AsyncExitStack() as stack:
            for queue, port in ports.items():
                await wait_healthy(f"http://127.0.0.1:{port}")
                pools[queue] = asyncio.Queue()
                for _ in range(CONCURRENCY):
                    connection = Connection("127.0.0.1", port, headers)
                    await connection.open()
                    stack.push_async_callback(connection.close)
                    pools[queue].put_nowait(connection)
            starter = Starter(env.client, pools)

            # Phase 1: intake rate, nothing polls the queue.
            async def raw_rate(n: str) -> None:
                await starter.raw(n, RATE_QUEUE)

            async def shim_rate(n: str) -> None:
                await starter.shim(n, RATE_QUEUE)

            await rate_round("raw", raw_rate, [next(numbers) for _ in range(50)])  # warm-up
            await rate_round("shim", shim_rate, [next(numbers) for _ in range(50)])
            rate_rounds: list[Round] = []
            for _ in range(ROUNDS):
                rate_rounds.append(await rate_round("raw", raw_rate, [next(numbers) for _ in range(PER_ROUND)]))
                rate_rounds.append(await rate_round("shim", shim_rate, [next(numbers) for _ in range(PER_ROUND)]))

            # Phase 2: latency to the first activity, with the worker running.
            worker = Worker(
                env.client,
                task_queue=LATENCY_QUEUE,
                workflows=[ChangeRequestWorkflow],
                activities=[stubs.load_change, stubs.resolve_runbook, stubs.add_work_note],
                workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
                activity_task_poller_behavior=PollerBehaviorAutoscaling(),
            )
            async with worker:
                raw, shim = await latency_run(starter, numbers)
                await _wait_first_activities(stubs, set(raw.sent) | set(shim.sent))
    finally:
        for process in shims.values():
            process.terminate()
            process.wait(timeout=30)
        await env.shutdown()
    _report(rate_rounds, raw, shim, stubs)


def _report(rate_rounds: list[Round], raw: Round, shim: Round, stubs: Stubs) -> None:
    rates = {}
    for mode in ("raw", "shim"):
        mine = [r for r in rate_rounds if r.mode == mode]
        rates[mode] = sum(len(r.sent) for r in mine) / sum(r.elapsed for r in mine)
    latency = {r.mode: [(stubs.first_activity[n] - t0) * 1000 for n, t0 in r.sent.items()] for r in (raw, shim)}
    print(f"\nwebhook intake ({ROUNDS} alternating rounds x {PER_ROUND} starts, {CONCURRENCY} concurrent)")
    print(f"  raw client.start_workflow: {rates['raw']:7.1f} starts/s")
    print(f"  shim POST /api/servicenow/change: {rates['shim']:7.1f} webhooks/s")
    ratio = rates["shim"] / rates["raw"]
    figure(
        "intake",
        "shim webhooks/s vs raw start_workflow/s",
        f"{rates['shim']:.1f} vs {rates['raw']:.1f}: ratio {ratio:.2f}",
        ">= 0.80",
        ratio >= 0.8,
    )
    print(
        f"latency to first activity ({LATENCY_SAMPLES} each, interleaved, one start every {LATENCY_INTERVAL * 1000:.0f} ms)"
    )
    print(f"  {'':5} {'p50 ms':>8} {'p99 ms':>8}")
    for mode, values in latency.items():
        print(f"  {mode:5} {pct(values, 50):8.1f} {pct(values, 99):8.1f}")
    added = pct(latency["shim"], 50) - pct(latency["raw"], 50)
    figure(
        "intake",
        "start -> first activity p50, shim minus raw (stub activities)",
        f"{added:+.1f} ms ({pct(latency['shim'], 50):.1f} vs {pct(latency['raw'], 50):.1f} ms)",
        "<= 15 ms",
        added <= 15,
    )
