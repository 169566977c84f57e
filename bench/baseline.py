"""Raw Temporal, for every bench's baseline: the same shapes as changeloop's workflows with nothing of changeloop.

- PlainChangeWorkflow(n): n no-op activities one after the other (a change runs its activities in sequence);
- PlainWaveWorkflow(hosts, window, op_seconds): one PlainHostWorkflow child per host, at most `window` at once,
  each running three activities (snapshot, patch, health) that take `op_seconds`.

`python -m bench.baseline <temporal address> <task queue>` runs their worker as its own process with the options
changeloop's worker uses (autoscaling pollers, 200 concurrent activities, the pydantic converter), so a ratio
compares changeloop's work with Temporal's own cost on the same server, not two different worker set-ups.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import PollerBehaviorAutoscaling, Worker

TIMEOUT = timedelta(minutes=5)


@activity.defn(name="bench_noop")
async def noop(index: int) -> int:
    return index


@activity.defn(name="bench_host_op")
async def host_op(seconds: float) -> float:
    if seconds:
        await asyncio.sleep(seconds)
    return seconds


@workflow.defn(name="PlainChangeWorkflow")
class PlainChangeWorkflow:
    @workflow.run
    async def run(self, activities: int) -> int:
        for index in range(activities):
            await workflow.execute_activity(noop, index, start_to_close_timeout=TIMEOUT)
        return activities


@workflow.defn(name="PlainHostWorkflow")
class PlainHostWorkflow:
    @workflow.run
    async def run(self, op_seconds: float) -> int:
        for _ in range(3):  # snapshot, patch, health check
            await workflow.execute_activity(host_op, op_seconds, start_to_close_timeout=TIMEOUT)
        return 3


@workflow.defn(name="PlainWaveWorkflow")
class PlainWaveWorkflow:
    @workflow.run
    async def run(self, hosts: int, window: int, op_seconds: float) -> int:
        running: set[asyncio.Task[int]] = set()
        prefix = workflow.info().workflow_id
        for index in range(hosts):
            if len(running) >= window:
                _, pending = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
                running = set(pending)
            running.add(
                asyncio.create_task(
                    workflow.execute_child_workflow(PlainHostWorkflow.run, op_seconds, id=f"{prefix}-host-{index}")
                )
            )
        await workflow.wait(running)
        return hosts


WORKFLOWS = [PlainChangeWorkflow, PlainHostWorkflow, PlainWaveWorkflow]
ACTIVITIES = [noop, host_op]


async def run_worker(address: str, task_queue: str) -> None:
    """Until SIGTERM (the bench's stop)."""
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
        activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        max_concurrent_activities=200,
    )
    async with worker:
        await stopping.wait()


if __name__ == "__main__":
    asyncio.run(run_worker(sys.argv[1], sys.argv[2]))
    os._exit(0)  # sdk-python issue 300: a process that had a Temporal client may crash in interpreter exit
