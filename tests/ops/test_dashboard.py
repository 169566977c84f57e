"""The Grafana dashboard (deploy/grafana/changeloop.json) queries only metrics that somebody exports.

The exported names come from the code: ops/metrics.py's counters (the worker) and the shim's /metrics rendering
(starter/shim/ops.py), plus a short list of Temporal SDK metrics that the last test confirms by running a worker on
the same Prometheus exporter the worker uses (ops.metrics.prometheus_runtime) against the dev server.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from ops.metrics import COUNTERS, GAUGES, HISTOGRAMS, declare, prometheus_runtime
from starter.shim.ops import RequestMetrics
from tests.ops.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "changeloop.json"

# Temporal SDK metrics the dashboard may query, with their Prometheus types. The SDK's core defines them (prefix
# `temporal_`, no `_total` suffix, durations in milliseconds by default); test_sdk_metric_names_are_what_a_worker_
# exports below checks each one against a live worker.
SDK_METRICS = {
    "temporal_activity_schedule_to_start_latency": "histogram",
    "temporal_workflow_task_schedule_to_start_latency": "histogram",
    "temporal_worker_task_slots_used": "gauge",
    "temporal_num_pollers": "gauge",
    "temporal_workflow_completed": "counter",
    "temporal_workflow_failed": "counter",
    "temporal_activity_execution_failed": "counter",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def changeloop_metrics() -> dict[str, str]:
    """Name -> type of every changeloop metric the worker and the shim export, read from the code."""
    exported = dict.fromkeys(COUNTERS, "counter")  # the worker: every one goes through the SDK meter as a counter
    exported |= dict.fromkeys(HISTOGRAMS, "histogram")  # and the change durations, recorded by its interceptor
    exported |= dict.fromkeys(GAUGES, "gauge")  # and what the instance says of its rate limit rule

    async def no_app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("render() only")

    shim_text = RequestMetrics(no_app).render()  # HELP and TYPE lines even before any request
    exported |= dict(re.findall(r"^# TYPE (\S+) (\S+)$", shim_text, flags=re.MULTILINE))
    return exported


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["definition"]


def metric_names(expr: str) -> set[str]:
    """The metric selectors of a PromQL expression: strings, label matchers, ranges and groupings taken out,
    what remains that is not a function call, a keyword or a number is a metric name."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,[^)]*\)", r" \1 ", text)  # Grafana's variable query
    names = set()
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        following = text[match.end() :].lstrip()
        word = match.group(0)
        if following.startswith("(") or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def resolve(name: str, known: dict[str, str]) -> str | None:
    """The exported metric a series name belongs to (`x_bucket` of histogram `x`), or None."""
    if name in known:
        return name if known[name] != "histogram" else None  # a histogram is queried by its series, not its name
    for suffix in HISTOGRAM_SERIES:
        base = name.removesuffix(suffix)
        if base != name and known.get(base) == "histogram":
            return base
    return None


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def test_promql_metric_names_are_found_and_nothing_else() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, task_queue) (rate(temporal_activity_schedule_to_start_latency_bucket"
        '{task_queue=~"$task_queue"}[$__rate_interval]))) / on (x) group_left(y) max(changeloop_a) - sum(b offset 1h)'
    )
    assert metric_names(expr) == {"temporal_activity_schedule_to_start_latency_bucket", "changeloop_a", "b"}
    assert metric_names("label_values(temporal_num_pollers, task_queue)") == {"temporal_num_pollers"}


def test_every_metric_the_dashboard_queries_is_exported(dashboard: dict[str, Any]) -> None:
    known = changeloop_metrics() | SDK_METRICS
    unknown = {
        (title, name)
        for title, expr in expressions(dashboard)
        for name in metric_names(expr)
        if not resolve(name, known)
    }
    assert unknown == set(), "queried but exported by nobody (or a histogram queried without _bucket/_sum/_count)"


def test_every_changeloop_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    known = changeloop_metrics()
    charted = {resolve(name, known) for _, expr in expressions(dashboard) for name in metric_names(expr)}
    assert set(known) - charted == set()
    assert (
        set(SDK_METRICS) - {resolve(name, SDK_METRICS) for _, e in expressions(dashboard) for name in metric_names(e)}
        == set()
    )


def test_the_dashboard_picks_its_prometheus_from_a_variable(dashboard: dict[str, Any]) -> None:
    document = dashboard
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}", variable["name"]
    ids = [panel["id"] for panel in panels(document)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(document):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_sdk_latency_panels_are_in_milliseconds(dashboard: dict[str, Any]) -> None:
    """The SDK's exporter reports durations in ms unless told otherwise (ops/metrics.py does not)."""
    for panel in panels(dashboard):
        exprs = [t["expr"] for t in panel.get("targets", [])]
        if any("temporal_" in e and "_latency_bucket" in e for e in exprs):
            assert panel["fieldConfig"]["defaults"]["unit"] == "ms", panel["title"]


# -- the SDK's names, from a live worker --------------------------------------------------------------------------------
@activity.defn(name="dashboard_probe_step")
async def probe_step(fail: bool) -> str:
    if fail:
        raise ApplicationError("the probe's activity fails once", non_retryable=True)
    return "done"


@workflow.defn(name="DashboardProbeWorkflow")
class ProbeWorkflow:
    @workflow.run
    async def run(self, fail: bool) -> str:
        return str(
            await workflow.execute_activity(
                probe_step,
                fail,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        )


def exported_types(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))


async def test_sdk_metric_names_are_what_a_worker_exports(temporal_env: WorkflowEnvironment) -> None:
    """One workflow succeeds and one fails on a worker whose runtime is the worker's own exporter: every SDK name
    above appears with its type, and so does every changeloop counter once declared."""
    address = f"127.0.0.1:{free_port()}"
    runtime = prometheus_runtime(address)
    declare(runtime.metric_meter)
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host, namespace=temporal_env.client.namespace, runtime=runtime
    )
    queue = f"dashboard-{uuid.uuid4().hex[:8]}"
    # No sandbox: this workflow only exercises the metrics; the product's workflows run sandboxed elsewhere.
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ProbeWorkflow],
        activities=[probe_step],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        assert await client.execute_workflow(ProbeWorkflow.run, False, id=f"{queue}-ok", task_queue=queue) == "done"
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(ProbeWorkflow.run, True, id=f"{queue}-fail", task_queue=queue)
        wanted = SDK_METRICS | dict.fromkeys(COUNTERS, "counter")
        deadline = time.monotonic() + 15
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                text = (await http.get(f"http://{address}/metrics")).text
                found = exported_types(text)
                missing = {name: kind for name, kind in wanted.items() if found.get(name) != kind}
                if not missing or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)  # polling the endpoint until the exporter shows every name, with a deadline
    assert missing == {}, f"not exported as typed: {missing}"
    buckets = re.findall(r'^temporal_activity_schedule_to_start_latency_bucket\{[^}]*le="([\d.]+)"', text, re.M)
    assert max(map(float, buckets)) >= 1000, "schedule-to-start buckets are not in milliseconds any more"
