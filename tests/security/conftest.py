"""Security fixtures: the attacker's view of the worker (issue 12), on task queues of their own.

`hardened` is an in-process worker whose outbound allowlist names no loopback address (so 127.0.0.1 and the metadata
address are refused), with a registry of steps shaped like the production ones (`ssh ... {host}`, `ansible -l
{host}`, `/opt/scripts/{x}.sh`, `http://{host}/...`) that leave marker files when they really run.
`WorkerProcess` is the real `changeloop worker` in a process of its own, for what only a process shows: its
environment, its log lines (stdlib included) and its start-up refusals.

`stack` is the real stack the approval attacks (issue 11) run against: a sandbox ServiceNow of its own whose Business
Rules POST to a live shim (uvicorn on a free port), and a worker on the stack's own task queue, on the session's dev
server. The sandbox is the stack's own so its Business Rules reach this shim only (the session sandbox serves every
other test); the worker polls ServiceNow's approvals once an hour, so a test that sees an approval arrive in minutes
has seen the Business Rule's hint (`/api/servicenow/approval`) make the gate look.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import secrets
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from config.registry import Registry, load_registry
from config.settings import Settings
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from starter.shim.app import create_app
from tests.changes import Changes
from tests.conftest import INTEGRATION_USER, PRINCIPAL_TOKENS, WEBHOOK_TOKEN
from tests.shim.conftest import LiveServer
from worker import build_worker

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = "STEP_API_TOKEN"

# {sandbox} is replaced by the sandbox's port: an HTTP step's port is written in the registry, never a value.
REGISTRY = """
runbooks:
  touch_marker:
    description: writes the marker file it is given (proves a step ran)
    optional_inputs: [marker]
    steps:
      - name: mark
        command: ["{python}", "-c", "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('ran')", "{marker}"]

  ssh_restart:
    description: "shaped like ssh {host} systemctl restart app; records its argv in the marker"
    optional_inputs: [host, marker]
    steps:
      - name: restart
        command: ["{python}", "-c", "import pathlib, sys; pathlib.Path(sys.argv[-1]).write_text(repr(sys.argv))",
                  "{host}", "systemctl", "restart", "app", "{marker}"]

  ansible_limit:
    description: "shaped like ansible-playbook site.yml -l {host}"
    optional_inputs: [host, marker]
    steps:
      - name: playbook
        command: ["{python}", "-c", "import pathlib, sys; pathlib.Path(sys.argv[-1]).write_text(repr(sys.argv))",
                  "site.yml", "-l", "{host}", "{marker}"]

  script_by_name:
    description: "shaped like /opt/scripts/{script}.sh"
    optional_inputs: [script, marker]
    steps:
      - name: run script
        command: ["{python}", "-c", "import pathlib, sys; pathlib.Path(sys.argv[-1]).write_text(repr(sys.argv))",
                  "/opt/scripts/{script}.sh", "{marker}"]

  grep_pattern:
    description: "a free value after -- may start with a dash"
    inputs: [pattern]
    steps:
      - name: grep
        after_double_dash: [pattern]
        command: ["{python}", "-c", "import sys; print(sys.argv[1:])", "--", "{pattern}"]

  health_probe:
    description: "http://{host}/... with the port written in the registry"
    inputs: [host]
    steps:
      - name: health
        retries: 0
        http: {url: "http://{host}:{sandbox}/sandbox/health"}

  leaky:
    description: a step that prints a configured secret in every form, and one that fails quoting it
    optional_inputs: [host]
    steps:
      - name: print secret
        env: {STEP_API_TOKEN: {secret: STEP_API_TOKEN}}
        command: ["{python}", "-c", "import os, base64, urllib.parse; t = os.environ['STEP_API_TOKEN']; print('token', t); print('b64', base64.b64encode(t.encode()).decode()); print('b64url', base64.urlsafe_b64encode(t.encode()).decode()); print('quoted', urllib.parse.quote(t, safe='')); print('basic', base64.b64encode(('svc:' + t).encode()).decode()); print('bytes', t.encode()); print('webhook token', os.environ.get('CHANGELOOP_WEBHOOK_TOKEN', 'absent')); print('servicenow password', os.environ.get('CHANGELOOP_SERVICENOW_PASSWORD', 'absent'))"]
      - name: fail quoting it
        retries: 0
        env: {STEP_API_TOKEN: {secret: STEP_API_TOKEN}}
        command: ["{python}", "-c", "import os, sys; t = os.environ['STEP_API_TOKEN']; print('using', t); sys.exit('refused: Authorization: Bearer ' + t)"]

match:
  - category: SecLeaky
    runbook: leaky
  - category: SecSsh
    runbook: ssh_restart

hosts:
  default: fleet
  drivers:
    fleet: {driver: http, base_url: "{servicenow_url}/fleet"}
"""


@pytest.fixture(scope="session")
def security_registry_file(tmp_path_factory: pytest.TempPathFactory, sandbox_url: str) -> Path:
    port = sandbox_url.rsplit(":", 1)[1]
    path = tmp_path_factory.mktemp("security") / "runbooks.yaml"
    path.write_text(REGISTRY.replace("{sandbox}", port))
    return path


@pytest.fixture(scope="session")
def security_registry(security_registry_file: Path) -> Registry:
    return load_registry(security_registry_file)


@pytest.fixture(scope="session")
def hardened_settings(settings: Settings) -> Settings:
    """The session's settings with an allowlist that names no local address: only a documentation network."""
    return settings.model_copy(update={"task_queue": "security-hardened", "outbound_allow": ["203.0.113.0/24"]})


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def hardened(
    temporal_client: Client, hardened_settings: Settings, security_registry: Registry, sandbox: Any
) -> AsyncIterator[Any]:
    async with ServiceNowClient.from_settings(hardened_settings) as sn:
        async with build_worker(temporal_client, hardened_settings, security_registry, sn) as running:
            yield running


def marker(tmp_path: Path) -> Path:
    return tmp_path / f"ran-{uuid.uuid4().hex[:8]}"


async def scheduled_activities(client: Client, workflow_id: str) -> list[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]


def payload_texts(node: Any) -> Iterator[str]:
    """Every payload's data in a history's JSON, decoded (they sit base64-encoded under "data")."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "data" and isinstance(value, str):
                yield base64.b64decode(value).decode(errors="replace")
            else:
                yield from payload_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from payload_texts(item)


# -- the real worker process -----------------------------------------------------------------------------------------
def strong_secret(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


class WorkerProcess:
    """`python -m starter.cli worker` with its own environment; stdout and stderr go to `log`."""

    def __init__(self, settings: Settings, env: dict[str, str], log: Path) -> None:
        self.settings, self.log = settings, log
        keep = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_")}
        self.env = (
            keep
            | {
                "CHANGELOOP_TEMPORAL_ADDRESS": settings.temporal_address,
                "CHANGELOOP_TEMPORAL_NAMESPACE": settings.temporal_namespace,
                "CHANGELOOP_SERVICENOW_URL": settings.servicenow_url,
                "CHANGELOOP_UI_URL": settings.ui_url,
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
            }
            | env
        )
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> WorkerProcess:
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "starter.cli", "worker", env=self.env, cwd=self.log.parent, stdout=out, stderr=out
            )
        return self

    async def exit_code(self, within: float = 60) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), within)

    async def polling(self, client: Client, within: float = 60) -> None:
        """Until the process polls its task queue (its start-up is not the test's time)."""
        request = DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=self.env["CHANGELOOP_TASK_QUEUE"])
        )
        deadline = time.monotonic() + within
        while not (await client.workflow_service.describe_task_queue(request)).pollers:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker polls after {within} s: {self.log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


# -- the approval attacks' stack (issue 11) ---------------------------------------------------------------------------
ADMIN = ("admin", "admin")
# The sandbox's people and their passwords (sandbox/config.py): each decides their own approval records.
PEOPLE = {name: (name, f"{name}-pw") for name in ("alice.ops", "bob.sre", "carol.cab", "dave.data", "mallory")}


@dataclass
class Stack:
    settings: Settings
    client: Client
    shim_url: str
    sandbox_url: str
    sn: ServiceNowClient  # the integration user

    def number(self) -> str:
        """A change number no other sandbox of the session gives out: the stack's sandbox counts from CHG0030004 like
        the session's, and workflow IDs (`change-<number>`) share one Temporal server."""
        return f"CHG8{next(_NUMBERS):06d}"

    def changes(self) -> StackChanges:
        return StackChanges(self)

    def http(self, principal: str) -> httpx.AsyncClient:
        """The shim, called as a principal (`servicenow` is the Business Rules' token)."""
        token = WEBHOOK_TOKEN if principal == "servicenow" else PRINCIPAL_TOKENS[principal]
        return httpx.AsyncClient(base_url=self.shim_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def as_user(self, user: tuple[str, str]) -> ServiceNowClient:
        return ServiceNowClient(self.sandbox_url, BasicAuth(*user))

    async def status(self, execution_id: str) -> dict[str, Any]:
        """The shim's status answer; `{"status": "NOT_STARTED"}` while the Business Rule's delivery is on its way."""
        async with self.http("operator") as shim:
            response = await shim.get(f"/api/executions/{execution_id}/status")
        if response.status_code == 404:
            return {"status": "NOT_STARTED"}
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def work_notes(self, sys_id: str) -> list[str]:
        query = Query().eq("element_id", sys_id).eq("element", "work_notes").order_by("sys_created_on")
        return [str(r["value"]) for r in await self.sn.list("sys_journal_field", query, fields=["value"])]

    async def incidents_for(self, workflow_id: str) -> int:
        return await self.sn.count("incident", Query().eq("correlation_id", workflow_id))

    async def posted(self, path: str, number: str) -> list[dict[str, Any]]:
        """The Business Rules' POSTs to the shim's `path` about change `number`, as the sandbox's outbound log has them."""
        async with httpx.AsyncClient(timeout=10) as http:
            sent = (await http.get(f"{self.sandbox_url}/sandbox/outbound")).json()
        return [m for m in sent if m["url"].endswith(path) and m["body"].get("number") == number]

    async def answered(self, path: str, number: str) -> list[dict[str, Any]] | None:
        """Those POSTs once the last one has its answer: the sandbox records the shim's answer after it arrives, and the
        workflow may act on the signal before that."""
        posted = await self.posted(path, number)
        return posted if posted and posted[-1]["done"] else None


class StackChanges(Changes):
    """tests/changes.py's Changes, in the stack's sandbox, each change with a number of its own."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.sn)
        self.stack = stack

    async def create(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("number", self.stack.number())
        return await super().create(**kwargs)


_NUMBERS = itertools.count(uuid.uuid4().int % 500_000)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(temporal_client: Client, settings: Settings, registry: Registry) -> AsyncIterator[Stack]:
    from sandbox.server import SandboxConfig, SandboxServer

    with socket.socket() as probe:  # the sandbox's rules need the shim's URL before either starts
        probe.bind(("127.0.0.1", 0))
        shim_port = probe.getsockname()[1]
    shim_url = f"http://127.0.0.1:{shim_port}"
    rules = SandboxConfig(
        port=0, seed=True, webhook_url=f"{shim_url}/api/servicenow/change", webhook_token=WEBHOOK_TOKEN
    )
    with SandboxServer(rules) as sandbox:
        stack_settings = settings.model_copy(
            update={
                "task_queue": f"security-{uuid.uuid4().hex[:8]}",
                "servicenow_url": sandbox.url.rstrip("/"),
                "approval_poll_interval": timedelta(hours=1),
                # Hourly too: a hold or cancel noticed within seconds was noticed through the change-event hint.
                "ticket_poll_interval": timedelta(hours=1),
            }
        )
        shim = LiveServer(create_app(stack_settings, temporal_client, registry), port=shim_port)
        async with ServiceNowClient(stack_settings.servicenow_url, BasicAuth(*INTEGRATION_USER)) as sn:
            async with shim, build_worker(temporal_client, stack_settings, registry, sn):
                yield Stack(stack_settings, temporal_client, shim.url, stack_settings.servicenow_url, sn)
