"""CMDB reconciliation at scale: 100,000 declared CIs against 100,000 live resources, 1% drift both ways.

A bench-only sandbox (no seed) is bulk-loaded straight into its store — 100k HTTP POSTs would measure the loader,
not the reconciliation. The live inventory is a JSON file read by a `command` source. The worker runs as its own
process (as in production) so its peak RSS is its own. Two runs: the first creates the new CIs and opens the
incidents; the second, over the same drift, must create and open nothing (its cost is the idempotency look-ups).

Reported per run: wall time, ServiceNow calls (requests the sandbox served), largest payload in the workflow's history
(must stay under 256 KB: inventories never enter history), the time activities spent vs the workflow's wall time
(what orchestration costs), and the worker's peak RSS.

`python -m bench reconcile`; BENCH_RECONCILE_N (default 100000) and BENCH_RECONCILE_DRIFT (default 0.01) resize it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from google.protobuf.message import Message
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.reconcile import ReconcileConfig
from sandbox.config import DEFAULT_USERS, SandboxConfig
from sandbox.server import SandboxServer
from sandbox.store import new_sys_id, now_string
from sandbox.tables import get_table
from workflows.reconcile.models import ReconcileInput, ReconcileSummary

N = int(os.environ.get("BENCH_RECONCILE_N", "100000"))
DRIFT = float(os.environ.get("BENCH_RECONCILE_DRIFT", "0.01"))
TASK_QUEUE = "bench-reconcile"
CI_CLASS = "cmdb_ci_linux_server"
ROOT = Path(__file__).resolve().parents[1]
PAYLOAD_LIMIT = 256 * 1024


def _ci(n: int) -> dict[str, str]:
    return {
        "name": f"bench-{n:06d}",
        "serial_number": f"SN-{n:06d}",
        "ip_address": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
        "os": "Linux Ubuntu",
    }


def load_cmdb(server: SandboxServer, count: int) -> None:
    """Insert `count` server CIs straight into the store, shaped as the instance stores a created record."""
    schema = get_table(CI_CLASS)
    assert schema is not None
    now = now_string()
    blank = {f: "" for f in schema.fields if f not in schema.journals}
    stamps = {"sys_created_on": now, "sys_created_by": "admin", "sys_updated_on": now, "sys_updated_by": "admin"}
    records = (
        blank
        | _ci(n)
        | stamps
        | {"sys_id": new_sys_id(), "sys_class_name": CI_CLASS, "install_status": "1", "sys_mod_count": "0"}
        for n in range(count)
    )
    server.app_state.instance.store.insert_many(CI_CLASS, records)


def write_inventory(path: Path, count: int, drift: int) -> None:
    """The live fleet: every CI but the last `drift` (gone), plus `drift` hosts the CMDB lacks (new)."""
    live = [_ci(n) for n in range(count - drift)] + [_ci(n) for n in range(count, count + drift)]
    path.write_text(json.dumps(live))


def config(inventory: Path) -> ReconcileConfig:
    return ReconcileConfig.model_validate(
        {
            "sources": [
                {
                    "name": "inventory",
                    "kind": "command",
                    "argv": ["cat", str(inventory)],
                    "key_field": "serial_number",
                    "ci_class": CI_CLASS,
                    "mapping": {"key": "serial_number"},
                }
            ],
            "cmdb": {"classes": [CI_CLASS], "page_size": 10000},  # the Table API maximum
            "concurrency": 8,
        }
    )


def _start_worker(temporal: str, sandbox: str, state_dir: Path, cwd: Path, reconcile: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_")} | {
        "CHANGELOOP_TEMPORAL_ADDRESS": temporal,
        "CHANGELOOP_TASK_QUEUE": TASK_QUEUE,
        "CHANGELOOP_SERVICENOW_URL": sandbox,
        "CHANGELOOP_SERVICENOW_USERNAME": "changeloop.integration",
        "CHANGELOOP_SERVICENOW_PASSWORD": DEFAULT_USERS["changeloop.integration"],
        "CHANGELOOP_RECONCILE_STATE_DIR": str(state_dir),
        "CHANGELOOP_RECONCILE": str(reconcile),  # the worker reads its config; runs name it (`default`)
        "CHANGELOOP_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-c", "import asyncio, worker; asyncio.run(worker.run_worker())"],
        env=env,
        cwd=cwd,  # no developer .env
        stdout=subprocess.DEVNULL,
    )


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's resident-set high-water mark (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _payload_sizes(message: Message) -> Iterator[int]:
    if message.DESCRIPTOR.full_name == "temporal.api.common.v1.Payload":
        yield message.ByteSize()
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            items = [value]
        elif field.message_type.GetOptions().map_entry:  # map<string, Payload>: headers, memo, search attributes
            items = list(value.values())
        else:  # repeated
            items = list(value)
        for item in items:
            if isinstance(item, Message):
                yield from _payload_sizes(item)


async def history_figures(handle: WorkflowHandle[Any, Any]) -> tuple[int, int, dict[str, float], float]:
    """(events, largest payload bytes, seconds inside each activity type, workflow wall seconds)."""
    events: list[HistoryEvent] = [e async for e in handle.fetch_history_events()]
    largest = max((size for e in events for size in _payload_sizes(e)), default=0)
    kind: dict[int, str] = {}  # scheduled event id -> activity type
    started: dict[int, tuple[str, float]] = {}  # started event id -> (type, time)
    phases: dict[str, float] = {}
    for event in events:
        at = event.event_time.ToDatetime().timestamp()
        if event.HasField("activity_task_scheduled_event_attributes"):
            kind[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            started[event.event_id] = (kind[event.activity_task_started_event_attributes.scheduled_event_id], at)
        for ended in ("activity_task_completed_event_attributes", "activity_task_failed_event_attributes"):
            if event.HasField(ended):
                name, began = started[getattr(event, ended).started_event_id]
                short = name.removeprefix("reconcile_")
                phases[short] = phases.get(short, 0.0) + at - began
    wall = events[-1].event_time.ToDatetime().timestamp() - events[0].event_time.ToDatetime().timestamp()
    return len(events), largest, phases, wall


async def wait_for_pollers(client: Client, within: float = 30.0) -> None:
    """Until the worker process polls the task queue: its start-up is not the reconciliation's time."""
    request = DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=TASK_QUEUE))
    deadline = time.monotonic() + within
    while not (await client.workflow_service.describe_task_queue(request)).pollers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker polls {TASK_QUEUE} after {within:.0f} s")
        await asyncio.sleep(0.1)


async def run_once(client: Client, sandbox_url: str, name: str) -> ReconcileSummary:
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox_url}/sandbox/stats/reset")
        began = time.perf_counter()
        handle = await client.start_workflow(
            "ReconcileWorkflow",
            ReconcileInput(config="default"),
            id=f"reconcile-bench-{name}-{int(time.time())}",
            task_queue=TASK_QUEUE,
            result_type=ReconcileSummary,
        )
        summary = await handle.result()
        elapsed = time.perf_counter() - began
        stats = (await http.get(f"{sandbox_url}/sandbox/stats")).json()
    events, largest, phases, wall = await history_figures(handle)
    busy = sum(phases.values())
    verdict = "OK" if largest < PAYLOAD_LIMIT else "OVER 256 KB"
    print(
        f"{name:>6}: {elapsed:6.1f} s wall | ServiceNow calls {stats['total_requests']:6d} (writes {stats['writes']}) | "
        f"created {summary.created_total}, incidents {summary.incidents_total} (already open "
        f"{summary.incidents_already_open}), batches {summary.batches} | history {events} events, largest payload "
        f"{largest / 1024:.1f} KiB {verdict} | orchestration {max(0.0, wall - busy):.1f} s of {wall:.1f} s"
    )
    print("        in activities: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    return summary


async def main() -> None:
    drift = max(1, int(N * DRIFT))
    print(f"reconcile bench: {N:,} CMDB CIs vs {N:,} live resources, {drift:,} new + {drift:,} gone")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
    )
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(SandboxConfig(port=0, seed=False)) as sandbox:
        work = Path(tmp)
        began = time.perf_counter()
        load_cmdb(sandbox, N)
        write_inventory(work / "inventory.json", N, drift)
        print(f" setup: {time.perf_counter() - began:.1f} s (bulk load into the sandbox store + inventory file)")
        target = env.client.service_client.config.target_host
        reconcile = work / "reconcile.yaml"
        reconcile.write_text(yaml.safe_dump(config(work / "inventory.json").model_dump(mode="json", by_alias=True)))
        worker = _start_worker(target, sandbox.url, work / "state", work, reconcile)
        try:
            await wait_for_pollers(env.client)
            first = await run_once(env.client, sandbox.url, "first")
            assert first.created_total == drift and first.incidents_total == drift, first
            second = await run_once(env.client, sandbox.url, "again")
            assert second.created_total == 0 and second.incidents_total == 0, second
            print(f"worker peak RSS: {peak_rss_mib(worker.pid):.0f} MiB")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
    await env.shutdown()
