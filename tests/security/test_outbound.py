"""Issue 12, item 3: callbacks and HTTP steps reach only hosts the operator allows, and a failed callback says nothing
about its target (no status code, no body, no address): callbacks are no port scanner for the worker's network."""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client, WorkflowFailureError

from config.registry import load_registry
from config.settings import Settings
from ops import outbound
from starter.shim.app import create_app
from tests.conftest import OPERATOR_TOKEN
from tests.security.conftest import payload_texts
from workflows.flow.models import FlowRun
from workflows.runbook.models import RunbookStatus

pytestmark = pytest.mark.usefixtures("hardened")
BODY = "internal-page-body-7f1c"
# The receiver's status as a token of its own: the free port in the callback URL (say 41855) may contain the digits.
STATUS_418 = re.compile(r"(?<![\w.:])418(?![\w.])")


class Target:
    """An internal service that answers every POST with `status` and a body the caller must never see."""

    def __init__(self, status: int) -> None:
        self.hits = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                target.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(BODY.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def internal() -> Iterator[Target]:
    target = Target(418)
    yield target
    target.server.shutdown()


async def flow_failure(client: Client, settings: Settings, callback: str) -> tuple[str, RunbookStatus]:
    handle = await client.start_workflow(
        "FlowRunWorkflow",
        FlowRun(flow="grep_pattern", inputs={"pattern": "x"}, callback_url=callback),
        id=f"flow-grep_pattern-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    text = f"{failure.value} {failure.value.cause} {failure.value.cause.__cause__ if failure.value.cause else ''}"
    return text, await handle.query("status", result_type=RunbookStatus)


@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254", "[::1]", "localhost", "10.0.0.7", "2130706433"])
async def test_a_callback_to_a_local_or_metadata_address_is_refused_without_a_request(
    temporal_client: Client, hardened_settings: Settings, internal: Target, host: str
) -> None:
    port = internal.port if host in ("127.0.0.1", "localhost") else 80
    text, status = await flow_failure(temporal_client, hardened_settings, f"http://{host}:{port}/hook")
    assert "not an allowed destination" in text
    assert internal.hits == 0, "no request left the worker"
    assert BODY not in text and not STATUS_418.search(text) and status.result is not None and status.result.succeeded


async def test_a_failing_allowed_receiver_reports_no_status_code_nor_body(
    temporal_client: Client, settings: Settings, internal: Target, worker: Any
) -> None:
    """The session worker allows 127.0.0.0/8: the receiver is reached, answers 418 and a body; the run says only
    that the callback was not accepted."""
    handle = await temporal_client.start_workflow(
        "FlowRunWorkflow",
        FlowRun(flow="echo_flow", inputs={"message": "x"}, callback_url=f"http://127.0.0.1:{internal.port}/hook"),
        id=f"flow-echo_flow-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    history = (await handle.fetch_history()).to_json()
    payloads = "\n".join(payload_texts(json.loads(history)))
    assert internal.hits == 1
    text = f"{failure.value.cause} {failure.value.cause.__cause__ if failure.value.cause else ''}"
    assert "did not accept" in text
    for leak in (BODY, str(internal.port)):
        assert leak not in text
    assert not STATUS_418.search(text)
    assert BODY not in history + payloads
    assert not STATUS_418.search(payloads), "the status code is nowhere in what the run recorded"


async def test_an_http_step_to_loopback_is_refused_by_the_allowlist(
    temporal_client: Client, hardened_settings: Settings
) -> None:
    """`http://{host}:<port>/sandbox/health` with host 127.0.0.1 is a valid host name, and still not an allowed
    destination for this worker."""
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal_client.execute_workflow(
            "FlowRunWorkflow",
            FlowRun(flow="health_probe", inputs={"host": "127.0.0.1"}),
            id=f"flow-health_probe-{uuid.uuid4().hex[:8]}",
            task_queue=hardened_settings.task_queue,
        )
    assert "not an allowed destination" in str(failure.value.cause)


@pytest.fixture
def strict_settings(hardened_settings: Settings) -> Settings:
    return hardened_settings.model_copy(update={"task_queue": f"security-shim-{uuid.uuid4().hex[:8]}"})


@pytest.fixture
def strict_app(strict_settings: Settings, temporal_client: Client) -> FastAPI:
    return create_app(strict_settings, temporal_client, load_registry())


@pytest.mark.parametrize("host", ["127.0.0.1:9", "169.254.169.254", "[::ffff:127.0.0.1]", "intranet.example.com"])
async def test_the_shim_refuses_a_callback_url_whose_host_is_not_allowed(
    strict_app: FastAPI, strict_settings: Settings, temporal_client: Client, host: str
) -> None:
    token = OPERATOR_TOKEN  # running flows needs flow:run:<flow>; the Business Rules' token may not
    transport = httpx.ASGITransport(app=strict_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shim") as api:
        response = await api.post(
            "/api/flows/restart_app_service/run",
            json={"inputs": {"host": "payments-api"}, "callbackUrl": f"http://{host}/hook"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 422, response.text
    assert "callbackUrl" in response.json()["error"]["detail"]
    assert (await temporal_client.count_workflows(f"TaskQueue = '{strict_settings.task_queue}'")).count == 0


# -- the allowlist itself --------------------------------------------------------------------------------------------
async def test_a_listed_name_resolving_to_loopback_is_refused_unless_its_network_is_listed() -> None:
    """DNS says where a name points at the time of the call: `localhost` stands for any name rebound to 127.0.0.1."""
    by_name = outbound.Allowlist.parse(["localhost"])
    with pytest.raises(outbound.OutboundRefused):
        await outbound.check("http://localhost:8080/x", by_name)
    both = outbound.Allowlist.parse(["localhost", "127.0.0.0/8"])
    target = await outbound.check("http://localhost:8080/x?y=1", both)
    # The request goes to the address that was checked; the name rides in the Host header.
    assert ipaddress.ip_address(httpx.URL(target.url).host).is_loopback
    assert target.url.endswith(":8080/x?y=1") and target.host_header == "localhost:8080"


@pytest.mark.parametrize(
    "url",
    [
        "http://0.0.0.0/",
        "http://[::]/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.64.0.1/",
        "http://user:pw@203.0.113.9/",
        "ftp://203.0.113.9/",
        "http://unlisted.example.com/",
    ],
)
async def test_special_addresses_credentials_and_unlisted_names_are_refused(url: str) -> None:
    allow = outbound.Allowlist.parse(["203.0.113.0/24", "*.allowed.example"])
    with pytest.raises(outbound.OutboundRefused):
        await outbound.check(url, allow)


async def test_an_unlisted_name_is_refused_without_a_dns_query(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_dns(host: str, port: int) -> list[Any]:
        raise AssertionError(f"resolved {host}")

    monkeypatch.setattr(outbound, "_addresses", no_dns)
    with pytest.raises(outbound.OutboundRefused):
        await outbound.check("http://db.internal.corp/", outbound.Allowlist.parse(["api.example.com"]))


def test_an_empty_allowlist_allows_nothing() -> None:
    allow = outbound.Allowlist.parse([])
    assert not allow.name_listed("api.example.com")
    assert not allow.address_listed(ipaddress.ip_address("8.8.8.8"))
