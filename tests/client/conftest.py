"""Client-test helpers: records of one test's own, recognisable by a unique correlation_id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
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


class SandboxAccess:
    """The sandbox's row-level ACLs (`/sandbox/acl`): rows of a table the integration user may not read."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def hide(self, table: str, sys_ids: list[str], user: str = "changeloop.integration") -> None:
        rules = [{"table": table, "user": user, "sys_ids": sys_ids}]
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            (await http.put("/sandbox/acl", json={"rules": rules})).raise_for_status()

    async def clear(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            (await http.delete("/sandbox/acl")).raise_for_status()


@pytest_asyncio.fixture(loop_scope="session")
async def sandbox_acl(sandbox_url: str) -> AsyncIterator[SandboxAccess]:
    """Hide rows from the integration user for one test; every rule is lifted when it ends."""
    access = SandboxAccess(sandbox_url)
    try:
        yield access
    finally:
        await access.clear()
