"""The outbound Business Rules: each shipped script and its emulation agree; approved changes are POSTed to the shim.

The other rules' behaviour (approval decided, change event, incident resolved) is tests/sandbox/test_sandbox_outbound_rules.py.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from sandbox.instance import Instance
from sandbox.outbound_rules import CHANGE_FIELDS, REST_MESSAGE, REST_METHOD, RULES, SHIM_URL, OutboundRule, Write
from sandbox.seed import seed_sys_id
from sandbox.store import Store
from tests.sandbox.support import PEOPLE, Capture, poll, result

SCRIPTS = Path(__file__).resolve().parents[2] / "deploy" / "servicenow"
TEMPLATE = seed_sys_id("std_change_producer_version", "Restart application service")
PAYMENTS_API = seed_sys_id("cmdb_ci", "payments-api")
TOKEN = "br-test-token"


def point_rule_at(control: httpx.Client, url: str) -> None:
    control.put("/config", json={"webhook_url": url, "webhook_token": TOKEN}).raise_for_status()


def _tags(script: str) -> dict[str, str]:
    return dict(re.findall(r"^ \* @(\w+) +(.+?)\s*$", script, re.MULTILINE))


def _endpoint_path(script: str, number: str) -> str:
    """The path the script appends to shimUrl, with any expression (the record's number) filled in."""
    expression = re.search(r"setEndpoint\(shimUrl \+ (.+)\);", script)
    assert expression is not None
    parts = [p.strip() for p in expression.group(1).split(" + ")]
    return "".join(p.strip("'") if p.startswith("'") else number for p in parts)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.script_file)
def test_script_and_emulation_agree(rule: OutboundRule) -> None:
    """Trigger, table, URL path, body fields (in order), properties and REST message: the same in both."""
    script = (SCRIPTS / rule.script_file).read_text()
    tags = _tags(script)
    assert tags == {
        "name": rule.name,
        "table": rule.collection,
        "when": rule.when,
        "order": str(rule.order),
        "insert": str(rule.on_insert).lower(),
        "update": str(rule.on_update).lower(),
        "condition": rule.condition,
    }
    assert tuple(re.findall(r"^\s*body\.(\w+) = ", script, re.MULTILINE)) == rule.fields
    write = Write(
        previous=None, current={"number": "INC0010001", "sys_id": "x"}, journals={}, instance=Instance(Store())
    )
    assert _endpoint_path(script, "INC0010001") == rule.path(write)
    properties = set(re.findall(r"gs\.getProperty\('([\w.]+)'", script))
    assert properties == {SHIM_URL, rule.token_property}
    assert f"new sn_ws.RESTMessageV2('{REST_MESSAGE}', '{REST_METHOD}')" in script
    assert "executeAsync()" in script


def test_the_rules_cover_every_shipped_script() -> None:
    assert {r.script_file for r in RULES} == {p.name for p in SCRIPTS.glob("*.js")}


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
    assert tuple(sent["body"]) == CHANGE_FIELDS
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


def test_normal_change_is_posted_once_when_its_approvals_are_approved(
    api: httpx.Client, control: httpx.Client, capture: Capture
) -> None:
    """Through the approval flow: Assess approved by alice.ops, Authorize by carol.cab, then one POST."""
    point_rule_at(control, capture.url)
    change = result(api.post("/api/now/table/change_request", json={"short_description": "needs CAB"}), 201)
    control.put(f"/approvers/{change['number']}", json={"assess": ["alice.ops"], "authorize": ["carol.cab"]})
    path = f"/api/now/table/change_request/{change['sys_id']}"
    result(api.patch(path, json={"state": "-4"}))  # Request Approval
    for approver in ("alice.ops", "carol.cab"):
        query = f"sysapproval={change['sys_id']}^state=requested^approver.user_name={approver}"
        rows = result(api.get("/api/now/table/sysapproval_approver", params={"sysparm_query": query}))
        assert len(rows) == 1, approver
        url = f"/api/now/table/sysapproval_approver/{rows[0]['sys_id']}"
        result(httpx.patch(f"{api.base_url}{url}", json={"state": "approved"}, auth=PEOPLE[approver]))
    result(api.patch(path, json={"work_notes": "approved changes do not fire twice"}))
    outbound = poll(
        lambda: [
            m
            for m in control.get("/outbound").json()
            if m["rule"] == "changeloop: send approved change" and m["body"]["number"] == change["number"]
        ]
    )
    poll(lambda: all(m["done"] for m in control.get("/outbound").json()))
    changes = [r for r in capture.received if r["path"] == "/api/servicenow/change"]
    assert len(outbound) == 1 and len(changes) == 1
    assert (changes[0]["body"]["approval"], changes[0]["body"]["state"]) == ("approved", "-2")


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
