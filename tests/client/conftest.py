"""Client-test helpers: records of one test's own, recognisable by a unique correlation_id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from servicenow.client import ServiceNowClient

MakeIncidents = Callable[[int], Awaitable[list[dict[str, Any]]]]


@pytest_asyncio.fixture(loop_scope="session")
async def scope_id() -> str:
    """A value no other test's records carry: tests query by it, so the shared instance never confuses them."""
    return f"clienttest-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(loop_scope="session")
async def make_incidents(sn_client: ServiceNowClient, scope_id: str) -> AsyncIterator[MakeIncidents]:
    """Create `n` incidents with correlation_id = scope_id (numbered short descriptions); deleted afterwards."""
    created: list[str] = []

    async def make(n: int) -> list[dict[str, Any]]:
        records = await asyncio.gather(
            *(
                sn_client.create(
                    "incident",
                    {"short_description": f"{scope_id} #{i:02d}", "correlation_id": scope_id, "impact": "3"},
                )
                for i in range(n)
            )
        )
        created.extend(r["sys_id"] for r in records)
        return list(records)

    yield make
    for sys_id in created:
        try:
            await sn_client.delete("incident", sys_id)
        except Exception:  # a test may have deleted it already
            pass
