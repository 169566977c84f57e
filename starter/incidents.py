"""From an incident number to its incident workflow, and the `resolve` update: shared by the CLI and the shim.

The incident's `correlation_id` is the failed workflow's ID (docs/architecture.md, "Contract"), so its workflow is
`incident-for-<correlation_id>`; no extra search attribute is needed. A caller that already has the correlation_id
(the ServiceNow Business Rule sends it) skips the ServiceNow look-up.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client

from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from workflows.incident.models import (
    CORRELATION_DISPLAY,
    UPDATE_RESOLVE,
    IncidentStatus,
    ResolveIncident,
    incident_workflow_id,
)

UPDATE_TIMEOUT = timedelta(seconds=30)


class IncidentLookupError(LookupError):
    """No such incident, or not one that changeloop opened."""


async def incident_workflow_for(settings: Settings, number: str, correlation_id: str = "") -> str:
    if correlation_id:
        return incident_workflow_id(correlation_id)
    async with ServiceNowClient.from_settings(settings) as sn:
        found = await sn.first(
            "incident", Query().eq("number", number), fields=["correlation_id", "correlation_display"]
        )
    if found is None:
        raise IncidentLookupError(f"no incident {number} in {settings.servicenow_url}")
    correlation = str(found.get("correlation_id") or "")
    if not correlation or found.get("correlation_display") != CORRELATION_DISPLAY:
        raise IncidentLookupError(f"{number} was not opened by changeloop (no changeloop correlation_id)")
    return incident_workflow_id(correlation)


async def resolve_incident(client: Client, workflow_id: str, resolution: ResolveIncident) -> IncidentStatus:
    """The validated `resolve` update: answers once the incident is resolved in ServiceNow."""
    handle = client.get_workflow_handle(workflow_id)
    status: IncidentStatus = await handle.execute_update(
        UPDATE_RESOLVE, resolution, result_type=IncidentStatus, rpc_timeout=UPDATE_TIMEOUT
    )
    return status
