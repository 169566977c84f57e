"""/healthz tells a load balancer whether Temporal answers; /openapi.json describes the contract."""

from __future__ import annotations

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from config.registry import Registry
from config.settings import Settings
from starter.shim.app import create_app
from tests.helpers import refused_port
from tests.shim.conftest import LiveServer


async def test_healthz_is_200_without_auth_when_temporal_answers(live_shim: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_shim.url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}  # and nothing else: no address, no version, no exception


async def test_healthz_is_503_when_temporal_is_unreachable(shim_settings: Settings, registry: Registry) -> None:
    with refused_port() as port:
        dead = f"127.0.0.1:{port}"
        client = await Client.connect(dead, lazy=True, data_converter=pydantic_data_converter)
        app = create_app(shim_settings.model_copy(update={"temporal_address": dead}), client, registry)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shim") as http:
            response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    assert dead not in response.text


async def test_openapi_names_every_contract_route(api: httpx.AsyncClient) -> None:
    for path in ("/openapi.json", "/docs"):
        assert (await api.get(path, headers={"Authorization": ""})).status_code == 401
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) >= {
        "/api/servicenow/change",
        "/api/servicenow/approval",
        "/api/servicenow/change/event",
        "/api/flows/{flow}/run",
        "/api/executions/{executionId}/status",
        "/api/executions/{executionId}/approve",
        "/api/executions/{executionId}/reject",
        "/healthz",
    }
    change = paths["/api/servicenow/change"]["post"]
    assert "202" in change["responses"]
