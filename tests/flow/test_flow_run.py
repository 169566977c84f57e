"""Flow runs: a registry runbook started with named inputs; the result is posted to the caller, signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from activities.flow.callbacks import SIGNATURE_HEADER
from config.settings import Settings
from tests.helpers import wait_for
from workflows.flow.models import FlowRun
from workflows.runbook.models import RunbookResult, RunbookStatus

pytestmark = pytest.mark.usefixtures("worker")


class CallbackReceiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    r = CallbackReceiver()
    yield r
    r.server.shutdown()


async def test_flow_runs_with_named_inputs_and_posts_a_signed_result(
    temporal_client: Client, settings: Settings, receiver: CallbackReceiver
) -> None:
    handle = await temporal_client.start_workflow(
        "FlowRunWorkflow",
        FlowRun(flow="echo_flow", inputs={"message": "hello", "repeat": "2"}, callback_url=receiver.url),
        id=f"flow-echo_flow-{uuid.uuid4()}",
        task_queue=settings.task_queue,
        result_type=RunbookResult,
    )
    result = await handle.result()

    assert result.succeeded and result.steps[0].detail == "hellohello"
    status = await handle.query("status", result_type=RunbookStatus)
    assert status.progress.done == 1 and status.result is not None
    await wait_for(lambda: receiver.received, timeout=10, message="callback received")
    headers, body = receiver.received[0]
    # The callback key is its own secret (not the webhook token): a receiver holds nothing that calls the shim.
    secret = settings.callback_signing_key.get_secret_value() if settings.callback_signing_key else ""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    payload = json.loads(body)
    assert payload["executionId"] == handle.id and payload["succeeded"] is True


async def test_flow_refuses_an_unsafe_input_value_without_running_it(
    temporal_client: Client, settings: Settings, receiver: CallbackReceiver
) -> None:
    handle = await temporal_client.start_workflow(
        "FlowRunWorkflow",
        FlowRun(flow="echo_flow", inputs={"message": "hi; rm -rf /"}, callback_url=receiver.url),
        id=f"flow-echo_flow-{uuid.uuid4()}",
        task_queue=settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "not allowed" in str(failure.value.cause)
    await wait_for(lambda: receiver.received, timeout=10, message="failure callback received")
    payload = json.loads(receiver.received[0][1])
    assert payload["succeeded"] is False and payload["failed_step"] == "echo"
