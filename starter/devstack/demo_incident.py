"""The demo's incident scenario (`make demo`, after the successful change): a standard change on payments-api runs
`demo_failing_migration`, whose 'migrate schema' step fails. The change closes unsuccessful naming the incident that
the failure opened - impact 1 / urgency 1 from payments-api's criticality, assigned to Payments SRE - and the incident
is printed as ServiceNow holds it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from servicenow.change_request import ChangeState, ChangeType
from servicenow.client import BasicAuth, ServiceNowClient
from servicenow.query import Query
from starter.devstack.dev import ADMIN_USER, DevConfig
from starter.devstack.walkthrough import DemoFailed, schedule_preapproved, wait_for_state

CATEGORY = "changeloop-demo-failure"  # config/runbooks.yaml maps it to demo_failing_migration
CI = "payments-api"
INCIDENT_FIELDS = [
    "number", "state", "short_description", "impact", "urgency", "priority", "assignment_group", "cmdb_ci",
    "correlation_id", "correlation_display", "description",
]  # fmt: skip


async def incident_scenario(config: DevConfig, console: Any, within: float = 60.0) -> dict[str, Any]:
    async with ServiceNowClient(config.sandbox_url, BasicAuth(*ADMIN_USER)) as sn:
        ci = await sn.first("cmdb_ci", Query().eq("name", CI), fields=["sys_id"])
        if ci is None:
            raise DemoFailed(f"no CI {CI} in the sandbox")
        change = await sn.create(
            "change_request",
            {
                "type": ChangeType.STANDARD.value,
                "state": ChangeState.NEW.value,
                "category": CATEGORY,
                "cmdb_ci": ci["sys_id"],
                "short_description": f"Demo: migrate the {CI} orders schema (fails on purpose)",
            },
        )
        number, sys_id = change["number"], change["sys_id"]
        console.print(f"\nIncident scenario: opened {number} on {CI} (category {CATEGORY}); its runbook will fail")
        await schedule_preapproved(sn, sys_id)
        try:
            ticket = await wait_for_state(sn, sys_id, {ChangeState.CLOSED.value, ChangeState.CANCELED.value}, within)
        except TimeoutError as exc:
            raise DemoFailed(f"incident scenario: {exc}") from exc
        incident = await _incident_of(sn, f"change-{number}", within)
    _print(console, number, ticket, incident)
    problems = _check(ticket, incident)
    if problems:
        raise DemoFailed("incident scenario: " + "; ".join(problems))
    return incident


async def _incident_of(sn: ServiceNowClient, workflow_id: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        found = await sn.first(
            "incident", Query().eq("correlation_id", workflow_id), fields=INCIDENT_FIELDS, display_value="all"
        )
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise DemoFailed(f"no incident with correlation_id {workflow_id} after {within:.0f} s")
        await asyncio.sleep(0.5)


def _shown(value: Any) -> str:
    """display_value=all gives {"display_value","value"}: show the label, and the code when it differs."""
    if isinstance(value, dict):
        label, code = str(value.get("display_value", "")), str(value.get("value", ""))
        return label if label == code or not code or len(code) == 32 else f"{label} ({code})"
    return str(value)


def _value(record: dict[str, Any], field: str) -> str:
    value = record.get(field, "")
    return str(value.get("value", "")) if isinstance(value, dict) else str(value)


def _print(console: Any, number: str, ticket: dict[str, Any], incident: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(
        f"   {number} closed {ticket.get('close_code')}; close notes:\n     "
        + str(ticket.get("close_notes", "")).replace("\n", "\n     ")
    )
    table = Table(title=f"{_shown(incident['number'])} in ServiceNow", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field in INCIDENT_FIELDS:
        table.add_row(field, _shown(incident.get(field, "")))
    console.print(table)
    console.print(f"   close the loop: changeloop incident resolve {_shown(incident['number'])} --fixed-by <execution>")


def _check(ticket: dict[str, Any], incident: dict[str, Any]) -> list[str]:
    number = _value(incident, "number")
    problems = []
    if (_value(incident, "impact"), _value(incident, "urgency")) != ("1", "1"):
        problems.append(f"impact/urgency {_value(incident, 'impact')}/{_value(incident, 'urgency')}, not 1/1")
    group = incident.get("assignment_group")
    if not isinstance(group, dict) or group.get("display_value") != "Payments SRE":
        problems.append(f"assigned to {_shown(group)}, not Payments SRE")
    if ticket.get("close_code") != "unsuccessful" or number not in str(ticket.get("close_notes", "")):
        problems.append("the change's close notes do not name the incident")
    return problems
