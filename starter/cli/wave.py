"""`changeloop wave status <number>`: a live progress bar of one patch wave, from the wave's `status` query.

Refreshes until the wave ends (or once with --once), then prints the per-CI table of the hosts that need a look
(rolled back, failed, not attempted) - the full list with links is in the change's summary work note.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from config.settings import Settings, get_settings
from starter.cli import common
from starter.cli.common import console, errors
from workflows.status import QUERY_STATUS
from workflows.wave.models import CiState, WaveHost, WaveStatus, wave_workflow_id

app = typer.Typer(help="Patch waves: live progress of one wave.", no_args_is_help=True)
TROUBLE = (CiState.ROLLED_BACK, CiState.FAILED, CiState.NOT_ATTEMPTED)


@app.command("status")
def wave_status(
    number: str = typer.Argument(..., help="Change number of the wave, e.g. CHG0030004."),
    once: bool = typer.Option(False, "--once", help="Print the current state and exit instead of following it."),
    interval: float = typer.Option(1.0, help="Seconds between refreshes."),
) -> None:
    """Follow a wave: counts, a progress bar, the hosts that need a look."""
    common.run(_follow(get_settings(), number, once, interval))


async def _follow(settings: Settings, number: str, once: bool, interval: float) -> int:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    client = await common.connect(settings, wait=0)
    handle = client.get_workflow_handle(wave_workflow_id(number))
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            errors.print(f"no wave {handle.id} in namespace {settings.temporal_namespace}")
            return 2
        raise
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    task = progress.add_task(handle.id, total=None)
    status = await _query(handle)
    with Live(_view(progress, status), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            progress.update(task, completed=status.counts.finished, total=status.counts.total or None)
            live.update(_view(progress, status))
            running = (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            if once or not running:
                break
            await asyncio.sleep(interval)
            status = await _query(handle)
    trouble = [h for h in status.hosts if h.state in TROUBLE]
    if trouble:
        console.print(_hosts_table(trouble))
    console.print(f"wave: {status.url}")
    return 0


async def _query(handle: Any) -> WaveStatus:
    status: WaveStatus = await handle.query(QUERY_STATUS, result_type=WaveStatus, rpc_timeout=timedelta(seconds=5))
    return status


def _view(progress: Progress, status: WaveStatus) -> Group:
    c = status.counts
    table = Table(show_header=True, title=f"{status.application or '?'} -> {status.target_level} ({status.phase})")
    for column in ("pending", "running", "patched", "rolled back", "failed", "skipped", "not attempted"):
        table.add_column(column, justify="right")
    table.add_row(
        *(str(v) for v in (c.pending, c.running, c.patched, c.rolled_back, c.failed, c.skipped, c.not_attempted))
    )
    lines: list[Any] = [progress, table]
    if status.canary:
        verdict = "passed" if status.canary_passed else ("failed" if status.stopped else "running")
        lines.append(f"canary {', '.join(status.canary)}: {verdict}")
    if status.stopped:
        lines.append(f"[red]stopped:[/red] {status.stopped}")
    return Group(*lines)


def _hosts_table(hosts: list[WaveHost]) -> Table:
    table = Table(title="hosts that need a look")
    for column in ("CI", "state", "detail", "execution"):
        table.add_column(column, overflow="fold")
    for host in hosts:
        table.add_row(host.ci, host.state.value, host.detail, host.url)
    return table
