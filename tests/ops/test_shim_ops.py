"""The shim's operations endpoints: /readyz and /metrics, no token needed (probes and scrapers)."""

from __future__ import annotations

import httpx
from temporalio.client import Client

from config.registry import Registry
from config.settings import Settings
from starter.shim.app import create_app
from tests.conftest import OPERATOR_TOKEN


async def test_readyz_needs_temporal_and_a_loaded_registry(
    ops_settings: Settings, temporal_client: Client, ops_registry: Registry
) -> None:
    ready = create_app(ops_settings, temporal_client, ops_registry)
    empty = create_app(ops_settings, temporal_client, Registry(source="empty.yaml"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ready), base_url="http://shim") as http:
        answer = await http.get("/readyz")
        assert answer.status_code == 200 and answer.json()["runbooks"] == len(ops_registry.runbooks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=empty), base_url="http://shim") as http:
        answer = await http.get("/readyz")
        assert answer.status_code == 503 and "no runbook" in answer.json()["detail"]


async def test_metrics_count_requests_by_route_template_and_status(
    ops_settings: Settings, temporal_client: Client, ops_registry: Registry
) -> None:
    app = create_app(ops_settings, temporal_client, ops_registry)
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}  # reading executions needs execution:read
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shim") as http:
        await http.get("/healthz")
        await http.get("/api/executions/change-CHG9000001/status", headers=auth)  # 404: no such execution
        await http.get("/api/executions/change-CHG9000002/status", headers=auth)
        await http.post("/api/servicenow/change", json={})  # 401 before routing
        text = (await http.get("/metrics")).text
    assert 'changeloop_shim_requests{method="GET",route="/healthz",status="200"} 1' in text
    route = "/api/executions/{executionId}/status"
    assert f'changeloop_shim_requests{{method="GET",route="{route}",status="404"}} 2' in text
    assert 'changeloop_shim_requests{method="POST",route="/api/*",status="401"} 1' in text
    assert "CHG9000001" not in text, "route templates, never raw IDs"
