"""`changeloop doctor`: what is missing before the first real change (starter/doctor.py has the checks)."""

from __future__ import annotations

import json

import typer
from pydantic import SecretStr
from rich.markup import escape

from config.settings import Settings
from starter.cli import common
from starter.cli.common import console

_STYLE = {"ok": "green", "fail": "red", "warn": "yellow", "info": "cyan", "unknown": "yellow", "skipped": "dim"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    admin_user: str | None = typer.Option(
        None,
        help="Read the installation (roles, dictionary, Business Rules, properties) as this admin; nothing is written. "
        "Password: CHANGELOOP_DOCTOR_ADMIN_PASSWORD, or asked for.",
        show_default=False,
    ),
    user: str | None = typer.Option(
        None, help="The integration user's user_name (default: CHANGELOOP_SERVICENOW_USERNAME).", show_default=False
    ),
) -> None:
    """Check the ServiceNow instance, the update set, the shim, Temporal and the runbook registry; one line per check
    with the fix. Exit 1 when a check that blocks changes fails."""
    import os

    from starter.doctor_servicenow import AdminLogin

    admin = None
    if admin_user:
        password = os.environ.get("CHANGELOOP_DOCTOR_ADMIN_PASSWORD") or typer.prompt(
            f"password of {admin_user}", hide_input=True
        )
        admin = AdminLogin(username=admin_user, password=SecretStr(password))
    common.run(diagnose(common.settings(), admin=admin, user=user, as_json=as_json))


async def diagnose(settings: Settings, *, admin: object = None, user: str | None = None, as_json: bool = False) -> int:
    """The command's work, callable from tests: prints the report, answers the exit code."""
    from starter.doctor import run_doctor

    report = await run_doctor(settings, admin=admin, user=user)  # type: ignore[arg-type]
    if as_json:
        body = {
            "ok": report.exit_code == 0,
            "exit_code": report.exit_code,
            "checks": [c.model_dump() for c in report.checks],
        }
        console.print_json(json.dumps(body))
        return report.exit_code
    area = ""
    for check in report.checks:
        if check.area != area:
            area = check.area
            console.print(f"[bold]{escape(area)}[/bold]", highlight=False)
        console.print(f"  [{_STYLE[check.status.value]}]{escape(check.line())}[/]", highlight=False, soft_wrap=True)
    failed = report.failed
    if failed:
        console.print(
            f"[red]{len(failed)} blocking check(s) failed[/red]: {', '.join(c.id for c in failed)}", highlight=False
        )
    else:
        unknown = sum(c.status.value == "unknown" for c in report.checks)
        extra = f" ({unknown} could not be verified: see the lines marked ?)" if unknown else ""
        console.print(f"[green]ready: no blocking problem found[/green]{extra}", highlight=False)
    return report.exit_code
