"""Many workers, each a process of its own, as an operator runs them: `changeloop worker` (or `--site`) with nothing
shared but Temporal and ServiceNow - each its own state dir and its own reconciliation configs.

The scale tests get a sandbox ServiceNow of their own (faults and hundreds of changes touch no other test's
instance) on the session's Temporal dev server; their change numbers are their own (CHG8…), so their workflow IDs
meet no other test's.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml

from config.reconcile import ReconcileConfig
from config.settings import Settings
from sandbox.server import SandboxConfig, SandboxServer
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from tests.conftest import ADMIN_USER, INTEGRATION_USER, SandboxControl
from tests.helpers import wait_for

CHANGELOOP = Path(sys.executable).with_name("changeloop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    """`changeloop worker` in a process of its own, with its own state dir and reconciliation configs; ready once
    its /readyz answers 200. Its Temporal identity is `<pid>@<host>` (the SDK's default)."""

    def __init__(self, name: str, settings: Settings, home: Path, *, site: str | None = None, **env: str) -> None:
        self.name, self.site, self.home = name, site, home
        self.state_dir = home / "state"
        self.configs = home / "reconcile"
        self.configs.mkdir(parents=True, exist_ok=True)
        self.log = home / "worker.log"
        self.health = f"127.0.0.1:{free_port()}"
        keep = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_")}
        self.env = keep | {
            "CHANGELOOP_TEMPORAL_ADDRESS": settings.temporal_address,
            "CHANGELOOP_TEMPORAL_NAMESPACE": settings.temporal_namespace,
            "CHANGELOOP_TASK_QUEUE": settings.task_queue,
            "CHANGELOOP_UI_URL": settings.ui_url,
            "CHANGELOOP_SERVICENOW_URL": settings.servicenow_url,
            "CHANGELOOP_RECONCILE": str(self.configs),
            "CHANGELOOP_RECONCILE_STATE_DIR": str(self.state_dir),
            "CHANGELOOP_HEALTH_ADDRESS": self.health,
            "CHANGELOOP_LOG_LEVEL": "WARNING",
        }
        if settings.runbooks is not None:
            self.env["CHANGELOOP_RUNBOOKS"] = str(settings.runbooks)
        if site is None:  # a site worker gets no ServiceNow credentials: it has no use for them
            assert settings.servicenow_password is not None
            self.env["CHANGELOOP_SERVICENOW_USERNAME"] = settings.servicenow_username or ""
            self.env["CHANGELOOP_SERVICENOW_PASSWORD"] = settings.servicenow_password.get_secret_value()
        self.env |= env
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def identity(self) -> str:
        return f"{self.pid}@{socket.gethostname()}"

    def publish(self, name: str, config: ReconcileConfig) -> None:
        """A reconciliation config in this worker's own CHANGELOOP_RECONCILE directory."""
        text = yaml.safe_dump(config.model_dump(mode="json", by_alias=True))
        (self.configs / f"{name}.yaml").write_text(text)

    async def start(self) -> None:
        argv = [str(CHANGELOOP), "worker", *(["--site", self.site] if self.site else [])]
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *argv, env=self.env, cwd=self.home, stdout=out, stderr=out
            )

    async def ready(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(f"worker {self.name} exited: {self.log.read_text()[-2000:]}")
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"http://{self.health}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def kill(self) -> None:
        """kill -9: no shutdown, no goodbye to the server; its running activities are found out by their timeouts."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def run_dirs(self) -> list[Path]:
        """The run directories in this worker's state dir (a run's pipeline files, a site scan's chunks)."""
        return sorted(p for p in self.state_dir.iterdir() if p.is_dir()) if self.state_dir.is_dir() else []


async def started(*workers: WorkerProcess) -> None:
    await asyncio.gather(*(w.start() for w in workers))
    for w in workers:
        await wait_for(w.ready, timeout=60, interval=0.2, message=f"worker {w.name} ready")


@pytest.fixture(scope="package")
def scale_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(port=0, seed=True)) as server:
        yield server


@pytest.fixture
def scale_settings(settings: Settings, scale_sandbox: SandboxServer) -> Settings:
    """The session's settings on this package's sandbox and a task queue of the test's own."""
    queue = f"scale-{random.getrandbits(32):08x}"
    return settings.model_copy(update={"servicenow_url": scale_sandbox.url.rstrip("/"), "task_queue": queue})


@pytest_asyncio.fixture(loop_scope="session")
async def workers(tmp_path: Path) -> AsyncIterator[list[WorkerProcess]]:
    """The test's worker processes (append to the list); each is stopped when the test ends."""
    running: list[WorkerProcess] = []
    try:
        yield running
    finally:
        await asyncio.gather(*(w.stop() for w in running))


@pytest_asyncio.fixture(loop_scope="session")
async def scale_control(scale_sandbox: SandboxServer) -> AsyncIterator[SandboxControl]:
    control = SandboxControl(scale_sandbox.url.rstrip("/"))
    try:
        yield control
    finally:
        await control.clear_faults()


@pytest_asyncio.fixture(loop_scope="session")
async def scale_sn(scale_sandbox: SandboxServer) -> AsyncIterator[ServiceNowClient]:
    async with ServiceNowClient(scale_sandbox.url.rstrip("/"), BasicAuth(*INTEGRATION_USER)) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def scale_admin(scale_sandbox: SandboxServer) -> AsyncIterator[ServiceNowClient]:
    """Admin reads every row (no ACL hides one): what the instance really holds, for the counts."""
    async with ServiceNowClient(scale_sandbox.url.rstrip("/"), BasicAuth(*ADMIN_USER)) as client:
        yield client


_NUMBERS = itertools.count(random.randrange(100_000, 800_000))


def change_number() -> str:
    """A change number no other test's sandbox hands out (they count from CHG0030001): workflow IDs of its own."""
    return f"CHG8{next(_NUMBERS):06d}"
