"""Secrets stay in the worker's environment: nothing of them reaches workflow inputs, results or history."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.client import Client

from config.settings import Settings
from tests.changes import Changes, start
from workflows.flow.models import FlowRun

pytestmark = pytest.mark.usefixtures("worker")


def _payload_texts(node: Any) -> Iterator[str]:
    """Every payload's data, decoded: payloads sit base64-encoded under "data" in the history JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "data" and isinstance(value, str):
                yield base64.b64decode(value).decode(errors="replace")
            else:
                yield from _payload_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _payload_texts(item)


async def test_no_secret_appears_in_the_history_of_a_change_or_a_flow(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(template="Restart application service")
    handle = await start(temporal_client, settings, change["number"])
    await handle.result()
    flow = await temporal_client.start_workflow(
        "FlowRunWorkflow",
        FlowRun(flow="echo_flow", inputs={"message": "x"}),
        id=f"flow-echo_flow-{uuid.uuid4()}",
        task_queue=settings.task_queue,
    )
    await flow.result()

    assert settings.webhook_token and settings.servicenow_password
    password = settings.servicenow_password.get_secret_value()
    secrets = {
        "webhook token": settings.webhook_token.get_secret_value(),
        "basic auth header": base64.b64encode(f"{settings.servicenow_username}:{password}".encode()).decode(),
        "user:password": f"{settings.servicenow_username}:{password}",
    }
    for workflow_id in (handle.id, f"runbook-{change['number']}", flow.id, f"{flow.id}-runbook"):
        history = (await temporal_client.get_workflow_handle(workflow_id).fetch_history()).to_json()
        text = history + "\n".join(_payload_texts(json.loads(history)))
        assert change["number"] in text or "echo_flow" in text, "payloads were decoded"
        for name, value in secrets.items():
            assert value not in text, f"{name} found in the history of {workflow_id}"
