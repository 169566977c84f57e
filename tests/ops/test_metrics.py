"""Observability: the worker's Prometheus endpoint after real changes ran, the log context, the health probes.

The Prometheus runtime is process-global state of the SDK's core, so this test runs its client and worker on a
Runtime of its own (on a free port) and leaves the session's default runtime alone.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from typing import Any

import httpx
import pytest
import structlog
from temporalio.client import Client, WorkflowFailureError

from config.registry import Registry
from config.settings import Settings
from ops import metrics
from ops.connect import connect
from ops.health import HealthServer
from ops.interceptors import change_number_of
from ops.logs import configure_logging
from ops.metrics import CountingTransport, prometheus_runtime
from sandbox.ratelimit import rule_sys_id
from servicenow.client import ServiceNowClient
from tests.changes import Changes, start
from tests.helpers import wait_for
from tests.ops.conftest import free_port
from worker import build_worker
from workflows.wave.models import CiRef, HostReport, PatchHostInput, patch_host_workflow_id


def samples(text: str, name: str) -> dict[str, float]:
    """Every sample of metric `name`: {'{labels}': value}."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if match:
            found[match.group(1) or "{}"] = float(match.group(2))
    return found


def total(text: str, name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples(text, name).items() if all(w in k for w in wanted))


async def scrape_when(address: str, counter: str) -> str:
    """The metrics text once `counter` is above 0, else "" (for wait_for)."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"http://{address}/metrics")).text
    return text if total(text, counter) > 0 else ""


async def patch_host(client: Client, settings: Settings, host: str) -> HostReport:
    number = f"CHG9{uuid.uuid4().int % 1_000_000:06d}"
    ci = CiRef(sys_id=uuid.uuid4().hex, name=host, sys_class_name="cmdb_ci_linux_server")
    return await client.execute_workflow(
        "PatchHostWorkflow",
        PatchHostInput(change_number=number, ci=ci, target_level="2025.06"),
        id=patch_host_workflow_id(number, host),
        task_queue=settings.task_queue,
        result_type=HostReport,
    )


async def test_worker_metrics_endpoint_counts_changes_hosts_incidents_and_servicenow_calls(
    ops_settings: Settings, ops_registry: Registry, sn_client: ServiceNowClient, sandbox_url: str, sandbox: Any
) -> None:
    address = f"127.0.0.1:{free_port()}"
    runtime = prometheus_runtime(address)
    client = await connect(ops_settings, runtime=runtime)
    changes = Changes(sn_client)
    fleet = httpx.AsyncClient(base_url=f"{sandbox_url}/fleet", timeout=10)
    try:
        await fleet.post("/reset")
        (await fleet.put("/hosts/fleet-19/faults", json={"unhealthy_after_patch": True})).raise_for_status()
        transport = CountingTransport(runtime.metric_meter)
        async with ServiceNowClient.from_settings(ops_settings, transport=transport) as sn:
            async with build_worker(client, ops_settings, ops_registry, sn):
                good = await changes.create(category="WhereAmI", ci="payments-api")
                await (await start(client, ops_settings, good["number"])).result()
                bad = await changes.create(category="OpsFailing", ci="payments-api")
                with pytest.raises(WorkflowFailureError):
                    await (await start(client, ops_settings, bad["number"])).result()
                assert (await patch_host(client, ops_settings, "fleet-18")).outcome == "patched"
                assert (await patch_host(client, ops_settings, "fleet-19")).outcome == "rolled_back"
                # The incident workflow outlives the failed change (ABANDON): its POST may land after the change closed.
                text = await wait_for(
                    lambda: scrape_when(address, metrics.INCIDENTS_OPENED), timeout=30, message="incident counted"
                )
    finally:
        await fleet.post("/reset")
        await fleet.aclose()

    for name in metrics.COUNTERS:
        assert samples(text, name), f"{name} missing from the endpoint"
    assert total(text, metrics.CHANGES_STARTED) == 2
    assert total(text, metrics.CHANGES_CLOSED, outcome="successful") == 1
    assert total(text, metrics.CHANGES_CLOSED, outcome="unsuccessful") == 1
    assert total(text, metrics.HOSTS_PATCHED) == 1
    assert total(text, metrics.HOSTS_ROLLED_BACK) == 1
    assert total(text, metrics.INCIDENTS_OPENED) == 1, "the failed change opened one incident"
    # Seconds to Implement and to the end, per change, in the buckets ops/metrics.py sets for change durations.
    assert total(text, f"{metrics.CHANGE_IMPLEMENT_SECONDS}_count") == 2
    assert total(text, f"{metrics.CHANGE_CLOSE_SECONDS}_count", outcome="successful") == 1
    assert total(text, f"{metrics.CHANGE_CLOSE_SECONDS}_count", outcome="unsuccessful") == 1
    assert total(text, f"{metrics.CHANGE_CLOSE_SECONDS}_sum") > 0
    buckets = re.findall(rf'^{metrics.CHANGE_IMPLEMENT_SECONDS}_bucket\{{[^}}]*le="([\d.]+)"', text, re.M)
    assert {float(b) for b in buckets} >= {1.0, 60.0, 3600.0, 86400.0}, buckets
    assert total(text, metrics.SERVICENOW_CALLS, table="change_request", status="200") > 0
    # Our counters share the endpoint with the SDK's own runtime metrics.
    assert samples(text, "temporal_workflow_completed") or samples(
        text, "temporal_workflow_task_execution_latency_count"
    )
    assert total(text, "temporal_activity_execution_failed") >= 1


def test_change_number_is_read_from_every_workflow_id_shape() -> None:
    assert change_number_of("change-CHG0030001") == "CHG0030001"
    assert change_number_of("runbook-CHG0030001") == "CHG0030001"
    assert change_number_of("wave-CHG0030001") == "CHG0030001"
    assert change_number_of("patch-CHG0030001-pay-web-01") == "CHG0030001"
    assert change_number_of("incident-for-change-CHG0030001") == "CHG0030001"
    assert change_number_of("flow-restart-1234") == ""
    assert change_number_of(None) == ""


async def test_activity_logs_carry_workflow_id_and_change_number(
    temporal_client: Client, ops_settings: Settings, ops_registry: Registry, sn_client: ServiceNowClient, sandbox: Any
) -> None:
    """No activity binds these itself: the worker's interceptor does, for every activity."""
    stream = io.StringIO()
    configure_logging([], "INFO", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    try:
        async with ServiceNowClient.from_settings(ops_settings) as sn:
            async with build_worker(temporal_client, ops_settings, ops_registry, sn):
                change = await Changes(sn_client).create(category="OpsFailing", ci="payments-api")
                with pytest.raises(WorkflowFailureError):
                    await (await start(temporal_client, ops_settings, change["number"])).result()
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("event") == "activity.failed" and line.get("activity") == "run_step"]
    assert failed, stream.getvalue()[-2000:]
    assert failed[0]["workflow_id"] == f"runbook-{change['number']}"
    assert failed[0]["change_number"] == change["number"]
    assert failed[0]["task_queue"] == ops_settings.task_queue
    assert "disk full" in failed[0]["error"]


async def test_worker_health_endpoints_answer_for_probes() -> None:
    state = {"live": True}

    async def live() -> tuple[bool, str]:
        return state["live"], "worker"

    async def ready() -> tuple[bool, str]:
        raise RuntimeError("Temporal unreachable")

    async with HealthServer("127.0.0.1:0", live, ready) as server, httpx.AsyncClient(timeout=5) as http:
        base = f"http://127.0.0.1:{server.port}"
        assert (await http.get(f"{base}/healthz")).json() == {"status": "ok", "detail": "worker"}
        not_ready = await http.get(f"{base}/readyz")
        assert not_ready.status_code == 503 and "Temporal unreachable" in not_ready.json()["detail"]
        assert (await http.get(f"{base}/other")).status_code == 404
        state["live"] = False
        assert (await http.get(f"{base}/healthz")).status_code == 503


async def test_the_rate_limit_rule_the_instance_names_is_exported_as_a_gauge(
    ops_settings: Settings, sandbox_url: str, sandbox: Any
) -> None:
    """The headroom panel's limit: X-RateLimit-Limit of the rule that matched the integration user's last call."""
    address = f"127.0.0.1:{free_port()}"
    runtime = prometheus_runtime(address)
    rule = {"name": "changeloop-integration", "apply_to": "user", "user": "changeloop.integration", "limit": 500}
    async with httpx.AsyncClient(base_url=f"{sandbox_url}/sandbox", timeout=10) as control:
        (await control.put("/rate-limits", json={"window_seconds": 3600, "rules": [rule]})).raise_for_status()
        try:
            transport = CountingTransport(runtime.metric_meter)
            async with ServiceNowClient.from_settings(ops_settings, transport=transport) as sn:
                await sn.list("cmn_location", fields=["name"], limit=1)

                async def limit_shown() -> str:
                    async with httpx.AsyncClient(timeout=5) as http:
                        text = (await http.get(f"http://{address}/metrics")).text
                    return text if samples(text, metrics.SERVICENOW_RATELIMIT_LIMIT) else ""

                text = await wait_for(limit_shown, timeout=15, message="the rate limit gauge is exported")
        finally:
            (await control.put("/rate-limits", json={"window_seconds": 3600, "rules": []})).raise_for_status()

    (labels, limit), *others = samples(text, metrics.SERVICENOW_RATELIMIT_LIMIT).items()
    assert others == [] and limit == 500
    assert f'rule="{rule_sys_id("changeloop-integration")}"' in labels
