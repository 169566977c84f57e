"""Changes as tests make them: the test registry, change requests created in the sandbox the way ServiceNow users
do, and a start through the same path the shim and the poll use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from workflows.change.models import ChangeInput, ChangeResult
from workflows.gate.models import DecideInput, Decision
from workflows.gate.signing import signed
from workflows.starts import start_change

TEST_REGISTRY = Path(__file__).with_name("runbooks.yaml")


class Changes:
    """Creates change requests in the sandbox the way ServiceNow users do, and reads them back."""

    def __init__(self, sn: ServiceNowClient) -> None:
        self.sn = sn

    async def create(
        self,
        *,
        template: str | None = None,
        category: str = "",
        ci: str = "payments-api",
        approved: bool = True,
        number: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "standard",
            "short_description": f"test change {uuid.uuid4().hex[:8]}",
            "category": category,
        }
        if number:  # a sandbox of its own numbers from CHG0030004 too: its changes need numbers of their own
            body["number"] = number
        if template:
            found = await self.sn.first("std_change_producer_version", Query().eq("name", template), fields=["sys_id"])
            assert found, f"template {template!r} is not seeded"
            body["std_change_producer_version"] = found["sys_id"]
        if ci:
            found = await self.sn.first("cmdb_ci", Query().eq("name", ci), fields=["sys_id"])
            assert found, f"CI {ci!r} is not seeded"
            body["cmdb_ci"] = found["sys_id"]
        record = await self.sn.create("change_request", body)
        if approved:
            # A standard change is pre-approved: New -> Scheduled with approval approved.
            record = await self.sn.update("change_request", record["sys_id"], {"state": "-2", "approval": "approved"})
        return record

    async def get(self, sys_id: str) -> dict[str, Any]:
        return await self.sn.get("change_request", sys_id, exclude_reference_link=True)

    async def work_notes(self, sys_id: str) -> list[str]:
        query = Query().eq("element_id", sys_id).eq("element", "work_notes").order_by("sys_created_on")
        return [str(r["value"]) for r in await self.sn.list("sys_journal_field", query, fields=["value"])]


async def start(client: Client, settings: Settings, number: str, source: str = "webhook") -> WorkflowHandle[Any, Any]:
    workflow_id, run_id, _ = await start_change(client, settings, ChangeInput(number=number, source=source))  # type: ignore[arg-type]
    return client.get_workflow_handle(workflow_id, run_id=run_id, result_type=ChangeResult)


def signed_decision(
    settings: Settings, execution_id: str, approver: str, decision: Decision, comments: str = ""
) -> DecideInput:
    """A decision as the shim sends it for an authenticated principal: signed with the decision key."""
    assert settings.decision_key is not None
    unsigned = DecideInput(approver=approver, decision=decision, comments=comments)
    return signed(settings.decision_key.get_secret_value(), unsigned, execution_id, datetime.now(UTC))
