"""`changeloop audit <number> [--format rich|md|json]`: the audit export of one change (starter/audit.py) - the
ticket and its journal, the executions with each activity from their histories, the approval and its proof,
incidents, change tasks and attachments, cross-referenced. `rich` (the default) shows the page in the terminal,
`md` prints it as Markdown, `json` as the machine-readable report."""

from __future__ import annotations

from enum import StrEnum

import typer

from config.settings import Settings
from starter.cli import common
from starter.cli.common import console, errors


class Format(StrEnum):
    RICH = "rich"
    MD = "md"
    JSON = "json"


def audit(
    number: str = typer.Argument(..., help="Change number, e.g. CHG0030004."),
    output: Format = typer.Option(Format.RICH, "--format", help="rich (terminal), md (Markdown) or json."),
) -> None:
    """The audit export of one change: ServiceNow's records and Temporal's executions on one page."""
    common.run(_audit(common.settings(), number, output))


async def _audit(settings: Settings, number: str, output: Format) -> int:
    from rich.markdown import Markdown

    from starter.audit import AuditError, build_audit, to_markdown

    client = await common.connect(settings, wait=0)
    try:
        report = await build_audit(settings, client, number)
    except AuditError as exc:
        errors.print(str(exc), highlight=False)
        return 2
    if output == Format.JSON:
        # print() rather than the console: a pipe into jq must get the JSON unwrapped and unstyled.
        print(report.model_dump_json(indent=2))
    elif output == Format.MD:
        print(to_markdown(report))
    else:
        console.print(Markdown(to_markdown(report)))
    return 0
