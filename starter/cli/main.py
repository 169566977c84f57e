"""`changeloop`: the command line (typer + rich). The root app holds the process commands (dev, demo, worker, shim,
sandbox, probe, keygen); each other concept is a typer sub-app in its own module (schedules, change, incident,
reconcile, wave), sharing starter/cli/common.py. Commands stay thin: the work lives in starter/*, ops/ and worker.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from config.settings import Settings, get_settings
from starter.cli import audit, change, common, doctor, incident, reconcile, schedules, wave
from starter.cli.common import console, errors

app = typer.Typer(
    name="changeloop",
    help="ServiceNow tickets fire durable Temporal workflows; the workflows close the tickets.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(schedules.app, name="schedules")
app.add_typer(change.app, name="change")
app.add_typer(incident.app, name="incident")
app.add_typer(reconcile.app, name="reconcile")
app.add_typer(wave.app, name="wave")
app.command("doctor")(doctor.doctor)
app.command("audit")(audit.audit)


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
    from starter.devstack.dev import DevConfig, run_dev, with_free_ports

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
    common.run(run_dev(with_free_ports(config) if free_ports else config, console))


@app.command()
def demo(
    keep: bool = typer.Option(False, help="Leave the stack running after the walkthrough, until Ctrl-C."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for the ticket to close."),
) -> None:
    """Run the dev stack and walk one standard change from approval to Closed; exit 0 when the loop closed."""
    from starter.devstack.demo import run_demo

    common.run(run_demo(console, keep=keep, within=timeout))


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

    settings = common.settings()
    if site:
        settings = settings.model_copy(update={"site": site})
    common.run(_run_worker(settings, run_worker))


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
    common.exit_now(code)


@app.command()
def keygen(key_id: str = typer.Argument(..., help="A name for the key, e.g. 2025-06")) -> None:
    """Print a new history encryption key as `id:base64` for CHANGELOOP_ENCRYPTION_KEYS (put it first to rotate)."""
    from ops.codec import new_key

    console.print(f"{key_id}:{new_key()}", highlight=False, soft_wrap=True)


async def _run_worker(settings: Settings, run_worker: Any) -> int:
    # Wait for Temporal first, so `changeloop dev` (and docker-compose) can start the worker alongside the server.
    await common.connect(settings)
    await run_worker(settings)
    return 0


@app.command()
def shim(
    host: str = typer.Option("127.0.0.1", help="Bind address (0.0.0.0 in a container)."),
    port: int = typer.Option(8000, help="Port."),
) -> None:
    """Run the starter shim (HTTP → Temporal) with uvicorn."""
    common.run(_serve_shim(common.settings(), host, port))


def _loopback_host(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve_shim(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from config.principals import PrincipalError
    from config.registry import load_registry
    from starter.shim.app import create_app, shim_principals

    try:
        shim_principals(settings)  # weak or placeholder tokens stop the shim here, before it listens
    except PrincipalError as exc:
        errors.print(f"[red]the shim will not start:[/red] {exc}", highlight=False)
        return 2
    if settings.codec_dev_loopback and not _loopback_host(host):
        # The codec guard already decodes token-less calls from loopback callers only; a shim that listens beyond
        # this machine with the dev setting on is a deployment mistake, stopped before it listens.
        errors.print(
            f"[red]the shim will not start:[/red] CHANGELOOP_CODEC_DEV_LOOPBACK is for the dev stack on this machine; "
            f"this shim would listen on {host}. Unset it, or bind to 127.0.0.1.",
            highlight=False,
        )
        return 2
    registry = load_registry(settings.runbooks)  # a bad registry stops the shim here, naming the line
    client = await common.connect(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, client, registry), host=host, port=port, access_log=False, lifespan="off")
    )
    await server.serve()  # uvicorn handles SIGINT/SIGTERM itself
    return 0


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8080, help="Port."),
    db: str = typer.Option(".changeloop/sandbox.sqlite3", help="SQLite file (':memory:' for a throwaway instance)."),
    webhook_url: str | None = typer.Option(None, help="Where the Business Rule POSTs approved changes."),
    webhook_token: str | None = typer.Option(
        None, help="Bearer token of the webhook (default: CHANGELOOP_WEBHOOK_TOKEN).", show_default=False
    ),
    incident_token: str | None = typer.Option(
        None, help="Bearer token of the incident-resolved rule (a principal with incident:resolve).", show_default=False
    ),
    profile: str = typer.Option(
        "default",
        help="'realistic': 150 ms +- 50 ms per call, page cost per row, and the integration user's hourly rate limit.",
    ),
) -> None:
    """Run the sandbox ServiceNow instance in the foreground (seeded on first start)."""
    from starter.devstack.sandbox import serve_sandbox

    settings = get_settings()
    token = webhook_token or (settings.webhook_token.get_secret_value() if settings.webhook_token else None)
    serve_sandbox(host, port, db, webhook_url, token, console, profile, incident_token)
