"""Issue 12, item 4: secrets never leave the worker's process.

A real `changeloop worker` process holds a named secret (STEP_API_TOKEN) for one step. The step prints it in every
form a secret travels in (as is, base64, URL-safe base64, URL-encoded, inside a Basic credential, as bytes) and the
next step fails quoting it; the run is a change (work notes, close notes, an incident) and a flow with a callback.
Then nothing that left the process holds any of those forms: the histories read as JSON through the client (what
`temporal workflow show -o json` prints, payloads decoded), the status queries, the ticket's notes, the incident,
the callback body, and every line the worker process wrote, the Temporal SDK's stdlib log records included.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError

from config.settings import Settings
from ops.logs import configure_logging
from ops.scrub import REDACTED, Scrubber, WeakSecret, install
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import Changes, start
from tests.conftest import INTEGRATION_USER
from tests.helpers import wait_for
from tests.security.conftest import SECRET_NAME, WorkerProcess, payload_texts, strong_secret
from workflows.flow.models import FlowRun
from workflows.incident.models import incident_workflow_id
from workflows.runbook.models import RunbookStatus, runbook_workflow_id


def forms(secret: str) -> dict[str, str]:
    return {
        "as is": secret,
        "base64": base64.b64encode(secret.encode()).decode().rstrip("="),
        "url-safe base64": base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
        "url-encoded": quote(secret, safe=""),
        "basic credential": base64.b64encode(f"svc:{secret}".encode()).decode().rstrip("="),
    }


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Leak:
    """What one leaky run left behind, gathered from everywhere a text leaves the worker."""

    def __init__(self) -> None:
        self.places: dict[str, str] = {}

    def add(self, place: str, text: str) -> None:
        self.places[place] = self.places.get(place, "") + "\n" + text


@pytest.fixture(scope="module")
def step_secret() -> str:
    return strong_secret("stp")


@pytest.fixture(scope="module")
def process_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"task_queue": f"security-process-{uuid.uuid4().hex[:6]}", "webhook_token": None})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def leaky_run(
    temporal_client: Client,
    process_settings: Settings,
    security_registry_file: Path,
    step_secret: str,
    tmp_path_factory: pytest.TempPathFactory,
    sandbox: Any,
) -> AsyncIterator[tuple[Leak, dict[str, str]]]:
    webhook_token = strong_secret("whk")
    log = tmp_path_factory.mktemp("worker-process") / "worker.log"
    worker = WorkerProcess(
        process_settings,
        {
            "CHANGELOOP_TASK_QUEUE": process_settings.task_queue,
            "CHANGELOOP_RUNBOOKS": str(security_registry_file),
            "CHANGELOOP_SERVICENOW_USERNAME": INTEGRATION_USER[0],
            "CHANGELOOP_SERVICENOW_PASSWORD": INTEGRATION_USER[1],
            "CHANGELOOP_WEBHOOK_TOKEN": webhook_token,
            "CHANGELOOP_SECRET_NAMES": SECRET_NAME,
            SECRET_NAME: step_secret,
            "CHANGELOOP_OUTBOUND_ALLOW": "127.0.0.0/8",
            "CHANGELOOP_LOG_LEVEL": "INFO",
        },
        log,
    )
    receiver = Receiver()
    leak = Leak()
    await worker.start()
    try:
        await worker.polling(temporal_client)
        async with ServiceNowClient.from_settings(process_settings) as sn:
            changes = Changes(sn)
            change = await changes.create(category="SecLeaky")
            handle = await start(temporal_client, process_settings, change["number"])
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            flow = await temporal_client.start_workflow(
                "FlowRunWorkflow",
                FlowRun(flow="leaky", callback_url=receiver.url),
                id=f"flow-leaky-{uuid.uuid4().hex[:8]}",
                task_queue=process_settings.task_queue,
            )
            with pytest.raises(WorkflowFailureError):
                await flow.result()
            await wait_for(lambda: receiver.bodies, timeout=30, message="callback received")
            incident_id = incident_workflow_id(handle.id)
            number = await wait_for(lambda: _incident_number(sn, handle.id), timeout=60, message="incident opened")

            ids = [handle.id, runbook_workflow_id(change["number"]), flow.id, f"{flow.id}-runbook", incident_id]
            for workflow_id in ids:
                history = (await temporal_client.get_workflow_handle(workflow_id).fetch_history()).to_json()
                leak.add(f"history of {workflow_id}", history + "\n".join(payload_texts(json.loads(history))))
            for workflow_id in (runbook_workflow_id(change["number"]), flow.id):
                status = await temporal_client.get_workflow_handle(workflow_id).query(
                    "status", result_type=RunbookStatus
                )
                leak.add(f"status of {workflow_id}", status.model_dump_json())
            ticket = await changes.get(change["sys_id"])
            leak.add("work notes", "\n".join(await changes.work_notes(change["sys_id"])))
            leak.add("close notes", str(ticket.get("close_notes", "")))
            incident = await sn.first(
                "incident", Query().eq("number", number), fields=["short_description", "description"]
            )
            assert incident is not None
            leak.add("incident", json.dumps(incident))
            leak.add("callback body", b"\n".join(receiver.bodies).decode())
    finally:
        await worker.stop()
        receiver.server.shutdown()
    leak.add("worker log", log.read_text())
    yield leak, {"webhook": webhook_token}


async def _incident_number(sn: ServiceNowClient, failed_workflow_id: str) -> str:
    found = await sn.first("incident", Query().eq("correlation_id", failed_workflow_id), fields=["number"])
    return str(found["number"]) if found else ""


async def test_the_step_really_printed_the_secret_and_the_child_saw_no_worker_credentials(
    leaky_run: tuple[Leak, dict[str, str]],
) -> None:
    """The checks below could fail: the secret went into the step's output (now stars), the failure quoted it, the
    worker's stdlib records were written; and the child process had no worker credential to print."""
    leak, _ = leaky_run
    notes = leak.places["work notes"]
    assert f"token {REDACTED}" in notes and f"b64 {REDACTED}" in notes and f"quoted {REDACTED}" in notes
    assert "webhook token absent" in notes and "servicenow password absent" in notes
    assert "refused: Authorization: ***" in leak.places["close notes"]
    log = leak.places["worker log"]
    assert "Completing activity as failed" in log, "the SDK's stdlib records reached the captured log"
    assert REDACTED in log


@pytest.mark.parametrize(
    "place",
    [
        "history of change",
        "history of runbook",
        "history of flow",
        "history of incident",
        "status",
        "work notes",
        "close notes",
        "incident",
        "callback body",
        "worker log",
    ],
)
async def test_no_form_of_a_configured_secret_leaves_the_process(
    leaky_run: tuple[Leak, dict[str, str]], step_secret: str, place: str
) -> None:
    leak, others = leaky_run
    texts = {name: text for name, text in leak.places.items() if name.startswith(place)}
    assert texts, f"nothing gathered for {place}"
    secrets = {f"{SECRET_NAME} {form}": value for form, value in forms(step_secret).items()}
    secrets |= {f"webhook token {form}": value for form, value in forms(others["webhook"]).items()}
    secrets["ServiceNow Basic credential"] = base64.b64encode(":".join(INTEGRATION_USER).encode()).decode()
    secrets["ServiceNow password"] = INTEGRATION_USER[1]
    for name, text in texts.items():
        for what, value in secrets.items():
            assert value not in text, f"{what} found in {name}"


# -- start-up refusals -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variable", "message"),
    [("CHANGELOOP_WEBHOOK_TOKEN", "CHANGELOOP_WEBHOOK_TOKEN: shorter than 8"), (SECRET_NAME, "shorter than 8")],
)
async def test_a_short_secret_stops_the_worker_at_start(
    process_settings: Settings, tmp_path: Path, variable: str, message: str
) -> None:
    env = {"CHANGELOOP_TASK_QUEUE": f"never-{uuid.uuid4().hex[:6]}", "CHANGELOOP_SECRET_NAMES": SECRET_NAME}
    env |= {SECRET_NAME: strong_secret("ok"), variable: "abc"}
    worker = await WorkerProcess(process_settings, env, tmp_path / "worker.log").start()
    try:
        assert await worker.exit_code() != 0
    finally:
        await worker.stop()
    output = (tmp_path / "worker.log").read_text()
    assert message in output and "abc" not in output.replace(variable, "")


def test_a_short_secret_stops_the_shim_and_the_in_process_worker(settings: Settings) -> None:
    weak = settings.model_copy(update={"servicenow_password": type(settings.servicenow_password)("short")})
    with pytest.raises(WeakSecret, match="CHANGELOOP_SERVICENOW_PASSWORD"):
        install(weak)


# -- the scrubber itself -----------------------------------------------------------------------------------------------
SECRET = "s3cr3t-Value+/=x"


def test_every_form_of_a_secret_is_scrubbed_in_text_bytes_and_structures() -> None:
    scrubber = Scrubber([SECRET])
    scrubber.add_basic("svc", SECRET)
    for form in forms(SECRET).values():
        assert form not in scrubber.text(f"before {form} after")
    # Inside a longer base64 text at every byte offset (the secret's encoding depends on what precedes it).
    for prefix in ("", "a", "ab", "abc"):
        encoded = base64.b64encode(f"{prefix}{SECRET}suffix".encode()).decode()
        cleaned = scrubber.text(encoded)
        # What is left is the prefix's and the suffix's few characters around the stars: not the secret.
        assert REDACTED in cleaned and len(cleaned.replace(REDACTED, "")) <= 16, cleaned
    assert SECRET.encode() not in scrubber.bytes(b"raw " + SECRET.encode())
    nested = scrubber.value({"a": [SECRET, (1, SECRET.encode())], SECRET: {"b": RuntimeError(SECRET)}})
    assert SECRET not in repr(nested)


def test_objects_and_credential_assignments_are_scrubbed_whatever_the_value() -> None:
    scrubber = Scrubber([SECRET])

    class Opaque:
        def __str__(self) -> str:
            return f"Opaque({SECRET})"

    assert SECRET not in str(scrubber.value(Opaque()))
    text = scrubber.text("password=hunter22 api_key: 'k-123' Authorization: Bearer abc.def https://u:p4ss@host/x")
    assert "hunter22" not in text and "k-123" not in text and "abc.def" not in text and "p4ss" not in text


def test_stdlib_records_with_tracebacks_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    """The Temporal SDK logs activity failures through `logging` with exc_info: the same scrubber renders them."""
    import structlog

    try:
        configure_logging([SECRET], json=True)
        try:
            raise ValueError(f"refused token {SECRET}")
        except ValueError:
            logging.getLogger("temporalio.activity").warning("Completing activity as failed: %s", SECRET, exc_info=True)
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
    assert "Completing activity as failed" in err and "ValueError" in err
    assert SECRET not in err and base64.b64encode(SECRET.encode()).decode() not in err
