"""`changeloop demo` (`make demo`): the whole loop on a laptop, non-interactive, with an exit code that means it.

Starts the dev stack in memory on free ports (the defaults when they are free), then does what a change implementer
does in ServiceNow: opens a standard change from "Restart application service" on payments-api, planned to start a
few seconds later, and lets the instance pre-approve it into Scheduled. The sandbox's Business Rule POSTs it to the
shim; the worker waits for the planned start, runs the runbook and closes the ticket. We watch the ticket, not
Temporal: the ticket is what the user sees.
"""

from __future__ import annotations

import asyncio
import signal
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from servicenow.change_request import ChangeState
from servicenow.client import BasicAuth, ServiceNowClient
from starter.devstack.demo_incident import incident_scenario
from starter.devstack.demo_reconcile import reconcile_scenario
from starter.devstack.dev import ADMIN_USER, DevConfig, DevStack, print_summary, with_free_ports
from starter.devstack.walkthrough import (
    DemoFailed,
    TicketReport,
    open_standard_change,
    schedule_preapproved,
    ticket_report,
)

TEMPLATE = "Restart application service"
CI = "payments-api"
WINDOW_OPENS_IN = timedelta(seconds=5)  # the demo change's planned start: changeloop waits for it
LOG_DIR = Path(".changeloop/demo-logs")


def _label(state: str) -> str:
    return ChangeState(state).name.title() if state in ChangeState._value2member_map_ else state


async def run_demo(console: Any, *, keep: bool = False, within: float = 60.0) -> int:
    config = with_free_ports(DevConfig(persist=False, log_dir=LOG_DIR))
    stack = DevStack(config)
    console.print(f"starting the dev stack in memory (logs in {LOG_DIR}/) …")
    stop = asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        stop.set()
        if main is not None and not keep_waiting:
            main.cancel()

    keep_waiting = False
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    try:
        await stack.start()
        print_summary(stack, console)
        try:
            await walkthrough(stack.config, console, within)
            await incident_scenario(stack.config, console, within)  # a failing runbook opens an incident
            code = 0
            console.print("[green]demo succeeded:[/green] the ticket fired the flow and the flow closed the ticket.")
        except DemoFailed as exc:
            console.print(f"[red]demo failed:[/red] {exc}")
            code = 1
        if keep:
            keep_waiting = True
            console.print("--keep: the stack stays up; Ctrl-C stops it.")
            await stop.wait()
        return code
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        console.print(f"[red]demo failed:[/red] the stack did not start: {exc}")
        return 1
    except asyncio.CancelledError:
        console.print("interrupted")
        return 130
    finally:
        console.print("stopping the stack …")
        await asyncio.to_thread(stack.stop)


async def walkthrough(config: DevConfig, console: Any, within: float) -> TicketReport:
    async with ServiceNowClient(config.sandbox_url, BasicAuth(*ADMIN_USER)) as sn:
        start = datetime.now(UTC).replace(microsecond=0) + WINDOW_OPENS_IN
        change = await open_standard_change(
            sn, TEMPLATE, CI, f"Demo: restart the {CI} service", start=start, end=start + timedelta(hours=1)
        )
        number, sys_id = change["number"], change["sys_id"]
        console.print(
            f"1. opened {number} from template {TEMPLATE!r} on {CI} (state New) as {ADMIN_USER[0]}, planned to "
            f"start at {start:%H:%M:%S} UTC"
        )
        await schedule_preapproved(sn, sys_id)
        console.print("2. pre-approved: approval=approved, state Scheduled -> the Business Rule POSTs it to the shim")
        console.print(
            f"   changeloop waits for the planned start ({WINDOW_OPENS_IN.seconds} s; status phase waiting_for_window)"
        )
        link = f"{config.ui_url}/namespaces/{config.namespace}/workflows/change-{number}"
        console.print(f"3. watching the ticket (up to {within:.0f} s); execution: {link}")
        await _watch(sn, sys_id, within, console, config, number)
        report = await ticket_report(sn, sys_id)
    _print_report(console, report, link)
    _check(report, number, link)
    await _evidence(config, console, number, sys_id)
    await reconcile_scenario(config, console)  # the CMDB kept honest: starter/demo_reconcile.py
    return report


async def _evidence(config: DevConfig, console: Any, number: str, sys_id: str) -> None:
    """What an auditor finds later: the files on the ticket (the runbook's log), and the audit export of the change
    (starter/audit.py)."""
    from rich.markdown import Markdown

    from ops.connect import connect
    from servicenow import attachments
    from starter.audit import build_audit, to_markdown

    settings = config.client_settings().model_copy(
        update={"servicenow_username": ADMIN_USER[0], "servicenow_password": SecretStr(ADMIN_USER[1])}
    )
    async with ServiceNowClient(config.sandbox_url, BasicAuth(*ADMIN_USER)) as sn:
        files = await attachments.list_attachments(sn, "change_request", sys_id)
    names = ", ".join(f"{f.file_name} ({f.size} bytes)" for f in files)
    console.print(f"attachments on {number}: {names or 'none'}", highlight=False)
    log = f"runbook-{number}.log"  # every step's output, attached by the runbook at its end
    if log not in {f.file_name for f in files}:
        raise DemoFailed(f"{number} has no {log}: the runbook attaches its steps' output to the change at its end")
    report = await build_audit(settings, await connect(settings), number)
    console.print(f"\naudit export of {number} (`changeloop audit {number} --format md`):")
    console.print(Markdown(to_markdown(report)))


async def _watch(
    sn: ServiceNowClient, sys_id: str, within: float, console: Any, config: DevConfig, number: str
) -> None:
    """Print each state the ticket passes through until Closed (or Canceled); the reason if the deadline passes."""
    began = time.monotonic()
    deadline = began + within
    seen = ""
    while True:
        record = await sn.get("change_request", sys_id, fields=["state"])
        state = str(record.get("state", ""))
        if state != seen:
            console.print(f"   ticket state: {_label(state)} (+{time.monotonic() - began:.0f} s)")
            seen = state
        if state in (ChangeState.CLOSED.value, ChangeState.CANCELED.value):
            return
        if time.monotonic() >= deadline:
            raise DemoFailed(
                f"{number} still {_label(state)} after {within:.0f} s; {await _delivery(config, number)}; "
                f"worker and shim logs in {LOG_DIR}/"
            )
        await asyncio.sleep(0.5)


async def _delivery(config: DevConfig, number: str) -> str:
    """What the Business Rule's delivery to the shim did, for the failure message."""
    with suppress(httpx.HTTPError, ValueError, KeyError):
        async with httpx.AsyncClient(timeout=5) as http:
            messages = (await http.get(f"{config.sandbox_url}/sandbox/outbound")).json()
        mine = [m for m in messages if m["body"].get("number") == number]
        if not mine:
            return "the Business Rule never sent it"
        last = mine[-1]
        return (
            f"the shim answered {last.get('status')} after {last.get('attempts')} attempt(s) {last.get('error') or ''}"
        )
    return "delivery status unknown"


def _print_report(console: Any, report: TicketReport, link: str) -> None:
    from rich.table import Table

    table = Table(title=f"{report.number} in ServiceNow", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("state", _label(report.state))
    table.add_row("close_code", report.close_code)
    table.add_row("close_notes", report.close_notes)
    table.add_row("correlation_id", report.correlation_id)
    table.add_row("correlation_display", report.correlation_display)
    table.add_row("Temporal UI", link)
    console.print(table)
    console.print("work notes, oldest first:")
    for note in report.work_notes:
        console.print(f"  - {note}", highlight=False)


def _check(report: TicketReport, number: str, link: str) -> None:
    problems = []
    if report.state != ChangeState.CLOSED.value:
        problems.append(f"state is {_label(report.state)}, not Closed")
    if report.close_code != "successful":
        problems.append(f"close_code is {report.close_code!r}, not 'successful'")
    if report.correlation_id != f"change-{number}":
        problems.append(f"correlation_id is {report.correlation_id!r}, not 'change-{number}'")
    if not any(link in note for note in report.work_notes):
        problems.append("no work note carries the execution link")
    if not any("planned start" in note for note in report.work_notes):
        problems.append("no work note says that changeloop waited for the planned start")
    if problems:
        raise DemoFailed("; ".join(problems))
