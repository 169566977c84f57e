"""`changeloop change status|approve|reject <number>`: one change's workflow, and decisions at its approval gate;
`changeloop change create`: a standard change from a template, which the instance's Business Rule then sends."""

from __future__ import annotations

import getpass
import json
import os
from datetime import datetime, timedelta
from typing import Any

import typer
from rich.table import Table

from config.settings import Settings
from starter.cli import common
from starter.cli.common import console, errors

app = typer.Typer(
    help="One change: create a standard change; its workflow's status, and decisions at its approval gate.",
    no_args_is_help=True,
)


@app.command("status")
def change_status(number: str = typer.Argument(..., help="Change number, e.g. CHG0030001.")) -> None:
    """The change workflow's own view (the `status` query) plus Temporal's (describe)."""
    common.run(_change_status(common.settings(), number))


async def _change_status(settings: Settings, number: str) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    from workflows.change.models import ChangeStatus, change_workflow_id
    from workflows.status import QUERY_STATUS

    client = await common.connect(settings, wait=0)
    handle = client.get_workflow_handle(change_workflow_id(number))
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            errors.print(f"no workflow {handle.id} in namespace {settings.temporal_namespace}")
            return 2
        raise
    try:
        status = await handle.query(QUERY_STATUS, result_type=ChangeStatus, rpc_timeout=timedelta(seconds=5))
    except Exception as exc:  # no worker to answer: describe alone still says a lot
        errors.print(f"[yellow]status query unanswered ({type(exc).__name__}: {exc})[/yellow]")
        status = None
    state = description.status.name if description.status else "?"
    console.print(_status_table(handle.id, state, settings.execution_url(handle.id, description.run_id), status))
    if status is not None and status.steps:
        console.print(_steps_table(status))
    return 0


def _status_table(workflow_id: str, state: str, url: str, status: Any) -> Table:
    table = Table(title=workflow_id, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("execution", state)
    table.add_row("link", url)
    if status is not None:
        gate = status.gate
        table.add_row("phase", status.phase)
        table.add_row("runbook", status.runbook or "-")
        table.add_row("ticket state", status.ticket_state or "-")
        table.add_row("step", status.step or "-")
        table.add_row("progress", f"{status.progress.done}/{status.progress.total}")
        decided = f" by {gate.approver}" if gate.approver else ""
        table.add_row(
            "approval gate", f"{gate.status.value}{decided}" + (f" (until {gate.deadline})" if gate.deadline else "")
        )
        if status.result is not None:
            table.add_row("outcome", f"{status.result.outcome.value} {status.result.close_code}".strip())
    return table


def _steps_table(status: Any) -> Table:
    table = Table(title="steps")
    for column in ("step", "outcome", "started (UTC)", "ended", "last output"):
        table.add_column(column)
    for step in status.steps:
        ended = step.ended_at.isoformat(timespec="seconds") if step.ended_at else ""
        table.add_row(
            step.name, step.outcome.value, step.started_at.isoformat(timespec="seconds"), ended, step.detail[:80]
        )
    return table


def _default_approver() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return ""


@app.command("approve")
def change_approve(
    number: str = typer.Argument(..., help="Change number."),
    approver: str = typer.Option(_default_approver(), help="Who approves (recorded in the ticket)."),
    comments: str = typer.Option("", help="Comments for the work note."),
) -> None:
    """Approve the change's gate through the `decide` update (judged; answers the gate state).

    Sent straight to Temporal: it counts as the named approver only where CHANGELOOP_TEMPORAL_AUTHORIZES_DECISIONS is
    on (the cluster authorizes who may signal, as in `changeloop dev`); elsewhere it is refused as not proven and the
    gate reads ServiceNow's approval records instead (README "Security model")."""
    common.run(_decide(common.settings(), number, approver, comments, approve=True))


@app.command("reject")
def change_reject(
    number: str = typer.Argument(..., help="Change number."),
    approver: str = typer.Option(_default_approver(), help="Who rejects (recorded in the ticket)."),
    comments: str = typer.Option("", help="Why; goes into the close notes."),
) -> None:
    """Reject the change's gate through the `decide` update; the change closes unsuccessful (same proof rules as
    `approve`)."""
    common.run(_decide(common.settings(), number, approver, comments, approve=False))


async def _decide(settings: Settings, number: str, approver: str, comments: str, *, approve: bool) -> int:

    from workflows.change.models import change_workflow_id
    from workflows.gate.models import UPDATE_DECIDE, DecideInput, Decision, GateState

    client = await common.connect(settings, wait=0)
    handle = client.get_workflow_handle(change_workflow_id(number))
    decision = DecideInput(
        approver=approver, decision=Decision.APPROVED if approve else Decision.REJECTED, comments=comments
    )
    gate = await common.updated(
        handle.execute_update(UPDATE_DECIDE, decision, result_type=GateState, rpc_timeout=timedelta(seconds=30)),
        gone=f"{handle.id} does not exist or has already closed",
    )
    console.print(f"{handle.id}: gate {gate.status.value} by {gate.approver}", highlight=False)
    return 0


# Planned times as an operator types them; a time without an offset is UTC (the integration user's time zone).
_TIME_FORMATS = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%z",
]


@app.command("create")
def create(
    template: str = typer.Option(
        ..., "--template", help="Standard change template name, e.g. 'Restart application service'."
    ),
    ci: str = typer.Option(..., "--ci", help="Configuration item name (or sys_id), e.g. payments-api."),
    short_description: str = typer.Option("", help="Default: the template's short description and the CI."),
    start: datetime | None = typer.Option(
        None, formats=_TIME_FORMATS, help="Planned start, e.g. '2030-01-31 22:00:00' (UTC unless an offset is given)."
    ),
    end: datetime | None = typer.Option(None, formats=_TIME_FORMATS, help="Planned end (as --start)."),
    as_json: bool = typer.Option(False, "--json", help="Print the created change as JSON."),
) -> None:
    """Create a pre-approved standard change (Scheduled) from a template: through the Change Management API where
    the instance has it (CHANGELOOP_CHANGE_API=auto|on|off), a Table API insert otherwise. Exit 2 on bad input
    (nothing is created)."""
    from servicenow.standard_change import StandardChangeRequest

    request = StandardChangeRequest(
        template=template, ci=ci, short_description=short_description, start_date=start, end_date=end
    )
    common.run(create_change(common.settings(), request, as_json=as_json))


async def create_change(settings: Settings, request: Any, *, as_json: bool = False) -> int:
    """The command's work, callable from tests: 0 created, 2 refused (nothing created), 1 ServiceNow said no."""
    from servicenow.client import ServiceNowClient
    from servicenow.errors import ServiceNowError
    from servicenow.standard_change import CreateRefused, create_standard_change

    try:
        async with ServiceNowClient.from_settings(settings) as sn:
            created = await create_standard_change(sn, request, settings.change_api)
    except CreateRefused as exc:
        errors.print(f"[red]refused:[/red] {exc}", highlight=False)
        return 2
    except (ServiceNowError, ValueError) as exc:
        errors.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        return 1
    if as_json:
        console.print_json(json.dumps(created.model_dump()))
        return 0
    table = Table(title=f"{created.number} created", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("number", created.number)
    table.add_row("sys_id", created.sys_id)
    table.add_row("state", f"{created.state_label} ({created.state}), approval {created.approval}")
    table.add_row("template / CI", f"{created.template} / {created.ci}")
    table.add_row("created through", f"{created.route.replace('_', ' ')}: {created.route_reason}")
    if created.ignored_fields:
        table.add_row("ignored fields", ", ".join(created.ignored_fields))
    table.add_row("link", created.link)
    console.print(table)
    return 0


if __name__ == "__main__":
    app()
