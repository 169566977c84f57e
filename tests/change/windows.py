"""What the window, hold and cancel tests share: a change with a planned window, the sandbox's blackouts, statuses."""

from __future__ import annotations

import os
import signal
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle

from servicenow.client import ServiceNowClient
from servicenow.query import Query
from servicenow.standard_change import servicenow_time
from tests.changes import Changes
from tests.helpers import wait_for
from workflows.change.models import ChangeStatus
from workflows.runbook.models import RunbookStatus, runbook_workflow_id

RELEASE_DIR = Path(tempfile.gettempdir(), "changeloop-release")  # tests/runbooks.yaml release_runbook


def now() -> datetime:
    """Whole seconds: ServiceNow keeps date-times to the second."""
    return datetime.now(UTC).replace(microsecond=0)


async def plan(changes: Changes, change: dict[str, Any], start: datetime, end: datetime) -> None:
    """Set the change's planned window as a change manager does on the form."""
    await changes.sn.update(
        "change_request", change["sys_id"], {"start_date": servicenow_time(start), "end_date": servicenow_time(end)}
    )


async def status_when(handle: WorkflowHandle[Any, Any], predicate: Any, message: str, within: float = 30) -> Any:
    async def probe() -> ChangeStatus | None:
        status: ChangeStatus = await handle.query("status", result_type=ChangeStatus)
        return status if predicate(status) else None

    return await wait_for(probe, timeout=within, interval=0.1, message=message)


async def runbook_status(client: Client, number: str) -> RunbookStatus | None:
    try:
        status: RunbookStatus = await client.get_workflow_handle(runbook_workflow_id(number)).query(
            "status", result_type=RunbookStatus
        )
    except Exception:  # not started yet
        return None
    return status


def fresh(number: str) -> str:
    """No release or pid file of an earlier session (change numbers repeat across sandbox sessions)."""
    for path in (RELEASE_DIR / number, RELEASE_DIR / f"{number}.pid"):
        path.unlink(missing_ok=True)
    return number


def pid_of(number: str) -> int:
    path = RELEASE_DIR / f"{number}.pid"
    return int(path.read_text()) if path.exists() and path.read_text().strip() else 0


async def waiting_for_release(number: str) -> int:
    """The release_runbook's middle step runs (its process wrote its pid)."""
    return await wait_for(lambda: pid_of(number), timeout=30, interval=0.05, message=f"{number} waits for release")


def release(number: str) -> None:
    RELEASE_DIR.mkdir(exist_ok=True)
    (RELEASE_DIR / number).write_text("go")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_leftover(pid: int) -> None:
    if pid and alive(pid):
        os.kill(pid, signal.SIGKILL)


async def incidents_for(sn: ServiceNowClient, *workflow_ids: str) -> int:
    return len(await sn.list("incident", Query().in_("correlation_id", list(workflow_ids)), fields=["number"]))


class Blackouts:
    """The sandbox's `/sandbox/blackouts` control (sandbox/routes_control_change.py)."""

    def __init__(self, sandbox_url: str) -> None:
        self.url = f"{sandbox_url}/sandbox/blackouts"

    async def add(self, start_in: float, end_in: float, ci: str) -> dict[str, str]:
        async with httpx.AsyncClient(timeout=10) as http:
            body = {"start_in": start_in, "end_in": end_in, "name": f"Test freeze on {ci}", "condition": f"name={ci}"}
            response = await http.post(self.url, json=body)
            response.raise_for_status()
            found: dict[str, str] = response.json()
            return found

    async def clear(self) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            (await http.delete(self.url)).raise_for_status()


def sn_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def later(seconds: float) -> datetime:
    return now() + timedelta(seconds=seconds)
