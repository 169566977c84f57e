"""`changeloop`: the command line (typer + rich). One module of thin commands; the work lives in starter/*.

Commands that created a Temporal client end with `os._exit(code)` after their cleanup: the SDK's core runtime can
crash at interpreter exit in short one-shot processes (sdk-python issue 300), and an exit code of -11 after a
successful `schedules apply` would fail a deploy script for nothing.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from logs import configure_logging
from settings import Settings, get_settings
from starter.cli_reconcile import app as reconcile_app

app = typer.Typer(
    name="changeloop",
    help="ServiceNow tickets fire durable Temporal workflows; the workflows close the tickets.",
    no_args_is_help=True,
    add_completion=False,
)
schedules_app = typer.Typer(help="Temporal schedules owned by changeloop (the change poll).", no_args_is_help=True)
change_app = typer.Typer(
    help="One change's workflow: status, and decisions at its approval gate.", no_args_is_help=True
)
app.add_typer(schedules_app, name="schedules")
app.add_typer(change_app, name="change")
app.add_typer(__import__("starter.cli_incident", fromlist=["incident_app"]).incident_app, name="incident")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(__import__("starter.cli_wave", fromlist=["wave_app"]).wave_app, name="wave")

console = Console()
errors = Console(stderr=True)


def _exit(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(coroutine: Coroutine[Any, Any, int]) -> NoReturn:
    """Run a command that talks to Temporal; print a failure as one red line, not a traceback; then os._exit."""
    try:
        code = asyncio.run(coroutine)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # the operator wants the reason, the traceback is for --log-level debug
        errors.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        code = 1
    _exit(code)


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.secret_values(), settings.log_level)
    return settings


# -- processes ---------------------------------------------------------------------------------------------------------
@app.command()
def dev(
    host: str = typer.Option("127.0.0.1", help="Address every service binds to."),
    temporal_port: int = typer.Option(7233, help="Temporal gRPC port."),
    ui_port: int = typer.Option(8233, help="Temporal UI port."),
    sandbox_port: int = typer.Option(8080, help="Sandbox ServiceNow port."),
    shim_port: int = typer.Option(8000, help="Starter shim port."),
    state_dir: Path = typer.Option(Path(".changeloop"), help="Where the SQLite state lives."),
    ephemeral: bool = typer.Option(False, help="Keep Temporal and the sandbox in memory (nothing persisted)."),
    free_ports: bool = typer.Option(False, help="Replace each busy port with a free one instead of failing."),
) -> None:
    """Temporal dev server + UI, sandbox ServiceNow, worker and shim in one process group; Ctrl-C stops all."""
    from starter.dev import DevConfig, run_dev, with_free_ports

    config = DevConfig(
        host=host,
        temporal_port=temporal_port,
        ui_port=ui_port,
        sandbox_port=sandbox_port,
        shim_port=shim_port,
        state_dir=state_dir,
        persist=not ephemeral,
        webhook_token=os.environ.get("CHANGELOOP_WEBHOOK_TOKEN") or None,
        task_queue=get_settings().task_queue,
    )
    _run(run_dev(with_free_ports(config) if free_ports else config, console))


@app.command()
def demo(
    keep: bool = typer.Option(False, help="Leave the stack running after the walkthrough, until Ctrl-C."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for the ticket to close."),
) -> None:
    """Run the dev stack and walk one standard change from approval to Closed; exit 0 when the loop closed."""
    from starter.demo import run_demo

    _run(run_demo(console, keep=keep, within=timeout))


@app.command()
def worker(
    site: str | None = typer.Option(
        None,
        help="Serve only this site's host operations, on <task queue>-<site> (default: CHANGELOOP_SITE; none: the "
        "central worker with every workflow and activity).",
        show_default=False,
    ),
) -> None:
    """Run the worker: every workflow and activity on CHANGELOOP_TASK_QUEUE, or one site's host operations."""
    from worker import run_worker

    settings = _settings()
    if site:
        settings = settings.model_copy(update={"site": site})
    _run(_run_worker(settings, run_worker))


@app.command()
def probe(url: str = typer.Argument(..., help="e.g. http://127.0.0.1:9465/readyz")) -> None:
    """Exit 0 when URL answers 2xx within 3 s: the container health check (the image has no curl)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            code = 0 if 200 <= answer.status < 300 else 1
    except Exception as exc:  # 503, refused, timeout: unhealthy, and say why
        errors.print(f"unhealthy: {exc}", highlight=False)
        code = 1
    _exit(code)


@app.command()
def keygen(key_id: str = typer.Argument(..., help="A name for the key, e.g. 2025-06")) -> None:
    """Print a new history encryption key as `id:base64` for CHANGELOOP_ENCRYPTION_KEYS (put it first to rotate)."""
    from ops.codec import new_key

    console.print(f"{key_id}:{new_key()}", highlight=False, soft_wrap=True)


async def _run_worker(settings: Settings, run_worker: Any) -> int:
    # Wait for Temporal first, so `changeloop dev` (and docker-compose) can start the worker alongside the server.
    await _connect(settings)
    await run_worker(settings)
    return 0


@app.command()
def shim(
    host: str = typer.Option("127.0.0.1", help="Bind address (0.0.0.0 in a container)."),
    port: int = typer.Option(8000, help="Port."),
) -> None:
    """Run the starter shim (HTTP → Temporal) with uvicorn."""
    _run(_serve_shim(_settings(), host, port))


async def _serve_shim(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from starter.registry import load_registry
    from starter.shim import create_app

    registry = load_registry(settings.runbooks)  # a bad registry stops the shim here, naming the line
    client = await _connect(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, client, registry), host=host, port=port, access_log=False, lifespan="off")
    )
    await server.serve()  # uvicorn handles SIGINT/SIGTERM itself
    return 0


async def _connect(settings: Settings, wait: float = 30.0) -> Any:
    """Connect, retrying for a while: in docker-compose the shim and worker may come up before Temporal."""
    from starter.temporal import connect

    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            return await connect(settings)
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1)


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8080, help="Port."),
    db: str = typer.Option(".changeloop/sandbox.sqlite3", help="SQLite file (':memory:' for a throwaway instance)."),
    webhook_url: str | None = typer.Option(None, help="Where the Business Rule POSTs approved changes."),
    webhook_token: str | None = typer.Option(
        None, help="Bearer token of the webhook (default: CHANGELOOP_WEBHOOK_TOKEN).", show_default=False
    ),
) -> None:
    """Run the sandbox ServiceNow instance in the foreground (seeded on first start)."""
    from sandbox.server import SandboxConfig, serve

    settings = get_settings()
    token = webhook_token or (settings.webhook_token.get_secret_value() if settings.webhook_token else None)
    if db != ":memory:":
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    console.print(f"sandbox ServiceNow on http://{host}:{port} (admin/admin, changeloop.integration/sn-integration-pw)")
    serve(SandboxConfig(host=host, port=port, db_path=db, webhook_url=webhook_url, webhook_token=token))


# -- schedules ---------------------------------------------------------------------------------------------------------
@schedules_app.command("apply")
def schedules_apply() -> None:
    """Create or update every changeloop schedule (idempotent; keeps a paused schedule paused)."""
    _run(_schedules_apply(_settings()))


async def _schedules_apply(settings: Settings) -> int:
    from starter import schedules
    from starter.registry import load_registry

    registry = load_registry(settings.runbooks)
    client = await _connect(settings, wait=0)
    for applied in await schedules.apply(client, settings, registry):
        console.print(f"{applied.action:8} {applied.id}")
    return await _schedules_list(settings, client)


@schedules_app.command("list")
def schedules_list() -> None:
    """Show each changeloop schedule: present or not, interval, paused, runs so far, next run."""
    _run(_schedules_list(_settings()))


async def _schedules_list(settings: Settings, client: Any = None) -> int:
    from starter import schedules

    client = client or await _connect(settings, wait=0)
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


@schedules_app.command("delete")
def schedules_delete(
    schedule_id: list[str] | None = typer.Argument(None, help="Schedule IDs (default: all of changeloop's)."),
) -> None:
    """Delete changeloop schedules; executions they started run to their end."""
    _run(_schedules_delete(_settings(), schedule_id or None))


async def _schedules_delete(settings: Settings, ids: list[str] | None) -> int:
    from starter import schedules

    client = await _connect(settings, wait=0)
    deleted = await schedules.delete(client, ids)
    console.print(f"deleted: {', '.join(deleted)}" if deleted else "nothing to delete")
    return 0


# -- one change --------------------------------------------------------------------------------------------------------
@change_app.command("status")
def change_status(number: str = typer.Argument(..., help="Change number, e.g. CHG0030001.")) -> None:
    """The change workflow's own view (the `status` query) plus Temporal's (describe)."""
    _run(_change_status(_settings(), number))


async def _change_status(settings: Settings, number: str) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    from workflows.models import QUERY_STATUS, ChangeStatus, change_workflow_id

    client = await _connect(settings, wait=0)
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


@change_app.command("approve")
def change_approve(
    number: str = typer.Argument(..., help="Change number."),
    approver: str = typer.Option(_default_approver(), help="Who approves (recorded in the ticket)."),
    comments: str = typer.Option("", help="Comments for the work note."),
) -> None:
    """Approve the change's gate through the `decide` update (validated; answers the gate state)."""
    _run(_decide(_settings(), number, approver, comments, approve=True))


@change_app.command("reject")
def change_reject(
    number: str = typer.Argument(..., help="Change number."),
    approver: str = typer.Option(_default_approver(), help="Who rejects (recorded in the ticket)."),
    comments: str = typer.Option("", help="Why; goes into the close notes."),
) -> None:
    """Reject the change's gate through the `decide` update; the change closes unsuccessful."""
    _run(_decide(_settings(), number, approver, comments, approve=False))


async def _decide(settings: Settings, number: str, approver: str, comments: str, *, approve: bool) -> int:
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    from workflows.models import UPDATE_DECIDE, DecideInput, Decision, GateState, change_workflow_id

    client = await _connect(settings, wait=0)
    handle = client.get_workflow_handle(change_workflow_id(number))
    decision = DecideInput(
        approver=approver, decision=Decision.APPROVED if approve else Decision.REJECTED, comments=comments
    )
    try:
        gate = await handle.execute_update(
            UPDATE_DECIDE, decision, result_type=GateState, rpc_timeout=timedelta(seconds=30)
        )
    except WorkflowUpdateFailedError as exc:
        errors.print(f"[red]refused:[/red] {exc.cause or exc}", highlight=False)
        return 1
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            errors.print(f"[red]refused:[/red] {handle.id} does not exist or has already closed")
            return 2
        raise
    console.print(f"{handle.id}: gate {gate.status.value} by {gate.approver}", highlight=False)
    return 0


if __name__ == "__main__":
    app()
