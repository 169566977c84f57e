"""The chaos suite's world, all its own: a Temporal dev server on a SQLite file that can be restarted on the same
file and port, a sandbox ServiceNow whose faults and fleet no other test shares, the starter shim in-process, and the
product's worker in a subprocess that can be killed with SIGKILL and started again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
import yaml
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.reconcile import ReconcileConfig, config_digest
from config.registry import load_registry
from config.settings import Settings
from sandbox.server import SandboxConfig, SandboxServer
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from starter.shim.app import create_app
from tests.changes import TEST_REGISTRY, Changes
from tests.conftest import ADMIN_USER, INTEGRATION_USER, SEARCH_ATTRIBUTES, WEBHOOK_TOKEN, SandboxControl, venv_binary
from tests.wave.conftest import FleetControl
from workflows.reconcile.models import ReconcileInput

ROOT = Path(__file__).resolve().parents[2]
SERVICENOW_TIMEOUT = 2.5  # the chaos worker's ServiceNow client gives up on an answer after this many seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RestartableTemporal:
    """`temporal server start-dev` on a SQLite file: stopped and started again on the same file and port, the
    executions it held survive, and clients (the test's, the worker's) reconnect to the same address."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = _free_port()
        self.env: WorkflowEnvironment | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=venv_binary("temporal"),
            port=self.port,
            dev_server_database_filename=str(self.db),
            search_attributes=SEARCH_ATTRIBUTES,
            data_converter=pydantic_data_converter,
            dev_server_extra_args=["--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true"],
        )

    async def stop(self) -> None:
        if self.env is not None:
            await self.env.shutdown()
            self.env = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


class ChaosWorld:
    def __init__(self, temporal: RestartableTemporal, sandbox: SandboxServer, client: Client, tmp: Path) -> None:
        self.temporal, self.sandbox, self.client, self.tmp = temporal, sandbox, client, tmp
        self.url = sandbox.url.rstrip("/")
        self.settings = Settings(
            _env_file=None,
            temporal_address=temporal.address,
            temporal_namespace="default",
            task_queue="chaos",
            ui_url="http://127.0.0.1:8233",
            servicenow_url=self.url,
            servicenow_username=INTEGRATION_USER[0],
            servicenow_password=SecretStr(INTEGRATION_USER[1]),
            servicenow_client_id=None,
            servicenow_client_secret=None,
            execution_url_field=None,
            webhook_token=SecretStr(WEBHOOK_TOKEN),
            slack_webhook_url=None,
            runbooks=TEST_REGISTRY,
            reconcile_state_dir=tmp / "reconcile-state",
            reconcile=tmp / "reconcile-configs",  # the worker's reconciliation configs, named by the run
            log_level="WARNING",
        )
        (tmp / "reconcile-configs").mkdir()
        self.control = SandboxControl(self.url)
        self.fleet = FleetControl(self.url)
        self.worker: subprocess.Popen[bytes] | None = None
        self.workers_started = 0

    # -- the worker process ---------------------------------------------------------------------------------------
    def start_worker(self) -> None:
        s = self.settings
        assert s.servicenow_password is not None
        env = os.environ | {
            "CHANGELOOP_TEMPORAL_ADDRESS": s.temporal_address,
            "CHANGELOOP_TEMPORAL_NAMESPACE": s.temporal_namespace,
            "CHANGELOOP_TASK_QUEUE": s.task_queue,
            "CHANGELOOP_UI_URL": s.ui_url,
            "CHANGELOOP_SERVICENOW_URL": s.servicenow_url,
            "CHANGELOOP_SERVICENOW_USERNAME": s.servicenow_username or "",
            "CHANGELOOP_SERVICENOW_PASSWORD": s.servicenow_password.get_secret_value(),
            "CHANGELOOP_RUNBOOKS": str(TEST_REGISTRY),
            "CHANGELOOP_RECONCILE_STATE_DIR": str(s.reconcile_state_dir),
            "CHANGELOOP_RECONCILE": str(s.reconcile),
            # A waiting gate re-reads the change's approvals every second, not every minute.
            "CHANGELOOP_APPROVAL_POLL_INTERVAL": "1s",
            "CHANGELOOP_LOG_LEVEL": "WARNING",
            "CHAOS_SERVICENOW_TIMEOUT": str(SERVICENOW_TIMEOUT),
        }
        self.workers_started += 1
        with (self.tmp / f"worker-{self.workers_started}.log").open("wb") as log:  # the child keeps its own handle
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.worker_process"], cwd=ROOT, env=env, stdout=log, stderr=log
            )

    def kill_worker(self) -> None:
        """kill -9: no shutdown, no activity completion, no goodbye to the server."""
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()
        self.worker = None

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
            self.worker = None

    # -- ServiceNow as people and the Business Rule see it ----------------------------------------------------------
    def integration(self) -> ServiceNowClient:
        return ServiceNowClient(self.url, BasicAuth(*INTEGRATION_USER))

    def person(self, user: str) -> ServiceNowClient:
        """A seeded ServiceNow user (sandbox/config.py passwords), e.g. an approver."""
        return ServiceNowClient(self.url, BasicAuth(user, f"{user}-pw"))

    def admin(self) -> ServiceNowClient:
        """An admin reads every row (no ACL hides anything from admin): the counts after the storm."""
        return ServiceNowClient(self.url, BasicAuth(*ADMIN_USER))

    def shim(self) -> httpx.AsyncClient:
        """The starter shim, in-process (ASGI: the same code path as uvicorn minus the socket), as the Business
        Rule calls it."""
        app = create_app(self.settings, self.client, load_registry(TEST_REGISTRY))
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://shim",
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            timeout=30,
        )

    def changes(self, sn: ServiceNowClient) -> Changes:
        return Changes(sn)

    def publish(self, name: str, config: ReconcileConfig) -> ReconcileInput:
        """Put a reconciliation config where the worker reads its own (CHANGELOOP_RECONCILE) and name it: a run
        carries the name and digest, never the config."""
        assert self.settings.reconcile is not None
        text = yaml.safe_dump(config.model_dump(mode="json", by_alias=True))
        (Path(self.settings.reconcile) / f"{name}.yaml").write_text(text)
        return ReconcileInput(config=name, digest=config_digest(config))


@pytest_asyncio.fixture(loop_scope="session")
async def chaos(tmp_path: Path) -> AsyncIterator[ChaosWorld]:
    temporal = RestartableTemporal(tmp_path / "temporal.db")
    await temporal.start()
    try:
        with SandboxServer(SandboxConfig(port=0, seed=True)) as sandbox:
            client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
            world = ChaosWorld(temporal, sandbox, client, tmp_path)
            try:
                yield world
            finally:
                world.stop_worker()
                await world.fleet.http.aclose()
    finally:
        await temporal.stop()
