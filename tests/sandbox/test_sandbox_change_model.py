"""The instance's change models (standard, normal, emergency), written from ServiceNow's docs: what a PATCH may
do, what only the approval flow does, holds, cancels, close fields, and the computed incident priority."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.seed import seed_sys_id
from tests.sandbox.support import approvals_of, approve_stage, result

RESTART_TEMPLATE = seed_sys_id("std_change_producer_version", "Restart application service")


def new_change(api: httpx.Client, **fields: str) -> dict[str, str]:
    created: dict[str, str] = result(api.post("/api/now/table/change_request", json=fields), 201)
    return created


def move(api: httpx.Client, change: dict[str, str], **fields: Any) -> httpx.Response:
    return api.patch(f"/api/now/table/change_request/{change['sys_id']}", json=fields)


def read(api: httpx.Client, change: dict[str, str]) -> dict[str, str]:
    record: dict[str, str] = result(api.get(f"/api/now/table/change_request/{change['sys_id']}"))
    return record


def test_new_change_defaults_to_new_normal_not_requested(api: httpx.Client) -> None:
    change = new_change(api, short_description="defaults")
    assert (change["state"], change["type"], change["approval"]) == ("-5", "normal", "not requested")
    assert (change["on_hold"], change["conflict_status"]) == ("false", "Not Run")


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
    after = read(api, change)
    assert after["state"] == "-5" and after["short_description"] == "" and after["sys_mod_count"] == "0"
    assert control.get("/stats").json()["writes"] == writes


def test_a_standard_change_walks_its_model_by_patch(api: httpx.Client) -> None:
    change = new_change(api, type="standard")
    for state in ("-2", "-1", "0", "3"):
        assert move(api, change, state=state).status_code == 200, state
    assert (read(api, change)["approval"], read(api, change)["active"]) == ("approved", "false")


@pytest.mark.parametrize(
    ("change_type", "requested_state", "stages"),
    [("normal", "-4", ["-4", "-3"]), ("emergency", "-3", ["-3"])],
)
def test_normal_and_emergency_changes_reach_scheduled_only_through_their_approvals(
    api: httpx.Client, change_type: str, requested_state: str, stages: list[str]
) -> None:
    change = new_change(api, type=change_type)
    assert result(move(api, change, state=requested_state))["approval"] == "requested"  # Request Approval
    for stage in stages:
        assert read(api, change)["state"] == stage
        assert approve_stage(api, change["sys_id"])  # someone had to approve this stage
    scheduled = read(api, change)
    assert (scheduled["state"], scheduled["approval"], scheduled["sys_updated_by"]) == ("-2", "approved", "system")
    for state in ("-1", "0"):
        assert move(api, change, state=state).status_code == 200, state
    closed = move(api, change, state="3", close_code="successful", close_notes="done")
    assert closed.status_code == 200 and closed.json()["result"]["active"] == "false"


@pytest.mark.parametrize(
    ("change_type", "walk", "refused"),
    [
        ("normal", [], "-3"),  # New -> Authorize: not an arrow of the normal model
        ("normal", ["-4"], "-3"),  # Assess -> Authorize: the approval flow's move
        ("normal", ["-4"], "-2"),
        ("emergency", ["-3"], "-2"),  # Authorize -> Scheduled: the approval flow's move
    ],
)
def test_the_integration_user_cannot_walk_a_change_through_its_approvals(
    api: httpx.Client, change_type: str, walk: list[str], refused: str
) -> None:
    change = new_change(api, type=change_type)
    for state in walk:
        move(api, change, state=state).raise_for_status()
    before = read(api, change)
    for body in ({"state": refused}, {"state": refused, "approval": "approved"}):
        response = move(api, change, **body)
        assert response.status_code == 403, body
        assert response.json()["error"]["detail"].startswith("Invalid state transition")
    after = read(api, change)
    assert (after["state"], after["approval"], after["sys_mod_count"]) == (
        before["state"],
        before["approval"],
        before["sys_mod_count"],
    )


def test_the_refusal_names_the_approval_flow(api: httpx.Client) -> None:
    change = new_change(api)
    move(api, change, state="-4").raise_for_status()
    detail = move(api, change, state="-3").json()["error"]["detail"]
    assert detail == (
        "Invalid state transition: Assess -> Authorize is not allowed for a normal change: the approval flow makes "
        "this move when the change's approvals are approved (approval is requested)"
    )


@pytest.mark.parametrize(("change_type", "stage"), [("normal", "-4"), ("normal", "-3"), ("emergency", "-3")])
def test_revert_to_new_cancels_the_pending_approvals(api: httpx.Client, change_type: str, stage: str) -> None:
    change = new_change(api, type=change_type)
    move(api, change, state="-4" if change_type == "normal" else "-3").raise_for_status()
    if stage == "-3" and change_type == "normal":
        approve_stage(api, change["sys_id"])
    assert read(api, change)["state"] == stage
    pending = approvals_of(api, change["sys_id"], "requested")
    assert pending
    reverted = result(move(api, change, state="-5"))
    assert (reverted["state"], reverted["approval"]) == ("-5", "not requested")
    assert {
        a["state"] for a in approvals_of(api, change["sys_id"]) if a["sys_id"] in {p["sys_id"] for p in pending}
    } == {"cancelled"}


def test_cancel_is_allowed_before_review_only(api: httpx.Client) -> None:
    assert move(api, new_change(api), state="4").status_code == 200
    in_assess = new_change(api)
    move(api, in_assess, state="-4").raise_for_status()
    assert move(api, in_assess, state="4").status_code == 200
    assert {a["state"] for a in approvals_of(api, in_assess["sys_id"])} == {"cancelled"}
    change = new_change(api, type="standard")
    for state in ("-2", "-1", "0"):
        move(api, change, state=state).raise_for_status()
    assert move(api, change, state="4").status_code == 403


def test_a_change_on_hold_can_only_be_canceled_and_a_cancel_releases_the_hold(api: httpx.Client) -> None:
    change = new_change(api, type="standard", state="-2")
    held = result(move(api, change, on_hold=True, on_hold_reason="waiting for the vendor"))
    assert (held["on_hold"], held["on_hold_reason"]) == ("true", "waiting for the vendor")
    refused = move(api, change, state="-1")
    assert refused.status_code == 403 and "on hold" in refused.json()["error"]["detail"]
    # Releasing the hold and moving in one write is a move of a change that is no longer on hold.
    other = new_change(api, type="standard", state="-2")
    move(api, other, on_hold=True).raise_for_status()
    assert result(move(api, other, on_hold=False, state="-1"))["state"] == "-1"
    canceled = result(move(api, change, state="4"))
    assert (canceled["state"], canceled["on_hold"]) == ("4", "false")


def test_the_type_can_change_only_while_new(api: httpx.Client) -> None:
    change = new_change(api, type="standard")
    assert result(move(api, change, type="normal"))["type"] == "normal"
    move(api, change, state="-4").raise_for_status()
    refused = move(api, change, type="emergency")
    assert refused.status_code == 403 and "only be changed in New" in refused.json()["error"]["detail"]


def _walk_to_review(api: httpx.Client) -> dict[str, str]:
    change = new_change(api, type="standard")
    for state in ("-2", "-1", "0"):
        move(api, change, state=state).raise_for_status()
    return change


def test_close_fields_are_a_ui_policy_so_rest_closes_without_them(api: httpx.Client) -> None:
    change = _walk_to_review(api)
    closed = result(move(api, change, state="3"))
    assert (closed["state"], closed["close_code"], closed["close_notes"]) == ("3", "", "")


def test_with_a_data_policy_closing_requires_close_code_and_close_notes(
    api: httpx.Client, control: httpx.Client
) -> None:
    control.put("/config", json={"close_fields_data_policy": True}).raise_for_status()
    assert control.get("/config").json()["close_fields_data_policy"] is True
    change = _walk_to_review(api)
    refused = move(api, change, state="3", close_code="successful")
    assert refused.status_code == 403
    detail = refused.json()["error"]["detail"]
    assert "mandatory" in detail and "Close notes" in detail and "Close code" not in detail
    # Fields already on the record count: set notes first, then close with the code.
    move(api, change, close_notes="all good").raise_for_status()
    assert move(api, change, state="3", close_code="successful").status_code == 200


def test_standard_change_from_template_is_created_scheduled_and_pre_approved(api: httpx.Client) -> None:
    change = new_change(api, type="standard", state="-2", std_change_producer_version=RESTART_TEMPLATE)
    assert (change["state"], change["approval"]) == ("-2", "approved")
    for body in (
        {"type": "normal", "state": "-1"},
        {"type": "normal", "state": "-2"},
        {"type": "emergency", "state": "-3"},
    ):
        assert api.post("/api/now/table/change_request", json=body).status_code == 403, body


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
    integration = result(
        api.get("/api/now/table/sys_user", params={"sysparm_query": "user_name=changeloop.integration"})
    )
    assert resolved["resolved_by"]["value"] == integration[0]["sys_id"]  # the instance stamps who resolved it
