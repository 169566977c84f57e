"""The instance's business rules: the change model, data policies on closing, the computed incident priority."""

from __future__ import annotations

import httpx
import pytest

from sandbox.seed import seed_sys_id
from tests.sandbox.support import result

RESTART_TEMPLATE = seed_sys_id("std_change_producer_version", "Restart application service")


def new_change(api: httpx.Client, **fields: str) -> dict[str, str]:
    created: dict[str, str] = result(api.post("/api/now/table/change_request", json=fields), 201)
    return created


def move(api: httpx.Client, change: dict[str, str], **fields: str) -> httpx.Response:
    return api.patch(f"/api/now/table/change_request/{change['sys_id']}", json=fields)


def test_new_change_defaults_to_new_normal_not_requested(api: httpx.Client) -> None:
    change = new_change(api, short_description="defaults")
    assert (change["state"], change["type"], change["approval"]) == ("-5", "normal", "not requested")


def test_refused_state_jump_is_403_and_writes_nothing(api: httpx.Client, control: httpx.Client) -> None:
    change = new_change(api, type="standard")
    writes = control.get("/stats").json()["writes"]
    response = move(api, change, state="-1", short_description="must not be written")
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "message": "Operation Failed",
            "detail": "Invalid state transition: New -> Implement is not allowed for a standard change",
        },
        "status": "failure",
    }
    after = result(api.get(f"/api/now/table/change_request/{change['sys_id']}"))
    assert after["state"] == "-5" and after["short_description"] == "" and after["sys_mod_count"] == "0"
    assert control.get("/stats").json()["writes"] == writes


@pytest.mark.parametrize(
    ("change_type", "path"),
    [
        ("normal", ["-4", "-3", "-2", "-1", "0"]),
        ("standard", ["-2", "-1", "0"]),
        ("emergency", ["-3", "-2", "-1", "0"]),
    ],
)
def test_each_change_type_walks_its_own_model(api: httpx.Client, change_type: str, path: list[str]) -> None:
    change = new_change(api, type=change_type)
    for state in path:
        assert move(api, change, state=state).status_code == 200, state
    closed = move(api, change, state="3", close_code="successful", close_notes="done")
    assert closed.status_code == 200 and closed.json()["result"]["active"] == "false"


def test_normal_change_cannot_skip_assess(api: httpx.Client) -> None:
    assert move(api, new_change(api), state="-3").status_code == 403


def test_cancel_is_allowed_before_review_only(api: httpx.Client) -> None:
    assert move(api, new_change(api), state="4").status_code == 200
    change = new_change(api, type="standard")
    for state in ("-2", "-1", "0"):
        move(api, change, state=state).raise_for_status()
    assert move(api, change, state="4").status_code == 403


def test_closing_a_change_requires_close_code_and_close_notes(api: httpx.Client) -> None:
    change = new_change(api, type="standard")
    for state in ("-2", "-1", "0"):
        move(api, change, state=state).raise_for_status()
    refused = move(api, change, state="3", close_code="successful")
    assert refused.status_code == 403
    assert "mandatory" in refused.json()["error"]["detail"] and "Close notes" in refused.json()["error"]["detail"]
    assert "Close code" not in refused.json()["error"]["detail"]
    # Fields already on the record count: set notes first, then close with the code.
    move(api, change, close_notes="all good").raise_for_status()
    assert move(api, change, state="3", close_code="successful").status_code == 200


def test_standard_change_from_template_is_created_scheduled_and_pre_approved(api: httpx.Client) -> None:
    change = new_change(api, type="standard", state="-2", std_change_producer_version=RESTART_TEMPLATE)
    assert (change["state"], change["approval"]) == ("-2", "approved")
    refused = api.post("/api/now/table/change_request", json={"type": "normal", "state": "-1"})
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        *[("1", "1", "1"), ("1", "2", "2"), ("2", "1", "2"), ("1", "3", "3"), ("2", "2", "3")],
        *[("3", "1", "3"), ("2", "3", "4"), ("3", "2", "4"), ("3", "3", "5")],
    ],
)
def test_incident_priority_is_computed_from_impact_and_urgency(
    api: httpx.Client, impact: str, urgency: str, priority: str
) -> None:
    body = {"short_description": "priority", "impact": impact, "urgency": urgency, "priority": "1"}
    assert result(api.post("/api/now/table/incident", json=body), 201)["priority"] == priority


def test_incident_priority_follows_an_impact_change(api: httpx.Client) -> None:
    incident = result(api.post("/api/now/table/incident", json={"impact": "3", "urgency": "1"}), 201)
    updated = result(api.patch(f"/api/now/table/incident/{incident['sys_id']}", json={"impact": "1"}))
    assert updated["priority"] == "1"


def test_resolving_an_incident_requires_close_code_and_close_notes(api: httpx.Client) -> None:
    incident = result(api.post("/api/now/table/incident", json={"short_description": "resolve me"}), 201)
    path = f"/api/now/table/incident/{incident['sys_id']}"
    refused = api.patch(path, json={"state": "6"})
    assert refused.status_code == 403 and "Close code, Close notes" in refused.json()["error"]["detail"]
    resolved = result(api.patch(path, json={"state": "6", "close_code": "Solution provided", "close_notes": "fixed"}))
    assert resolved["state"] == "6" and resolved["resolved_at"] != ""
