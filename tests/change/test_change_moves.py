"""Moving a change along its model (issue 13 item 8, issue 14 item 4): a change type or state changeloop cannot move
fails at once with an error naming it, never retried; transitions go through the Change Management API's next
states where the instance has it (one PATCH per move), through the Table API otherwise."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from activities.catalog import central_activities
from config.registry import load_registry
from config.settings import Settings
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.change.close_workflow import CloseChangeWorkflow
from tests.changes import TEST_REGISTRY, Changes
from tests.conftest import ADMIN_USER
from workflows.change.models import ChangeTicket, CloseInput


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def close_workers(temporal_client: Client, settings: Settings, sandbox: Any) -> AsyncIterator[dict[str, str]]:
    """Two workers: one that uses the Change Management API (auto, the sandbox has it), one that never does."""
    queues = {"change_api": "moves-change-api", "table_api": "moves-table-api"}
    modes = {"change_api": "auto", "table_api": "off"}
    registry = load_registry(TEST_REGISTRY)
    async with (
        ServiceNowClient.from_settings(settings) as sn_api,
        ServiceNowClient.from_settings(settings) as sn_table,
    ):
        workers = []
        for route, sn in (("change_api", sn_api), ("table_api", sn_table)):
            own = settings.model_copy(update={"task_queue": queues[route], "change_api": modes[route]})
            workers.append(
                Worker(
                    temporal_client,
                    task_queue=own.task_queue,
                    workflows=[CloseChangeWorkflow],
                    activities=central_activities(temporal_client, own, registry, sn),
                )
            )
        async with workers[0], workers[1]:
            yield queues


async def _close(client: Client, queue: str, ticket: ChangeTicket) -> tuple[BaseException | None, int]:
    handle = await client.start_workflow(
        CloseChangeWorkflow.run,
        CloseInput(ticket=ticket, close_code="successful", close_notes="done"),
        id=f"close-test-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
    )
    error: BaseException | None = None
    try:
        await handle.result()
    except WorkflowFailureError as failure:
        error = failure.cause
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in (await handle.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    return error, max(attempts, default=0)


async def _custom_type_change(sandbox_url: str) -> ChangeTicket:
    """A change of a type the instance has and changeloop's model does not ("expedited"), in New."""
    async with ServiceNowClient(sandbox_url, BasicAuth(*ADMIN_USER)) as admin:
        ci = await admin.first("cmdb_ci", Query().eq("name", "payments-api"), fields=["sys_id"])
        assert ci is not None
        made = await admin.create(
            "change_request",
            {"type": "expedited", "short_description": f"custom type {uuid.uuid4().hex[:6]}", "cmdb_ci": ci["sys_id"]},
        )
    return ChangeTicket(sys_id=made["sys_id"], number=made["number"], state=made["state"], type="expedited")


@pytest.mark.parametrize(
    ("route", "error_type", "says"),
    [
        ("table_api", "UnknownChangeModel", "change type 'expedited' is not one of changeloop's change models"),
        ("change_api", "InvalidTicketState", "the instance offers no move towards"),
    ],
)
async def test_a_change_type_changeloop_cannot_move_fails_at_once_naming_it(
    temporal_client: Client, close_workers: dict[str, str], sandbox_url: str, route: str, error_type: str, says: str
) -> None:
    ticket = await _custom_type_change(sandbox_url)

    error, attempts = await _close(temporal_client, close_workers[route], ticket)

    assert isinstance(error, ActivityError) and isinstance(error.cause, ApplicationError), error
    assert error.cause.type == error_type and error.cause.non_retryable
    assert says in error.cause.message
    assert attempts == 1, "retried: a retry cannot teach it the change model"


async def test_closing_through_the_change_api_asks_next_states_and_patches_once_per_move(
    temporal_client: Client, close_workers: dict[str, str], changes: Changes, sandbox_control: Any
) -> None:
    change = await changes.create(template="Restart application service")
    await changes.sn.update("change_request", change["sys_id"], {"state": "-1"})  # Implement
    ticket = ChangeTicket(sys_id=change["sys_id"], number=change["number"], state="-1")
    patches_before = await sandbox_control.requests_to("PATCH", "change_request")

    error, _ = await _close(temporal_client, close_workers["change_api"], ticket)

    assert error is None
    record = await changes.get(change["sys_id"])
    assert (record["state"], record["close_code"], record["close_notes"]) == ("3", "successful", "done")
    # Implement -> Review -> Closed: two moves, one PATCH each (the sandbox counts API calls by their table too).
    assert await sandbox_control.requests_to("PATCH", "change_request") - patches_before == 2
