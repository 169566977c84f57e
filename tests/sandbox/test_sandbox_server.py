"""Running the sandbox: free ports, async use, a file database that survives restarts, reseeding."""

from __future__ import annotations

from pathlib import Path

import httpx

from sandbox.server import SandboxConfig, SandboxServer
from tests.sandbox.support import result


async def test_async_context_manager_serves_on_a_free_port() -> None:
    async with SandboxServer(SandboxConfig(port=0, seed=False)) as server:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        async with httpx.AsyncClient(base_url=server.url, auth=("admin", "admin")) as client:
            response = await client.get("/api/now/table/cmdb_ci")
        assert response.json() == {"result": []}  # seed=False: an empty instance


def test_file_database_survives_a_restart_and_numbers_continue(tmp_path: Path) -> None:
    config = SandboxConfig(port=0, db_path=str(tmp_path / "sandbox.sqlite3"))
    with SandboxServer(config) as first:
        created = result(httpx.post(f"{first.url}/api/now/table/incident", json={}, auth=("admin", "admin")), 201)
    with SandboxServer(config) as second:
        again = httpx.get(f"{second.url}/api/now/table/incident/{created['sys_id']}", auth=("admin", "admin"))
        assert again.status_code == 200
        following = result(httpx.post(f"{second.url}/api/now/table/incident", json={}, auth=("admin", "admin")), 201)
        assert int(following["number"][3:]) == int(created["number"][3:]) + 1
        assert len(result(httpx.get(f"{second.url}/api/now/table/cmdb_ci_appl", auth=("admin", "admin")))) == 6


def test_reset_wipes_records_and_reseeds() -> None:
    with SandboxServer(SandboxConfig(port=0)) as server:
        auth = ("admin", "admin")
        result(httpx.post(f"{server.url}/api/now/table/change_request", json={}, auth=auth), 201)
        counts = httpx.post(f"{server.url}/sandbox/reset").json()["records"]
        assert counts["change_request"] == 3 and counts["cmdb_ci_appl"] == 6
        numbers = [r["number"] for r in result(httpx.get(f"{server.url}/api/now/table/change_request", auth=auth))]
        assert numbers == ["CHG0030001", "CHG0030002", "CHG0030003"]
