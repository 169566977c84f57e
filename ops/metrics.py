"""Metrics: the SDK's runtime metrics and changeloop's own, on one Prometheus endpoint per worker.

Our counters go through the Temporal SDK's metric meter, not a second metrics library: workflow code uses
`workflow.metric_meter()` (replay-safe - a replayed history does not count twice), everything else the runtime's
meter. So one scrape of the worker's endpoint (CHANGELOOP_METRICS_ADDRESS, :9464 in docker-compose) returns both
`temporal_*` (task latencies, poller counts, schedule-to-start, sticky cache ...) and the `changeloop_*` below.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

CHANGES_STARTED = "changeloop_changes_started"
CHANGES_CLOSED = "changeloop_changes_closed"
HOSTS_PATCHED = "changeloop_hosts_patched"
HOSTS_ROLLED_BACK = "changeloop_hosts_rolled_back"
HOSTS_FAILED = "changeloop_hosts_failed"
INCIDENTS_OPENED = "changeloop_incidents_opened"
SERVICENOW_CALLS = "changeloop_servicenow_calls"
CHANGE_IMPLEMENT_SECONDS = "changeloop_change_implement_seconds"
CHANGE_CLOSE_SECONDS = "changeloop_change_close_seconds"
SERVICENOW_RATELIMIT_LIMIT = "changeloop_servicenow_ratelimit_limit"

# name -> (labels, meaning): the README's metrics table is this dict.
COUNTERS: Mapping[str, tuple[str, str]] = {
    CHANGES_STARTED: ("", "change workflows started"),
    CHANGES_CLOSED: ("outcome", "change workflows finished: successful, unsuccessful, no_runbook, rejected, ..."),
    HOSTS_PATCHED: ("", "hosts patched and healthy (PatchHostWorkflow outcome patched)"),
    HOSTS_ROLLED_BACK: ("", "hosts rolled back to their snapshot after a failed patch or health check"),
    HOSTS_FAILED: ("", "hosts that could not be patched nor rolled back: a human must look"),
    INCIDENTS_OPENED: ("", "incidents created in ServiceNow (a POST to the incident table that succeeded)"),
    SERVICENOW_CALLS: ("method, table, status", "ServiceNow HTTP calls by HTTP status (or transport_error)"),
}


# name -> (labels, meaning) of the histograms, recorded in seconds from a change workflow's start (its webhook or
# poll) by the workflow interceptor (ops/interceptors.py) on the workflow's replay-safe meter.
HISTOGRAMS: Mapping[str, tuple[str, str]] = {
    CHANGE_IMPLEMENT_SECONDS: ("", "seconds from the change workflow's start to the ticket in Implement"),
    CHANGE_CLOSE_SECONDS: ("outcome", "seconds from the change workflow's start to its end, by outcome"),
}
# name -> (labels, meaning) of the gauges: what the instance last said about the integration user's rate limit rule
# (`X-RateLimit-Limit` and `X-RateLimit-Rule` on every call a rule matches). With the calls counter, a dashboard
# shows the headroom: the limit less the calls of the last hour.
GAUGES: Mapping[str, tuple[str, str]] = {
    SERVICENOW_RATELIMIT_LIMIT: (
        "rule",
        "requests per hour the instance's rate limit rule allows the integration user",
    ),
}
# A change waits for approvals, windows and holds: from a second to days.
DURATION_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    4 * 3600.0,
    12 * 3600.0,
    86400.0,
    7 * 86400.0,
)


def prometheus_runtime(address: str) -> Runtime:
    """A runtime whose metrics are served at http://<address>/metrics. Fails at once if the port is taken."""
    overrides = {name: list(DURATION_BUCKETS) for name in HISTOGRAMS}
    config = PrometheusConfig(bind_address=address, histogram_bucket_overrides=overrides)
    return Runtime(telemetry=TelemetryConfig(metrics=config))


def _table(path: str) -> str:
    # /api/now/table/change_request/<sys_id> -> change_request; /oauth_token.do -> oauth. Bounded label values.
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[:3] == ["api", "now", "table"]:
        return parts[3]
    return "oauth" if path.startswith("/oauth_token") else "other"


class CountingTransport(httpx.AsyncBaseTransport):
    """Wraps the ServiceNow client's HTTP transport and counts every call by status: servicenow/ stays free of
    Temporal, and retries inside the client are counted one by one (each is a real call the instance saw)."""

    def __init__(self, meter: MetricMeter, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        # The same descriptions as `declare`: a counter created twice with two descriptions is exported as two series.
        self.calls = meter.create_counter(SERVICENOW_CALLS, COUNTERS[SERVICENOW_CALLS][1])
        self.incidents = meter.create_counter(INCIDENTS_OPENED, COUNTERS[INCIDENTS_OPENED][1])
        self.rate_limit = meter.create_gauge(SERVICENOW_RATELIMIT_LIMIT, GAUGES[SERVICENOW_RATELIMIT_LIMIT][1])

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        labels = {"method": request.method, "table": _table(request.url.path)}
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError:
            self.calls.add(1, labels | {"status": "transport_error"})
            raise
        self.calls.add(1, labels | {"status": str(response.status_code)})
        if request.method == "POST" and labels["table"] == "incident" and response.status_code == 201:
            self.incidents.add(1)
        limit = response.headers.get("X-RateLimit-Limit", "")
        if limit.isdigit():  # only a call that a rule matched names the rule
            rule = response.headers.get("X-RateLimit-Rule", "")
            if rule:
                self.rate_limit.set(int(limit), {"rule": rule})
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def declare(meter: MetricMeter) -> None:
    """Every changeloop counter at 0, so a dashboard or alert finds each name from the worker's first scrape on."""
    for name, (_, meaning) in COUNTERS.items():
        meter.create_counter(name, meaning).add(0)
