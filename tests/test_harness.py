"""The test harness itself: the environments the other tests stand on are what they claim to be."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.helpers import wait_for


@workflow.defn
class SleepsADay:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(timedelta(days=1))
        return "woke"


async def test_the_dev_server_has_the_custom_search_attributes_registered(temporal_env: WorkflowEnvironment):
    answer = await temporal_env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal_env.client.namespace)
    )
    assert answer.custom_attributes["ChangeNumber"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert answer.custom_attributes["CmdbCi"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST
    assert answer.custom_attributes["Runbook"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert answer.custom_attributes["TicketState"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


async def test_the_time_skipping_server_runs_a_day_long_timer_in_moments(time_skipping_env: WorkflowEnvironment):
    started = time.monotonic()
    async with Worker(
        time_skipping_env.client,
        task_queue="harness",
        workflows=[SleepsADay],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        result = await time_skipping_env.client.execute_workflow(
            SleepsADay.run, id=f"harness-{uuid.uuid4()}", task_queue="harness"
        )
    assert result == "woke"
    assert time.monotonic() - started < 10


async def test_settings_reach_the_sandbox_and_the_dev_server(settings: Settings, sandbox_url: str, temporal_env):
    assert settings.servicenow_url == sandbox_url
    assert settings.temporal_address == temporal_env.client.service_client.config.target_host
    assert settings.webhook_token is not None
    async with ServiceNowClient.from_settings(settings) as sn:
        assert await sn.count("sys_user_group") > 0


async def test_wait_for_returns_the_first_truthy_value_of_a_sync_or_async_predicate():
    calls = []

    def sync_predicate() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert await wait_for(sync_predicate, timeout=5, interval=0.001) == 3

    async def async_predicate() -> str:
        await asyncio.sleep(0)
        return "ready"

    assert await wait_for(async_predicate, timeout=1) == "ready"


async def test_wait_for_raises_naming_the_condition_when_the_deadline_passes():
    def never_ready() -> bool:
        return False

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="never_ready"):
        await wait_for(never_ready, timeout=0.1, interval=0.01)
    assert time.monotonic() - started < 1
