"""The words of an incident: short_description, description and the Slack line, scrubbed of secrets.

Step output is whatever a command printed, so it may hold a password or a token. Every text that leaves for
ServiceNow or Slack passes the one scrubber (ops/scrub.py): the configured secret values in all their forms, then
anything that looks like `password=…`, `token: …` or `Authorization: Bearer …`, whose value is replaced whatever it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from activities.slack import escape
from ops.scrub import SCRUBBER
from workflows.incident.models import Impact, IncidentRef, IncidentRequest

SHORT_DESCRIPTION_MAX = 160
LINE_MAX = 300


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """The process's scrubber over `text`; `secrets` (the settings' values) join it if it did not know them yet."""
    SCRUBBER.add(secrets)
    return SCRUBBER.text(text)


def short_description(request: IncidentRequest) -> str:
    what = request.workflow_type or "workflow"
    where = f" at step '{request.step}'" if request.step else ""
    subject = f" ({request.change_number})" if request.change_number else ""
    text = f"changeloop: {what} {request.failed_workflow_id}{subject} failed{where}"
    return text[:SHORT_DESCRIPTION_MAX]


def tail(lines: list[str], count: int) -> list[str]:
    kept = [line.rstrip() for line in lines if line.strip()]
    return [line[:LINE_MAX] for line in kept[-count:]]


def description(request: IncidentRequest, impact: Impact, execution_url: str, log_lines: int) -> str:
    """Everything on-call needs to start: where to look, what failed, how, and what it touches."""
    # The message may already start with its type ("StepFailed: ..."): say it once.
    error = (
        f"[{request.error_type}] "
        if request.error_type and not request.error_message.startswith(request.error_type)
        else ""
    )
    lines = [
        f"A production {request.workflow_type or 'workflow'} run by changeloop failed.",
        "",
        f"Execution: {execution_url}",
        f"Workflow ID: {request.failed_workflow_id}"
        + (f" (run {request.failed_run_id})" if request.failed_run_id else ""),
    ]
    if request.change_number:
        lines.append(f"Change: {request.change_number}")
    lines += [
        f"Failing step: {request.step or '(not a runbook step)'}",
        f"Failing activity: {request.activity or '(none: the workflow itself failed)'}",
        f"Error: {error}{request.error_message or '(no message)'}",
        f"Attempts: {request.attempts if request.attempts else 'unknown'}",
    ]
    logs = tail(request.log_lines, log_lines)
    if logs:
        lines += ["", f"Last {len(logs)} log line(s) of the failing step:"] + [f"    {line}" for line in logs]
    lines += ["", "Impacted CIs:"]
    lines += [
        f"  - {ci.name} ({ci.sys_class_name or 'cmdb_ci'}; {ci.criticality or 'no criticality'}; {ci.relation})"
        for ci in impact.cis
    ] or ["  (none found in the CMDB)"]
    group = impact.assignment_group_name or "(no group)"
    lines += [
        "",
        f"Routing: {group} ({impact.group_source}"
        + (f" of {impact.routed_by}" if impact.routed_by and impact.group_source != "default" else "")
        + f"); impact {impact.impact} / urgency {impact.urgency} from busines_criticality "
        f"'{impact.criticality or 'none'}'" + (f" of {impact.routed_by}" if impact.routed_by else "") + ".",
        "Resolve it with `changeloop incident resolve <number>`, or resolve the incident in ServiceNow.",
    ]
    return "\n".join(lines)


def slack_text(incident: IncidentRef, request_id: str, workflow_type: str, step: str, execution_url: str) -> str:
    where = f" at step '{escape(step)}'" if step else ""
    return (
        f":rotating_light: *{incident.number}* opened: {workflow_type or 'workflow'} `{request_id}` failed{where}. "
        f"Assigned to {incident.assignment_group or 'nobody'}, impact {incident.impact} / urgency {incident.urgency}.\n"
        f"<{incident.url}|{incident.number} in ServiceNow> · <{execution_url}|execution in Temporal>"
    )
