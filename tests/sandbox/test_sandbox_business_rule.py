"""The outbound Business Rule: approved changes are POSTed to the shim, with the same JSON as the real script."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx

from sandbox.business_rules import WEBHOOK_FIELDS
from sandbox.seed import seed_sys_id
from tests.sandbox.support import Capture, poll, result

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "servicenow" / "changeloop_business_rule.js"
TEMPLATE = seed_sys_id("std_change_producer_version", "Restart application service")
PAYMENTS_API = seed_sys_id("cmdb_ci", "payments-api")
TOKEN = "br-test-token"


def point_rule_at(control: httpx.Client, url: str) -> None:
    control.put("/config", json={"webhook_url": url, "webhook_token": TOKEN}).raise_for_status()


def test_script_and_emulation_send_the_identical_field_set() -> None:
    script_fields = re.findall(r"^\s*body\.(\w+) = ", SCRIPT.read_text(), re.MULTILINE)
    assert tuple(script_fields) == WEBHOOK_FIELDS


def test_standard_change_scheduled_from_template_is_posted_with_bearer_token(
    api: httpx.Client, control: httpx.Client, capture: Capture
) -> None:
    point_rule_at(control, capture.url)
    body = {"type": "standard", "state": "-2", "std_change_producer_version": TEMPLATE, "cmdb_ci": PAYMENTS_API}
    change = result(api.post("/api/now/table/change_request", json={**body, "category": "Software"}), 201)
    poll(lambda: capture.received)
    sent = capture.received[0]
    assert sent["path"] == "/api/servicenow/change"
    assert sent["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert tuple(sent["body"]) == WEBHOOK_FIELDS
    assert sent["body"] == {
        "sys_id": change["sys_id"],
        "number": change["number"],
        "state": "-2",
        "type": "standard",
        "approval": "approved",
        "category": "Software",
        "short_description": "",
        "cmdb_ci": PAYMENTS_API,
        "cmdb_ci_name": "payments-api",
        "std_change_producer_version": TEMPLATE,
        "std_change_producer_version_name": "Restart application service",
    }


def test_normal_change_is_posted_once_when_approval_becomes_approved(
    api: httpx.Client, control: httpx.Client, capture: Capture
) -> None:
    point_rule_at(control, capture.url)
    change = result(api.post("/api/now/table/change_request", json={"short_description": "needs CAB"}), 201)
    path = f"/api/now/table/change_request/{change['sys_id']}"
    result(api.patch(path, json={"approval": "requested", "state": "-4"}))
    result(api.patch(path, json={"approval": "approved"}))
    result(api.patch(path, json={"work_notes": "approved changes do not fire twice"}))
    outbound = poll(lambda: [m for m in control.get("/outbound").json() if m["body"]["number"] == change["number"]])
    poll(lambda: all(m["done"] for m in control.get("/outbound").json()))
    assert len(outbound) == 1 and len(capture.received) == 1
    assert capture.received[0]["body"]["approval"] == "approved"


def test_nothing_is_posted_without_approval(api: httpx.Client, control: httpx.Client, capture: Capture) -> None:
    point_rule_at(control, capture.url)
    before = len(control.get("/outbound").json())
    result(api.post("/api/now/table/change_request", json={"short_description": "not approved"}), 201)
    assert len(control.get("/outbound").json()) == before and capture.received == []


def test_unreachable_target_never_blocks_the_table_api(api: httpx.Client, control: httpx.Client) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    point_rule_at(control, f"http://127.0.0.1:{port}/api/servicenow/change")
    started = time.monotonic()
    change = result(api.post("/api/now/table/change_request", json={"type": "standard", "state": "-2"}), 201)
    assert time.monotonic() - started < 0.5
    retried = poll(
        lambda: [
            m for m in control.get("/outbound").json() if m["body"]["number"] == change["number"] and m["attempts"] >= 2
        ]
    )
    assert retried[0]["status"] is None and "Connect" in retried[0]["error"]
