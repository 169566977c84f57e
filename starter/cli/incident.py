"""`changeloop incident status|resolve <number>`: an incident that a failed workflow opened, from the terminal.

The number leads to the workflow through the incident's correlation_id (starter/incidents.py). `resolve` is the
validated `resolve` update: it answers once the incident is resolved in ServiceNow, or says why it was refused.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import typer

from starter.cli import common
from starter.cli.common import console

app = typer.Typer(help="Incidents opened by failed workflows: status, and resolve.", no_args_is_help=True)


def _default_resolver() -> str:
    return os.environ.get("USER", "")


@app.command("status")
def incident_status(number: str = typer.Argument(..., help="Incident number, e.g. INC0010001.")) -> None:
    """The incident workflow's `status` query: phase, routing, Slack, resolution."""
    common.run(_status(common.settings(), number))


@app.command("resolve")
def incident_resolve(
    number: str = typer.Argument(..., help="Incident number, e.g. INC0010001."),
    by: str = typer.Option(_default_resolver(), "--by", help="Who resolves it (goes into close_notes)."),
    fixed_by: str = typer.Option("", help="The execution (workflow ID) or change that fixed it."),
    code: str = typer.Option("Solved (Permanently)", help="close_code."),
    notes: str = typer.Option("", help="More close notes."),
) -> None:
    """Resolve the incident (state Resolved, close_code, close_notes naming the fixing execution)."""
    from workflows.incident.models import ResolveIncident

    resolution = ResolveIncident(number=number, resolved_by=by, close_code=code, close_notes=notes, fixed_by=fixed_by)
    common.run(_resolve(common.settings(), resolution))


async def _status(settings: Any, number: str) -> int:
    from starter.incidents import incident_workflow_for
    from workflows.incident.models import IncidentStatus
    from workflows.status import QUERY_STATUS

    workflow_id = await incident_workflow_for(settings, number)
    client = await common.connect(settings, wait=0)
    status = await client.get_workflow_handle(workflow_id).query(
        QUERY_STATUS, result_type=IncidentStatus, rpc_timeout=timedelta(seconds=10)
    )
    console.print(_table(workflow_id, status))
    return 0


async def _resolve(settings: Any, resolution: Any) -> int:
    from starter.incidents import incident_workflow_for, resolve_incident

    workflow_id = await incident_workflow_for(settings, resolution.number)
    client = await common.connect(settings, wait=0)
    status = await common.updated(
        resolve_incident(client, workflow_id, resolution),
        gone=f"{workflow_id} is not running; the incident no longer waits",
    )
    console.print(f"{resolution.number}: {status.phase.value} ({workflow_id})", highlight=False)
    return 0


def _table(workflow_id: str, status: Any) -> Any:
    from rich.table import Table

    table = Table(title=workflow_id, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    incident = status.incident
    table.add_row("phase", status.phase.value)
    table.add_row("failed execution", status.failed_workflow_id)
    if incident is not None:
        table.add_row("incident", f"{incident.number} {incident.url}")
        table.add_row("assignment group", incident.assignment_group or "-")
        table.add_row("impact / urgency", f"{incident.impact} / {incident.urgency}")
    table.add_row("slack", status.slack or "-")
    table.add_row("waits until", str(status.resolve_by or "-"))
    if status.resolution is not None:
        table.add_row("resolved by", f"{status.resolution.resolved_by} at {status.resolved_at}")
        table.add_row("close notes", status.close_notes)
    if status.reason:
        table.add_row("reason", status.reason)
    return table
