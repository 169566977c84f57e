"""Reconciliation fixtures: a worker with its own task queue, state dir and Slack capture, test CIs under a unique
name prefix, and sources that read JSON files the test writes.

The session sandbox is shared: each test declares its own CIs (prefix `rc<hex>-`) and scopes the run's CMDB pull to
that prefix, so the seeded drift (for the demo) and other tests' records are never touched.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from pydantic import SecretStr
from temporalio.client import Client

from config.reconcile import DEFAULT_CONFIG, ReconcileConfig, config_digest
from config.registry import load_registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import TEST_REGISTRY
from worker import build_worker
from workflows.reconcile.models import ReconcileInput, ReconcileSummary

# Prints a JSON file: a `command` source reading what the test wrote (any argv printing a JSON list will do).
CAT = [sys.executable, "-c", "import sys; sys.stdout.write(open(sys.argv[1]).read())"]


@pytest.fixture(scope="session")
def reconcile_settings(settings: Settings, sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    configs = tmp_path_factory.mktemp("reconcile-configs")
    (configs / "default.yaml").write_text(DEFAULT_CONFIG.read_text())  # what the schedule names
    return settings.model_copy(
        update={
            "task_queue": "reconcile-test",
            "reconcile_state_dir": tmp_path_factory.mktemp("reconcile-state"),
            # The worker reads each run's config from here: a test writes `<name>.yaml` and starts the run by name.
            "reconcile": configs,
            "slack_webhook_url": SecretStr(f"{sandbox_url}/sandbox/slack"),
        }
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def reconcile_worker(temporal_client: Client, reconcile_settings: Settings, sandbox: Any) -> AsyncIterator[Any]:
    async with ServiceNowClient.from_settings(reconcile_settings) as sn:
        async with build_worker(temporal_client, reconcile_settings, load_registry(TEST_REGISTRY), sn) as running:
            yield running


class Scenario:
    """One test's slice of the world: CIs it declares, hosts it makes live, and runs over them."""

    def __init__(self, sn: ServiceNowClient, client: Client, settings: Settings, tmp: Path) -> None:
        self.sn, self.client, self.settings, self.tmp = sn, client, settings, tmp
        self.prefix = f"rc{uuid.uuid4().hex[:8]}-"

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"

    async def group(self, name: str) -> str:
        found = await self.sn.first("sys_user_group", Query().eq("name", name), fields=["sys_id"])
        assert found, f"group {name!r} is not seeded"
        return str(found["sys_id"])

    async def ci(self, short: str, ci_class: str = "cmdb_ci_linux_server", **fields: str) -> dict[str, Any]:
        body = {"name": self.name(short), "serial_number": self.name(f"SN-{short}"), "install_status": "1"} | fields
        return await self.sn.create(ci_class, body)

    def host(self, short: str, ip: str = "", os: str = "Linux Ubuntu", **extra: str) -> dict[str, str]:
        return {"name": self.name(short), "serial_number": self.name(f"SN-{short}"), "ip_address": ip, "os": os} | extra

    def source(self, source_name: str, hosts: list[dict[str, str]], **options: Any) -> dict[str, Any]:
        """A `command` source printing `hosts`, keyed by serial_number."""
        path = self.tmp / f"{source_name}.json"
        path.write_text(json.dumps(hosts))
        return {
            "name": source_name,
            "kind": "command",
            "argv": [*CAT, str(path)],
            "key_field": "serial_number",
            "ci_class": "cmdb_ci_linux_server",
            "mapping": {"key": "serial_number", "attributes": {"os_version": "os_version"}},
            "attempts": 1,
        } | options

    def config(self, *sources: dict[str, Any], **options: Any) -> ReconcileConfig:
        body = {"sources": list(sources), "cmdb": {"name_prefix": self.prefix}} | options
        return ReconcileConfig.model_validate(body)

    def publish(self, config: ReconcileConfig) -> str:
        """Put `config` where the worker reads its configs (CHANGELOOP_RECONCILE, a directory); answer its name."""
        assert self.settings.reconcile is not None
        name = f"{self.prefix.rstrip('-')}-{uuid.uuid4().hex[:6]}"
        text = yaml.safe_dump(config.model_dump(mode="json", by_alias=True))
        (Path(self.settings.reconcile) / f"{name}.yaml").write_text(text)
        return name

    async def run(self, config: ReconcileConfig, *, dry_run: bool = False) -> ReconcileSummary:
        name = self.publish(config)
        summary: ReconcileSummary = await self.client.execute_workflow(
            "ReconcileWorkflow",
            ReconcileInput(config=name, digest=config_digest(config), dry_run=dry_run),
            id=f"reconcile-test-{self.prefix}{uuid.uuid4().hex[:6]}",
            task_queue=self.settings.task_queue,
            result_type=ReconcileSummary,
        )
        return summary

    async def cis(self) -> list[dict[str, Any]]:
        # cmdb_ci_server, not cmdb_ci: a table answers only its own fields, and `os` is a server's
        return await self.sn.list(
            "cmdb_ci_server", Query().startswith("name", self.prefix), exclude_reference_link=True
        )

    async def incidents_for(self, ci_sys_id: str) -> list[dict[str, Any]]:
        query = Query().eq("correlation_id", f"drift-{ci_sys_id}")
        return await self.sn.list("incident", query, exclude_reference_link=True)

    async def slack_messages(self) -> list[str]:
        async with httpx.AsyncClient() as http:
            messages = (await http.get(f"{self.settings.servicenow_url}/sandbox/slack")).json()
        return [str(m.get("text", "")) for m in messages]


@pytest_asyncio.fixture(loop_scope="session")
async def scenario(
    sn_client: ServiceNowClient,
    temporal_client: Client,
    reconcile_settings: Settings,
    reconcile_worker: Any,
    tmp_path: Path,
) -> Scenario:
    return Scenario(sn_client, temporal_client, reconcile_settings, tmp_path)
