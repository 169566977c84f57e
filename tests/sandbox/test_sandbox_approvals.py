"""Approvals of normal and emergency changes: records created on Request Approval, decided by their approvers
only, and the change moved on (or back) by the approval flow."""

from __future__ import annotations

import httpx
import pytest

from sandbox.seed import seed_sys_id
from tests.sandbox.support import ADMIN, PEOPLE, approvals_of, approve_stage, decide, result

DATA_PLATFORM = seed_sys_id("sys_user_group", "Data Platform")
CAB = seed_sys_id("sys_user_group", "Change Advisory Board")


def new_change(api: httpx.Client, **fields: str) -> dict[str, str]:
    created: dict[str, str] = result(api.post("/api/now/table/change_request", json=fields), 201)
    return created


def request_approval(api: httpx.Client, change: dict[str, str], state: str = "-4") -> dict[str, str]:
    moved: dict[str, str] = result(
        api.patch(f"/api/now/table/change_request/{change['sys_id']}", json={"state": state})
    )
    return moved


def read(api: httpx.Client, change: dict[str, str]) -> dict[str, str]:
    record: dict[str, str] = result(api.get(f"/api/now/table/change_request/{change['sys_id']}"))
    return record


def who(rows: list[dict[str, str]]) -> list[str]:
    return sorted(r["approver.user_name"] for r in rows)


def test_request_approval_asks_the_assignment_group_then_the_cab(api: httpx.Client) -> None:
    change = new_change(api, assignment_group=DATA_PLATFORM)
    assert request_approval(api, change)["approval"] == "requested"
    assess = approvals_of(api, change["sys_id"])
    assert who(assess) == ["dave.data"] and {a["state"] for a in assess} == {"requested"}
    groups = result(api.get("/api/now/table/sysapproval_group", params={"sysparm_query": f"parent={change['sys_id']}"}))
    assert [(g["assignment_group"]["value"], g["approval"]) for g in groups] == [(DATA_PLATFORM, "requested")]
    assert assess[0]["group"]["value"] == groups[0]["sys_id"]
    full = result(api.get(f"/api/now/table/sysapproval_approver/{assess[0]['sys_id']}"))
    assert (full["source_table"], full["document_id"], full["sysapproval"]["value"]) == (
        "change_request",
        change["sys_id"],
        change["sys_id"],
    )

    assert approve_stage(api, change["sys_id"]) == ["dave.data"]
    assert (read(api, change)["state"], read(api, change)["approval"]) == ("-3", "requested")
    authorize = approvals_of(api, change["sys_id"], "requested")
    assert who(authorize) == ["alice.ops", "carol.cab"]  # the CAB's members
    assert approvals_of(api, change["sys_id"], "approved")[0]["approver.user_name"] == "dave.data"


def test_without_an_assignment_group_the_cab_assesses(api: httpx.Client) -> None:
    change = new_change(api)
    request_approval(api, change)
    assert who(approvals_of(api, change["sys_id"])) == ["alice.ops", "carol.cab"]


def test_an_emergency_change_goes_straight_to_the_cab(api: httpx.Client) -> None:
    change = new_change(api, type="emergency", assignment_group=DATA_PLATFORM)
    assert request_approval(api, change, state="-3")["state"] == "-3"
    assert who(approvals_of(api, change["sys_id"])) == ["alice.ops", "carol.cab"]
    approve_stage(api, change["sys_id"])
    assert (read(api, change)["state"], read(api, change)["approval"]) == ("-2", "approved")


def test_every_approval_of_a_stage_is_needed(api: httpx.Client) -> None:
    change = new_change(api)
    request_approval(api, change)
    first, second = approvals_of(api, change["sys_id"], "requested")
    result(decide(api, first["sys_id"], first["approver.user_name"], "approved"))
    assert read(api, change)["state"] == "-4"  # one of two: still assessing
    result(decide(api, second["sys_id"], second["approver.user_name"], "approved"))
    assert read(api, change)["state"] == "-3"


def test_with_first_response_one_approval_is_enough(api: httpx.Client, control: httpx.Client) -> None:
    control.put("/config", json={"approval_wait_for": "first"}).raise_for_status()
    change = new_change(api)
    request_approval(api, change)
    first, second = approvals_of(api, change["sys_id"], "requested")
    result(decide(api, first["sys_id"], first["approver.user_name"], "approved"))
    assert read(api, change)["state"] == "-3"
    states = {a["sys_id"]: a["state"] for a in approvals_of(api, change["sys_id"])}
    assert (states[first["sys_id"]], states[second["sys_id"]]) == ("approved", "not_required")


def test_one_rejection_sends_the_change_back_to_new(api: httpx.Client) -> None:
    change = new_change(api)
    request_approval(api, change)
    first, second = approvals_of(api, change["sys_id"], "requested")
    result(decide(api, first["sys_id"], first["approver.user_name"], "rejected", comments="not this week"))
    rejected = read(api, change)
    assert (rejected["state"], rejected["approval"]) == ("-5", "rejected")
    states = {a["sys_id"]: a["state"] for a in approvals_of(api, change["sys_id"])}
    assert (states[first["sys_id"]], states[second["sys_id"]]) == ("rejected", "not_required")
    notes = result(
        api.get(
            "/api/now/table/sys_journal_field",
            params={"sysparm_query": f"element_id={first['sys_id']}^element=comments"},
        )
    )
    assert [(n["value"], n["name"], n["sys_created_by"]) for n in notes] == [
        ("not this week", "sysapproval_approver", first["approver.user_name"])
    ]
    # Rejected changes are New again: the requester may ask again, which starts a new round of approvals.
    assert request_approval(api, change)["approval"] == "requested"
    assert len(approvals_of(api, change["sys_id"], "requested")) == 2


@pytest.mark.parametrize("caller", ["changeloop.integration", "mallory", "alice.ops"])
def test_nobody_decides_someone_elses_approval(api: httpx.Client, caller: str) -> None:
    change = new_change(api, assignment_group=DATA_PLATFORM)
    request_approval(api, change)
    (approval,) = approvals_of(api, change["sys_id"])  # dave.data's
    auth = ("changeloop.integration", "sn-integration-pw") if caller == "changeloop.integration" else PEOPLE[caller]
    url = f"{api.base_url}/api/now/table/sysapproval_approver/{approval['sys_id']}"
    refused = httpx.patch(url, json={"state": "approved"}, auth=auth)
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "message": "Operation Failed",
        "detail": "ACL Exception Update Failed due to security constraints",
    }
    assert approvals_of(api, change["sys_id"])[0]["state"] == "requested"
    assert read(api, change)["state"] == "-4"


def test_only_admin_inserts_approvals_and_an_inserted_approver_joins_the_stage(api: httpx.Client) -> None:
    change = new_change(api, assignment_group=DATA_PLATFORM)
    request_approval(api, change)
    mallory = result(api.get("/api/now/table/sys_user", params={"sysparm_query": "user_name=mallory"}))[0]["sys_id"]
    body = {"sysapproval": change["sys_id"], "approver": mallory}
    refused = api.post("/api/now/table/sysapproval_approver", json=body)
    assert refused.status_code == 403 and "Insert Failed" in refused.json()["error"]["detail"]
    added = result(httpx.post(f"{api.base_url}/api/now/table/sysapproval_approver", json=body, auth=ADMIN), 201)
    assert (added["state"], added["source_table"], added["document_id"]) == (
        "requested",
        "change_request",
        change["sys_id"],
    )
    assert who(approvals_of(api, change["sys_id"], "requested")) == ["dave.data", "mallory"]
    result(decide(api, added["sys_id"], "mallory", "approved"))
    assert read(api, change)["state"] == "-4"  # dave.data has not decided yet
    approve_stage(api, change["sys_id"])
    assert read(api, change)["state"] == "-3"


def test_the_control_panel_names_the_approvers_of_a_change(api: httpx.Client, control: httpx.Client) -> None:
    change = new_change(api, assignment_group=DATA_PLATFORM)
    named = control.put(f"/approvers/{change['number']}", json={"assess": ["mallory"], "authorize": ["bob.sre"]})
    assert named.json()["approvers"] == {"assess": ["mallory"], "authorize": ["bob.sre"]}
    assert control.put(f"/approvers/{change['number']}", json={"assess": ["nobody"]}).status_code == 422
    request_approval(api, change)
    assert who(approvals_of(api, change["sys_id"], "requested")) == ["mallory"]
    approve_stage(api, change["sys_id"])
    assert who(approvals_of(api, change["sys_id"], "requested")) == ["bob.sre"]
    approve_stage(api, change["sys_id"])
    assert (read(api, change)["state"], read(api, change)["approval"]) == ("-2", "approved")


def test_a_hold_suspends_the_pending_approvals_and_a_release_restores_them(api: httpx.Client) -> None:
    change = new_change(api)
    request_approval(api, change)
    path = f"/api/now/table/change_request/{change['sys_id']}"
    result(api.patch(path, json={"on_hold": "true", "on_hold_reason": "missing CI"}))
    assert {a["state"] for a in approvals_of(api, change["sys_id"])} == {"not_required"}
    result(api.patch(path, json={"on_hold": "false"}))
    assert {a["state"] for a in approvals_of(api, change["sys_id"])} == {"requested"}
    approve_stage(api, change["sys_id"])
    assert read(api, change)["state"] == "-3"


def test_a_decision_on_a_change_that_is_not_waiting_moves_nothing(api: httpx.Client) -> None:
    change = new_change(api)
    request_approval(api, change)
    first, _ = approvals_of(api, change["sys_id"], "requested")
    result(api.patch(f"/api/now/table/change_request/{change['sys_id']}", json={"state": "-5"}))  # Revert to New
    result(decide(api, first["sys_id"], first["approver.user_name"], "approved"))
    assert (read(api, change)["state"], read(api, change)["approval"]) == ("-5", "not requested")


def test_the_seeded_change_in_assess_waits_for_dave(api: httpx.Client) -> None:
    seeded = result(api.get("/api/now/table/change_request", params={"sysparm_query": "number=CHG0030002"}))[0]
    assert who(approvals_of(api, seeded["sys_id"], "requested")) == ["dave.data"]


def test_an_approver_writes_only_the_decision_of_their_record(api: httpx.Client) -> None:
    change = new_change(api, assignment_group=DATA_PLATFORM)
    request_approval(api, change)
    (approval,) = approvals_of(api, change["sys_id"])
    mallory = result(api.get("/api/now/table/sys_user", params={"sysparm_query": "user_name=mallory"}))[0]["sys_id"]
    url = f"{api.base_url}/api/now/table/sysapproval_approver/{approval['sys_id']}"
    written = result(httpx.patch(url, json={"approver": mallory, "state": "approved"}, auth=PEOPLE["dave.data"]))
    assert written["state"] == "approved" and written["approver"]["value"] != mallory  # the approver field is ignored
