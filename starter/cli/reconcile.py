"""`changeloop reconcile run [--dry-run]`: reconcile the CMDB against the live sources now, and print the summary.

Registered in starter/cli/main.py; runs through starter/cli/common.py (one red line on failure, then `os._exit`).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from config.settings import Settings
from starter.cli import common
from starter.cli.common import console, errors
from workflows.reconcile.models import ReconcileSummary

app = typer.Typer(help="CMDB reconciliation: live infrastructure against the declared CIs.", no_args_is_help=True)


@app.command("run")
def run(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report the drift; create, open and update nothing."),
    config: str = typer.Option(
        "default",
        help="The worker's config to run: 'default' (CHANGELOOP_RECONCILE, else the shipped file), or <name> for "
        "<name>.yaml when CHANGELOOP_RECONCILE is a directory. The worker reads it; nothing of it is sent.",
    ),
    wait: bool = typer.Option(True, help="Wait for the run and print its summary."),
) -> None:
    """Start ReconcileWorkflow as reconcile-<date> (a dry run: reconcile-<date>-dry-run) on the worker's queue."""
    common.run(_reconcile(common.settings(), config, dry_run=dry_run, wait=wait))


async def _reconcile(settings: Settings, config: str, *, dry_run: bool, wait: bool) -> int:
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from starter.reconcile import start_reconcile

    client = await common.connect(settings, wait=0)
    try:
        handle = await start_reconcile(client, settings, config, dry_run=dry_run)
    except WorkflowAlreadyStartedError as exc:
        errors.print(
            f"[yellow]{exc.workflow_id} is already running[/yellow]: {settings.execution_url(exc.workflow_id)}"
        )
        return 2
    console.print(f"started {handle.id}: {settings.execution_url(handle.id, handle.result_run_id)}", highlight=False)
    if not wait:
        return 0
    print_summary(console, await handle.result())
    return 0


def print_summary(console: Any, summary: ReconcileSummary) -> None:
    """The summary as a terminal shows it: sources, one row per source and class, then what was done."""
    mode = " (dry run: nothing written)" if summary.dry_run else ""
    # Fits 80 columns: no rules, classes without their common prefix.
    table = Table(title=f"{summary.run}{mode}: {summary.cmdb_cis} declared CIs", box=None, header_style="bold")
    for column in ("source", "class", "matched", "new", "missing", "unknown", "drift", "created", "inc."):
        table.add_column(column, justify="left" if column in ("source", "class") else "right")
    for t in summary.tallies:
        numbers = (t.matched, t.new, t.missing, t.unknown, t.drifted, t.created, t.incidents)
        table.add_row(t.source, t.ci_class.removeprefix("cmdb_ci_"), *(str(n) for n in numbers))
    console.print(table)
    for source in summary.sources:
        state = f"{source.records} live resources" if source.ok else f"[red]failed[/red]: {source.error}"
        console.print(f"source {source.source} ({source.kind}): {state}", highlight=False)
    lines = [
        ("created (marked for review)", summary.created_total, summary.created or summary.new),
        ("incidents opened", summary.incidents_total, summary.incidents or summary.missing),
        ("incidents already open", summary.incidents_already_open, []),
        ("unknown (source failed)", summary.unknown_total, summary.unknown),
        ("drifted", len(summary.drifted), summary.drifted),
        ("refused by the instance", len(summary.failed), summary.failed),
    ]
    if summary.dry_run:
        lines[0] = ("would create", sum(t.new for t in summary.tallies), summary.new)
        lines[1] = ("would open incidents for", sum(t.missing for t in summary.tallies), summary.missing)
    for title, count, names in lines:
        if count or names:
            console.print(f"{title}: {count}" + (f" - {', '.join(names)}" if names else ""), highlight=False)
    console.print(f"Slack: {summary.slack}", highlight=False)
