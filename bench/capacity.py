"""The capacity curve: `python -m bench capacity`.

Standard changes (three no-op steps, the sandbox at its default speed) arrive as webhooks at 2, 5, 10 and 20 per
second, open loop, for `DURATION` seconds each; for each rate: webhook -> first activity started and webhook ->
Implement (begin_implementation completed) at p50 and p99, read from each change's history. The baseline is raw
Temporal at the same rate: PlainChangeWorkflow with as many activities as a change runs, started with
`client.start_workflow`, measured to its first activity and to the activity at the position where a change reaches
Implement. With one worker process, and with two (full run): what a second worker buys on this machine.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client

from bench import changes
from bench.common import (
    address_of,
    dev_server,
    figure,
    free_port,
    pct,
    sized,
    start_baseline_worker,
    start_shim,
    start_worker,
    stop,
    wait_for_pollers,
    wait_healthy,
)
from sandbox.server import SandboxConfig, SandboxServer
from workflows import calls

NAME = "capacity"
RATES = [2, 5, 10, 20]
TARGET_P50_MS = 150.0
T = TypeVar("T")


async def open_loop(rate: float, items: Sequence[T], send: Callable[[T], Coroutine[Any, Any, float]]) -> list[float]:
    """Send one item every 1/rate seconds whatever the answers do; answer each one's send time."""
    began = time.perf_counter()
    tasks: list[asyncio.Task[float]] = []
    for i, item in enumerate(items):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(item)))
    return list(await asyncio.gather(*tasks))


def latencies(sent: list[float], found: list[changes.Moments]) -> tuple[list[float], list[float]]:
    first = [(m.first_activity - s) * 1000 for s, m in zip(sent, found, strict=True)]
    implement = [(m.implement - s) * 1000 for s, m in zip(sent, found, strict=True)]
    return first, implement


def shape(values: list[float]) -> str:
    return f"{pct(values, 50):.0f}/{pct(values, 99):.0f}"


async def measure_rate(
    client: Client,
    hooks: changes.Webhooks,
    made: list[dict[str, str]],
    rate: float,
    plain: tuple[str, int, int],
    tag: str,
) -> tuple[list[float], list[float], list[float], list[float]]:
    queue, activities, implement_at = plain
    sent = await open_loop(rate, made, hooks.send)
    ids = [f"change-{c['number']}" for c in made]
    await changes.wait_closed(client, ids, within=600)
    ours = await changes.all_moments(client, ids, calls.BEGIN_IMPLEMENTATION.name)

    async def start_plain(i: int) -> float:
        at = time.time()
        await client.start_workflow("PlainChangeWorkflow", activities, id=f"plain-{tag}-{i}", task_queue=queue)
        return at

    plain_ids = [f"plain-{tag}-{i}" for i in range(len(made))]
    plain_sent = await open_loop(rate, list(range(len(made))), start_plain)
    await changes.wait_closed(client, plain_ids, within=600)
    theirs = await changes.all_moments(client, plain_ids, implement_at)
    return *latencies(sent, ours), *latencies(plain_sent, theirs)


async def curve(client: Client, sandbox: SandboxServer, tmp: Path, registry: Path, workers: int) -> list[Any]:
    address, port = address_of(client), free_port()
    queue, plain_queue = f"bench-capacity-{workers}", f"bench-capacity-plain-{workers}"
    settings = changes.worker_settings(sandbox.url, registry)
    processes = [start_worker(address, queue, tmp, **settings) for _ in range(workers)]
    processes += [start_baseline_worker(address, plain_queue) for _ in range(workers)]
    processes.append(start_shim(address, queue, port, tmp, runbooks=str(registry)))
    rows = []
    try:
        await wait_for_pollers(client, queue, workers)
        await wait_for_pollers(client, plain_queue, workers)
        await wait_healthy(f"http://127.0.0.1:{port}")
        duration = sized(3, 15)
        async with changes.Webhooks(port, 32) as hooks:
            warm = await changes.make_changes(sandbox.url, 10)
            await open_loop(10, warm, hooks.send)
            await changes.wait_closed(client, [f"change-{c['number']}" for c in warm], within=120)
            own = await changes.moments(client, f"change-{warm[0]['number']}")
            runbook = await changes.moments(client, f"runbook-{warm[0]['number']}")
            implement_at = await implement_position(client, f"change-{warm[0]['number']}")
            plain = (plain_queue, own.activities + runbook.activities, implement_at)
            for rate in RATES:
                made = await changes.make_changes(sandbox.url, int(rate * duration))
                first, implement, plain_first, plain_implement = await measure_rate(
                    client, hooks, made, rate, plain, f"{workers}-{rate}"
                )
                p50 = pct(first, 50)
                rows.append((rate, p50))
                figure(
                    NAME,
                    f"{workers} worker(s), {rate}/s: webhook -> first activity | -> Implement, p50/p99 ms",
                    f"{shape(first)} | {shape(implement)} (raw Temporal {shape(plain_first)} | {shape(plain_implement)})",
                )
    finally:
        stop(*processes)
    sustained = [rate for rate, p50 in rows if p50 < TARGET_P50_MS]
    figure(
        NAME,
        f"{workers} worker(s): highest rate with webhook -> first activity p50 < {TARGET_P50_MS:.0f} ms",
        f"{max(sustained)}/s" if sustained else f"none of {RATES}",
    )
    return rows


async def implement_position(client: Client, workflow_id: str) -> int:
    """Which activity of the change (1-based, in schedule order) takes the ticket to Implement."""
    position = 0
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            position += 1
            if event.activity_task_scheduled_event_attributes.activity_type.name == calls.BEGIN_IMPLEMENTATION.name:
                return position
    raise RuntimeError(f"{workflow_id} never scheduled {calls.BEGIN_IMPLEMENTATION.name}")


async def main() -> None:
    print(f"\ncapacity curve: standard changes at {RATES} per second, vs raw Temporal at the same rates")
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(SandboxConfig(port=0, seed=True)) as sandbox:
        registry = changes.write_registry(Path(tmp))
        async with dev_server() as env:
            for workers in sized([1], [1, 2]):
                await curve(env.client, sandbox, Path(tmp), registry, workers)
