"""`ChangeNumber = '<number>'` - the search an auditor types into the Temporal UI - finds every workflow of a change:
the change itself, the runbook child where the steps ran, and the incident its failure opened. The children get the
attribute from the parent's start command (no upsert inside them: old histories replay unchanged)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from config.settings import Settings
from tests.changes import Changes
from tests.helpers import listed_for_change
from tests.incident.conftest import Incidents, fail_change
from workflows import search_attributes as sa
from workflows.incident.models import incident_workflow_id
from workflows.runbook.models import runbook_workflow_id


async def test_a_change_number_search_lists_the_change_its_runbook_and_its_incident(
    temporal_client: Client,
    incident_settings: Settings,
    incident_worker: Worker,
    changes: Changes,
    incidents: Incidents,
) -> None:
    handle, change, _ = await fail_change(temporal_client, incident_settings, changes, "payments-api")
    number = change["number"]
    await incidents.one_for(handle.id)  # the incident exists in ServiceNow, so its workflow has started
    expected = {handle.id, runbook_workflow_id(number), incident_workflow_id(handle.id)}

    found = await listed_for_change(temporal_client, number, expected)
    assert found.keys() == expected, "nothing of another change, nothing missing"

    for workflow_id in (runbook_workflow_id(number), incident_workflow_id(handle.id)):
        attributes = (await temporal_client.get_workflow_handle(workflow_id).describe()).typed_search_attributes
        assert attributes.get(sa.CHANGE_NUMBER) == number, workflow_id
        assert attributes.get(sa.CMDB_CI) == ["payments-api"], workflow_id
