"""`changeloop schedules apply|list|delete`: the Temporal schedules changeloop owns (starter/schedules.py)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from config.settings import Settings
from starter.cli import common
from starter.cli.common import console

app = typer.Typer(help="Temporal schedules owned by changeloop (the change poll).", no_args_is_help=True)


@app.command("apply")
def schedules_apply() -> None:
    """Create or update every changeloop schedule (idempotent; keeps a paused schedule paused)."""
    common.run(_schedules_apply(common.settings()))


async def _schedules_apply(settings: Settings) -> int:
    from config.registry import load_registry
    from starter import schedules

    registry = load_registry(settings.runbooks)
    client = await common.connect(settings, wait=0)
    for applied in await schedules.apply(client, settings, registry):
        console.print(f"{applied.action:8} {applied.id}")
    return await _schedules_list(settings, client)


@app.command("list")
def schedules_list() -> None:
    """Show each changeloop schedule: present or not, interval, paused, runs so far, next run."""
    common.run(_schedules_list(common.settings()))


async def _schedules_list(settings: Settings, client: Any = None) -> int:
    from starter import schedules

    client = client or await common.connect(settings, wait=0)
    table = Table(title=f"schedules in namespace {settings.temporal_namespace}")
    for column in ("id", "exists", "workflow", "every", "paused", "runs", "next run"):
        table.add_column(column, overflow="fold")
    for r in await schedules.describe(client):
        next_run = r.next_run.isoformat(timespec="seconds") if r.next_run else ""
        paused = f"yes ({r.note})" if r.paused and r.note else ("yes" if r.paused else "no")
        exists = "yes" if r.exists else "[yellow]no[/yellow]"
        table.add_row(r.id, exists, r.workflow, r.every, paused, str(r.actions_taken), next_run)
    console.print(table)
    for r in await schedules.describe(client):
        console.print(f"{r.id}: {r.description}", highlight=False)
    return 0


@app.command("delete")
def schedules_delete(
    schedule_id: list[str] | None = typer.Argument(None, help="Schedule IDs (default: all of changeloop's)."),
) -> None:
    """Delete changeloop schedules; executions they started run to their end."""
    common.run(_schedules_delete(common.settings(), schedule_id or None))


async def _schedules_delete(settings: Settings, ids: list[str] | None) -> int:
    from starter import schedules

    client = await common.connect(settings, wait=0)
    deleted = await schedules.delete(client, ids)
    console.print(f"deleted: {', '.join(deleted)}" if deleted else "nothing to delete")
    return 0
