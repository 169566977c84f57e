"""The Slack confirmation of a closed change (CHANGELOOP_SLACK_CHANGE_CLOSED): number, outcome, runbook, links to
the ticket and the execution, through the sandbox's Slack capture; off by default; a Slack that refuses never fails
the change. Each case has a worker of its own on its own task queue (the setting is the worker's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError

from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.changes import Changes, start
from worker import build_worker
from workflows.change.models import ChangeOutcome, ChangeStatus


@pytest.fixture(scope="module")
def slack_settings(settings: Settings, sandbox_url: str) -> dict[str, Settings]:
    on = {"slack_change_closed": True}
    return {
        "on": settings.model_copy(
            update=on
            | {"task_queue": "slack-closed-on", "slack_webhook_url": SecretStr(f"{sandbox_url}/sandbox/slack")}
        ),
        # A webhook the instance does not serve (as a revoked one): refused with a 4xx, never retried.
        "refused": settings.model_copy(
            update=on
            | {"task_queue": "slack-closed-refused", "slack_webhook_url": SecretStr(f"{sandbox_url}/sandbox/gone")}
        ),
        "off": settings.model_copy(
            update={"task_queue": "slack-closed-off", "slack_webhook_url": SecretStr(f"{sandbox_url}/sandbox/slack")}
        ),
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def slack_workers(
    temporal_client: Client, slack_settings: dict[str, Settings], registry: Any, sandbox: Any
) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for settings in slack_settings.values():
            sn = await stack.enter_async_context(ServiceNowClient.from_settings(settings))
            await stack.enter_async_context(build_worker(temporal_client, settings, registry, sn))
        yield


async def _messages(sandbox_url: str, number: str) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as http:
        found = (await http.get(f"{sandbox_url}/sandbox/slack")).json()
    return [str(m["text"]) for m in found if number in str(m.get("text", ""))]


async def _closed(client: Client, settings: Settings, number: str) -> ChangeStatus:
    handle = await start(client, settings, number)
    try:
        await handle.result()
    except WorkflowFailureError:
        pass
    return await handle.query("status", result_type=ChangeStatus)


async def test_a_closed_change_is_confirmed_in_slack_with_its_outcome_runbook_and_links(
    temporal_client: Client,
    slack_settings: dict[str, Settings],
    slack_workers: None,
    changes: Changes,
    sandbox_url: str,
) -> None:
    settings = slack_settings["on"]
    change = await changes.create(template="Restart application service")

    status = await _closed(temporal_client, settings, change["number"])

    assert status.result is not None and status.result.outcome == ChangeOutcome.SUCCESSFUL
    assert status.closed_notice == "sent"
    [text] = await _messages(sandbox_url, change["number"])
    assert f"*{change['number']}* closed *successful* by runbook `restart_app_service`" in text
    assert "Runbook 'restart_app_service' completed: 3 step(s) succeeded." in text, "the close notes' first line"
    assert f"{sandbox_url}/nav_to.do?uri=change_request.do?sys_id={change['sys_id']}" in text
    assert f"/workflows/change-{change['number']}/" in text and settings.ui_url in text


async def test_an_unsuccessful_close_is_confirmed_too(
    temporal_client: Client,
    slack_settings: dict[str, Settings],
    slack_workers: None,
    changes: Changes,
    sandbox_url: str,
) -> None:
    change = await changes.create(category="FailingLab")  # fails, no incident (production: false)

    status = await _closed(temporal_client, slack_settings["on"], change["number"])

    assert status.result is not None and status.result.outcome == ChangeOutcome.UNSUCCESSFUL
    [text] = await _messages(sandbox_url, change["number"])
    assert f":x: *{change['number']}* closed *unsuccessful* by runbook `failing_lab_runbook`" in text
    assert "failed at step 'migrate schema'" in text


async def test_a_refused_slack_post_never_fails_the_change(
    temporal_client: Client,
    slack_settings: dict[str, Settings],
    slack_workers: None,
    changes: Changes,
    sandbox_url: str,
) -> None:
    change = await changes.create(template="Restart application service")

    status = await _closed(temporal_client, slack_settings["refused"], change["number"])

    assert status.result is not None and status.result.outcome == ChangeOutcome.SUCCESSFUL
    assert status.closed_notice.startswith("failed: Slack webhook answered 4"), status.closed_notice
    ticket = await changes.get(change["sys_id"])
    assert (ticket["state"], ticket["close_code"]) == ("3", "successful")
    assert await _messages(sandbox_url, change["number"]) == []


async def test_the_confirmation_is_off_unless_asked_for(
    temporal_client: Client,
    slack_settings: dict[str, Settings],
    slack_workers: None,
    changes: Changes,
    sandbox_url: str,
) -> None:
    change = await changes.create(template="Restart application service")

    status = await _closed(temporal_client, slack_settings["off"], change["number"])

    assert status.closed_notice == "off"
    assert await _messages(sandbox_url, change["number"]) == []
