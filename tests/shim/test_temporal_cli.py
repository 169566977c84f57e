"""The README's `temporal workflow update|query|signal` lines work as written against a waiting change, on a cluster
the operator declares to authorize who may signal (CHANGELOOP_TEMPORAL_AUTHORIZES_DECISIONS; on in `changeloop dev`).
Where it is off, the same lines prove nothing: tests/security/test_approvals.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import httpx
import pytest

from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.conftest import venv_binary
from tests.shim.test_gate import _finished, _start_maintenance_change


@pytest.fixture
def shim_settings(settings: Settings) -> Settings:
    """This module's worker trusts the cluster to authorize signals, as `changeloop dev` and the demo do."""
    return settings.model_copy(
        update={"task_queue": f"shim-{uuid.uuid4().hex[:10]}", "temporal_authorizes_decisions": True}
    )


def _temporal(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    address = ["--address", settings.temporal_address, "--namespace", settings.temporal_namespace]
    return subprocess.run([venv_binary("temporal"), *args, *address], capture_output=True, text=True, timeout=60)


async def test_readme_update_and_query_commands_decide_the_gate(
    api: httpx.AsyncClient, worker: None, sn_client: ServiceNowClient, shim_settings: Settings
) -> None:
    change = await _start_maintenance_change(api, sn_client, "shim gate: approved with the temporal CLI")
    workflow_id = change["execution_id"]

    query = await asyncio.to_thread(
        _temporal, shim_settings, "workflow", "query", "--workflow-id", workflow_id, "--name", "status", "-o", "json"
    )
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["queryResult"][0]["gate"]["status"] == "waiting"

    stranger = json.dumps({"approver": "mallory", "decision": "approved"})
    refused = await asyncio.to_thread(
        _temporal, shim_settings, "workflow", "update", "execute", "--workflow-id", workflow_id, "--name", "decide",
        "--input", stranger,
    )  # fmt: skip
    assert refused.returncode != 0 and "not an approver" in refused.stderr + refused.stdout

    empty = json.dumps({"approver": "", "decision": "approved"})
    refused = await asyncio.to_thread(
        _temporal, shim_settings, "workflow", "update", "execute", "--workflow-id", workflow_id, "--name", "decide",
        "--input", empty,
    )  # fmt: skip
    assert refused.returncode != 0 and "approver must not be empty" in refused.stderr + refused.stdout

    decision = json.dumps({"approver": "alice.ops", "decision": "approved", "comments": "ok"})
    accepted = await asyncio.to_thread(
        _temporal, shim_settings, "workflow", "update", "execute", "--workflow-id", workflow_id, "--name", "decide",
        "--input", decision,
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert "alice.ops" in accepted.stdout

    status = await _finished(api, workflow_id)
    assert status["result"]["outcome"] == "successful"
    assert status["gate"]["proof"]["kind"] == "temporal"
