"""The emulated Business Rules beyond "change approved": approval decided, change event, incident resolved; and
what they need installed (sys_script, sys_properties, the REST message), as the update set installs it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.outbound_rules import APPROVAL_FIELDS, EVENT_FIELDS, INCIDENT_FIELDS, RULES
from sandbox.seed import seed_sys_id
from tests.sandbox.support import ADMIN, Capture, approvals_of, decide, poll, posted_to, result

WEBHOOK_TOKEN = "webhook-test-token"
INCIDENT_TOKEN = "incident-test-token"
DATA_PLATFORM = seed_sys_id("sys_user_group", "Data Platform")


@pytest.fixture
def shim(control: httpx.Client, capture: Capture) -> Capture:
    config = {"shim_url": capture.base, "webhook_token": WEBHOOK_TOKEN, "incident_token": INCIDENT_TOKEN}
    control.put("/config", json=config).raise_for_status()
    return capture


def admin(api: httpx.Client) -> httpx.Client:
    return httpx.Client(base_url=str(api.base_url), auth=ADMIN, timeout=10)


def records(api: httpx.Client, table: str, query: str) -> list[dict[str, Any]]:
    with admin(api) as client:
        rows: list[dict[str, Any]] = result(client.get(f"/api/now/table/{table}", params={"sysparm_query": query}))
    return rows


def only_post(shim: Capture, path: str) -> dict[str, Any]:
    (sent,) = poll(lambda: posted_to(shim, path))
    return sent


def test_configuring_a_target_installs_the_rules_properties_and_rest_message(api: httpx.Client, shim: Capture) -> None:
    scripts = {r["name"]: r for r in records(api, "sys_script", "nameSTARTSWITHchangeloop:")}
    assert set(scripts) == {rule.name for rule in RULES}
    for rule in RULES:
        script = scripts[rule.name]
        assert (script["collection"], script["when"], script["active"], script["condition"]) == (
            rule.collection,
            "after",
            "true",
            rule.condition,
        )
        assert script["script"] == rule.script()
    properties = {
        p["name"]: (p["type"], p["value"]) for p in records(api, "sys_properties", "nameSTARTSWITHx_changeloop.")
    }
    assert properties == {
        "x_changeloop.shim_url": ("string", shim.base),
        "x_changeloop.webhook_token": ("password2", WEBHOOK_TOKEN),
        "x_changeloop.incident_token": ("password2", INCIDENT_TOKEN),
    }
    (message,) = records(api, "sys_rest_message", "name=changeloop shim")
    assert [m["function_name"] for m in records(api, "sys_rest_message_fn", f"rest_message={message['sys_id']}")] == [
        "post"
    ]


def test_the_old_webhook_url_setting_still_works_and_reads_back(control: httpx.Client, capture: Capture) -> None:
    control.put("/config", json={"webhook_url": capture.url, "webhook_token": WEBHOOK_TOKEN}).raise_for_status()
    config = control.get("/config").json()
    assert (config["webhook_url"], config["shim_url"], config["webhook_token"]) == (
        capture.url,
        capture.base,
        WEBHOOK_TOKEN,
    )
    control.put("/config", json={"webhook_url": None}).raise_for_status()
    assert control.get("/config").json()["webhook_url"] is None


def test_an_approval_decision_is_posted_with_the_webhook_token(api: httpx.Client, shim: Capture) -> None:
    change = result(api.post("/api/now/table/change_request", json={"assignment_group": DATA_PLATFORM}), 201)
    result(api.patch(f"/api/now/table/change_request/{change['sys_id']}", json={"state": "-4"}))
    (approval,) = approvals_of(api, change["sys_id"])
    result(decide(api, approval["sys_id"], "dave.data", "approved", comments="looks safe"))
    sent = only_post(shim, "/api/servicenow/approval")
    assert sent["headers"]["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    assert tuple(sent["body"]) == APPROVAL_FIELDS
    assert sent["body"] == {
        "number": change["number"],
        "sys_id": change["sys_id"],
        "approval_sys_id": approval["sys_id"],
        "approval": "approved",
        "approver": "dave.data",
        "comments": "looks safe",
    }


def test_a_rejection_is_posted_too_but_a_reinstated_request_is_not(api: httpx.Client, shim: Capture) -> None:
    change = result(api.post("/api/now/table/change_request", json={"assignment_group": DATA_PLATFORM}), 201)
    result(api.patch(f"/api/now/table/change_request/{change['sys_id']}", json={"state": "-4"}))
    (approval,) = approvals_of(api, change["sys_id"])
    result(decide(api, approval["sys_id"], "dave.data", "rejected"))
    sent = only_post(shim, "/api/servicenow/approval")
    assert (sent["body"]["approval"], sent["body"]["comments"]) == ("rejected", "")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"state": "4"}, {"state": "4", "on_hold": "false"}),
        ({"on_hold": True, "on_hold_reason": "vendor"}, {"state": "-2", "on_hold": "true", "on_hold_reason": "vendor"}),
        ({"start_date": "2030-01-01 10:00:00"}, {"state": "-2", "start_date": "2030-01-01 10:00:00"}),
        ({"end_date": "2030-01-01 12:00:00"}, {"state": "-2", "end_date": "2030-01-01 12:00:00"}),
    ],
)
def test_a_change_event_is_posted_when_canceled_held_or_rescheduled(
    api: httpx.Client, shim: Capture, fields: dict[str, Any], expected: dict[str, str]
) -> None:
    change = result(api.post("/api/now/table/change_request", json={"type": "standard", "state": "-2"}), 201)
    result(api.patch(f"/api/now/table/change_request/{change['sys_id']}", json={"short_description": "no event"}))
    result(api.patch(f"/api/now/table/change_request/{change['sys_id']}", json=fields))
    sent = only_post(shim, "/api/servicenow/change/event")
    assert sent["headers"]["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    assert tuple(sent["body"]) == EVENT_FIELDS
    blank = {"on_hold": "false", "on_hold_reason": "", "start_date": "", "end_date": ""}
    assert sent["body"] == {"number": change["number"], "sys_id": change["sys_id"], **blank, **expected}


def test_a_resolved_changeloop_incident_is_posted_with_the_incident_token(api: httpx.Client, shim: Capture) -> None:
    body = {
        "short_description": "failed run",
        "correlation_id": "change-CHG0030099",
        "correlation_display": "changeloop",
    }
    ours = result(api.post("/api/now/table/incident", json=body), 201)
    theirs = result(api.post("/api/now/table/incident", json={"short_description": "someone else's"}), 201)
    resolution = {"state": "6", "close_code": "Solved (Permanently)", "close_notes": "restarted the pod"}
    for incident in (theirs, ours):
        result(api.patch(f"/api/now/table/incident/{incident['sys_id']}", json=resolution))
    sent = only_post(shim, f"/api/incidents/{ours['number']}/resolve")
    assert sent["headers"]["Authorization"] == f"Bearer {INCIDENT_TOKEN}"
    assert tuple(sent["body"]) == INCIDENT_FIELDS
    assert sent["body"] == {
        "resolved_by": "changeloop.integration",
        "close_code": "Solved (Permanently)",
        "close_notes": "restarted the pod",
        "correlation_id": "change-CHG0030099",
    }
    assert [r["path"] for r in shim.received] == [f"/api/incidents/{ours['number']}/resolve"]


def _approve_a_standard_change(api: httpx.Client) -> dict[str, str]:
    change: dict[str, str] = result(
        api.post("/api/now/table/change_request", json={"type": "standard", "state": "-2"}), 201
    )
    return change


@pytest.mark.parametrize("how", ["deleted", "inactive", "no rest message", "no token"])
def test_a_rule_that_is_not_installed_sends_nothing(
    api: httpx.Client, control: httpx.Client, shim: Capture, how: str
) -> None:
    with admin(api) as client:
        if how in ("deleted", "inactive"):
            (script,) = records(api, "sys_script", "name=changeloop: send approved change")
            path = f"/api/now/table/sys_script/{script['sys_id']}"
            if how == "deleted":
                assert client.delete(path).status_code == 204
            else:
                result(client.patch(path, json={"active": "false"}))
        elif how == "no rest message":
            (message,) = records(api, "sys_rest_message", "name=changeloop shim")
            assert client.delete(f"/api/now/table/sys_rest_message/{message['sys_id']}").status_code == 204
        else:
            (token,) = records(api, "sys_properties", "name=x_changeloop.webhook_token")
            result(client.patch(f"/api/now/table/sys_properties/{token['sys_id']}", json={"value": ""}))
    before = len(control.get("/outbound").json())
    _approve_a_standard_change(api)
    # The same write after the rules are installed again (configuring a target re-commits the update set) is sent.
    control.put("/config", json={"shim_url": shim.base, "webhook_token": WEBHOOK_TOKEN}).raise_for_status()
    sent_for = _approve_a_standard_change(api)
    posted = only_post(shim, "/api/servicenow/change")
    assert posted["body"]["number"] == sent_for["number"]
    assert len(control.get("/outbound").json()) == before + 1


def test_a_reset_keeps_the_installation(control: httpx.Client, shim: Capture) -> None:
    # A sandbox of its own: a reset of the shared one would pull the seed from under other tests.
    from sandbox.server import SandboxConfig, SandboxServer

    config = SandboxConfig(port=0, webhook_url=shim.url, webhook_token=WEBHOOK_TOKEN, incident_token=INCIDENT_TOKEN)
    with SandboxServer(config) as server, httpx.Client(base_url=server.url, auth=ADMIN, timeout=10) as client:
        assert httpx.post(f"{server.url}/sandbox/reset").status_code == 200
        names = {r["name"] for r in result(client.get("/api/now/table/sys_script"))}
        assert names == {rule.name for rule in RULES}
        assert httpx.get(f"{server.url}/sandbox/config").json()["incident_token"] == INCIDENT_TOKEN
        result(client.post("/api/now/table/change_request", json={"type": "standard", "state": "-2"}), 201)
        poll(lambda: posted_to(shim, "/api/servicenow/change"))
