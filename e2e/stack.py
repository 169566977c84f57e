"""The stack under test: the real `changeloop dev` command as a child process, on free ports, in memory, with history
encryption on under a key generated for this run - exactly what a developer gets from
`CHANGELOOP_ENCRYPTION=true CHANGELOOP_ENCRYPTION_KEYS=... changeloop dev`. Then one standard change through it,
the way a change implementer makes one in ServiceNow (the demo's walkthrough helpers)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from pydantic import BaseModel

from ops.codec import new_key
from ops.connect import connect
from servicenow.change_request import ChangeState
from servicenow.client import BasicAuth, ServiceNowClient
from starter.devstack.dev import ADMIN_USER, PROJECT_ROOT, DevConfig, free_port
from starter.devstack.walkthrough import open_standard_change, schedule_preapproved, ticket_report, wait_for_state

READY_LINE = "Ctrl-C stops everything."
START_TIMEOUT = 120.0
TEMPLATE, CI = "Restart application service", "payments-api"
EXECUTION_LINK = re.compile(r"Started by changeloop: (\S+)")


class StandardChange(BaseModel):
    number: str
    short_description: str
    correlation_id: str
    execution_link: str  # the link from the ticket's first work note
    state: str


class DevCommand:
    """`changeloop dev` running in the background; `stop()` sends it SIGTERM, as Ctrl-C would."""

    def __init__(self, log: Path) -> None:
        ports = {name: free_port() for name in ("temporal_port", "ui_port", "sandbox_port", "shim_port")}
        self.config = DevConfig(
            persist=False, webhook_token=secrets.token_urlsafe(24), encryption_keys=f"e2e:{new_key()}", **ports
        )
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        c = self.config
        argv = [sys.executable, "-m", "starter.cli", "dev", "--ephemeral", "--host", c.host]
        for option in ("temporal-port", "ui-port", "sandbox-port", "shim-port"):
            argv += [f"--{option}", str(getattr(c, option.replace("-", "_")))]
        return argv

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_")}  # the run's own settings only
        env.update(
            {
                "CHANGELOOP_ENCRYPTION": "true",
                "CHANGELOOP_ENCRYPTION_KEYS": self.config.encryption_keys or "",
                "CHANGELOOP_WEBHOOK_TOKEN": self.config.webhook_token or "",
                "COLUMNS": "200",  # the summary table unwrapped in the log
            }
        )
        return env

    def spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.argv(), env=self.env(), cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    async def start(self) -> None:
        """Spawn it and wait for the line it prints once every service answers (the worker polling included)."""
        await asyncio.to_thread(self.spawn)
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while READY_LINE not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None:
                raise RuntimeError(f"changeloop dev exited with {self.process.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"changeloop dev not ready within {START_TIMEOUT:.0f} s; see {self.log}")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()  # only our own child; its children are in the group it founded and stopped
            self.process.wait(timeout=10)


async def run_standard_change(config: DevConfig, within: float = 90.0) -> StandardChange:
    """Open a standard change, let the instance pre-approve it, wait for Closed; read back what the ticket says."""
    async with ServiceNowClient(config.sandbox_url, BasicAuth(*ADMIN_USER)) as sn:
        opened = await open_standard_change(sn, TEMPLATE, CI, f"E2E: restart the {CI} service ({secrets.token_hex(3)})")
        await schedule_preapproved(sn, opened["sys_id"])
        await wait_for_state(sn, opened["sys_id"], {ChangeState.CLOSED.value, ChangeState.CANCELED.value}, within)
        report = await ticket_report(sn, opened["sys_id"])
    links = [m.group(1) for note in report.work_notes if (m := EXECUTION_LINK.search(note))]
    return StandardChange(
        number=report.number,
        short_description=str(opened["short_description"]),
        correlation_id=report.correlation_id,
        execution_link=links[0] if links else "",
        state=report.state,
    )


async def wait_until_listed(config: DevConfig, number: str, expected: set[str], within: float = 30.0) -> set[str]:
    """What `ChangeNumber = '<number>'` lists through the SDK, once the index has caught up (or at the deadline):
    the UI search is checked against a settled index, not against indexing latency."""
    client = await connect(config.client_settings())
    deadline = time.monotonic() + within
    found: set[str] = set()
    while time.monotonic() < deadline:
        with suppress(Exception):
            found = {w.id async for w in client.list_workflows(f"ChangeNumber = '{number}'")}
        if found >= expected:
            break
        await asyncio.sleep(0.3)
    return found
