"""The chaos suite's worker process: the product's worker (worker.build_worker: every workflow, every activity, the
same interceptors) whose ServiceNow client gives up on an answer after CHAOS_SERVICENOW_TIMEOUT seconds, so a write
that commits and answers late is a timeout within the test's minute, as it is within 30 s in production.

Run as `python -m tests.chaos.worker_process` with the CHANGELOOP_* environment; SIGTERM stops it, SIGKILL kills it.
"""

from __future__ import annotations

import asyncio
import os
import signal

from config.registry import load_registry
from config.settings import Settings
from ops.connect import connect
from servicenow.client import ServiceNowClient
from worker import build_worker


async def main() -> None:
    settings = Settings()
    registry = load_registry(settings.runbooks)
    client = await connect(settings)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    timeout = float(os.environ.get("CHAOS_SERVICENOW_TIMEOUT", "30"))
    async with ServiceNowClient.from_settings(settings, timeout=timeout) as sn:
        async with build_worker(client, settings, registry, sn):
            print("chaos worker ready", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)  # sdk-python issue 300: a process that made a Temporal client can crash at interpreter exit
