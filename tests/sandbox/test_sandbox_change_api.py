"""The Change Management API (sn_chg_rest): templates, standard changes, next states, updates, conflicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sandbox.seed import seed_sys_id
from tests.sandbox.support import Capture, approvals_of, poll, posted_to, result

API = "/api/sn_chg_rest/change"
RESTART = seed_sys_id("std_change_record_producer", "Restart application service")
PATCHING = seed_sys_id("std_change_record_producer", "Patch Linux servers")
PAYMENTS_API = seed_sys_id("cmdb_ci", "payments-api")


def values(record: dict[str, Any]) -> dict[str, Any]:
    return {name: field["value"] for name, field in record.items() if isinstance(field, dict) and "value" in field}


def when(hours: float = 0, *, base: datetime | None = None) -> str:
    return ((base or datetime.now(UTC)) + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")


def next_weekday_at(hour: int) -> datetime:
    """The next Monday-to-Friday day (from tomorrow on) at `hour`:00 UTC."""
    day = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(days=1)
    while day.isoweekday() > 5:
        day += timedelta(days=1)
    return day


def standard_change(api: httpx.Client, template: str = RESTART, **fields: Any) -> dict[str, Any]:
    created: dict[str, Any] = result(api.post(f"{API}/standard/{template}", json=fields))
    return created


def test_templates_are_listed_and_found_by_name_or_query(api: httpx.Client) -> None:
    everything = result(api.get(f"{API}/standard/template"))
    assert sorted(t["name"]["value"] for t in everything) == [
        "Patch Linux servers",
        "Restart application service",
        "Run maintenance steps",
    ]
    (by_name,) = result(api.get(f"{API}/standard/template", params={"name": "Restart application service"}))
    assert by_name["sys_id"] == {"display_value": RESTART, "value": RESTART}
    assert by_name["template"] == {
        "display_value": "Restart application service",
        "value": seed_sys_id("sys_template", "Restart application service"),
    }
    (by_query,) = result(api.get(f"{API}/standard/template", params={"sysparm_query": "nameSTARTSWITHPatch"}))
    assert by_query["sys_id"]["value"] == PATCHING
    page = api.get(f"{API}/standard/template", params={"sysparm_limit": 1, "sysparm_offset": 1, "order": "name"})
    assert [t["name"]["value"] for t in result(page)] == ["Restart application service"]


def test_a_standard_change_from_a_template_gets_its_values_and_says_what_it_ignored(api: httpx.Client) -> None:
    created = standard_change(
        api, cmdb_ci="payments-api", short_description="Restart payments-api", description="ignored", no_such_field="x"
    )
    assert created["__meta"] == {"ignoredFields": ["description", "no_such_field"]}
    fields = values(created)
    assert (fields["type"], fields["state"], fields["approval"]) == ("standard", -5.0, "not requested")
    assert (fields["short_description"], fields["category"], fields["risk"]) == (
        "Restart payments-api",
        "Software",
        4.0,
    )
    assert fields["implementation_plan"].startswith("Restart the service on one server")  # from the template
    assert fields["description"] == ""
    assert created["cmdb_ci"] == {"display_value": "payments-api", "value": PAYMENTS_API}
    version = seed_sys_id("std_change_producer_version", "Restart application service")
    assert created["std_change_producer_version"] == {"display_value": "Restart application service", "value": version}
    assert created["state"] == {"display_value": "New", "value": -5.0}
    assert created["on_hold"] == {"display_value": "false", "value": False}
    assert created["start_date"] == {"display_value": "", "value": "", "display_value_internal": ""}
    stored = result(api.get(f"/api/now/table/change_request/{fields['sys_id']}"))
    assert (stored["number"], stored["state"]) == (fields["number"], "-5")


def test_a_template_may_name_the_ci_and_a_change_may_start_scheduled(
    api: httpx.Client, control: httpx.Client, capture: Capture
) -> None:
    control.put("/config", json={"shim_url": capture.base, "webhook_token": "t"}).raise_for_status()
    created = values(standard_change(api, PATCHING, state="-2"))
    assert created["cmdb_ci"] == seed_sys_id("cmdb_ci", "fleet")
    assert (created["state"], created["approval"]) == (-2.0, "approved")
    (sent,) = poll(lambda: posted_to(capture, "/api/servicenow/change"))
    assert (sent["body"]["number"], sent["body"]["std_change_producer_version_name"]) == (
        created["number"],
        "Patch Linux servers",
    )


def test_an_unknown_template_is_404(api: httpx.Client) -> None:
    response = api.post(f"{API}/standard/{'0' * 32}", json={})
    assert response.status_code == 404 and response.json()["status"] == "failure"


def transitions(answer: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    return {
        o["to_state"]: (o["transition_available"], o["automatic_transition"])
        for t in answer["state_transitions"]
        for o in t
    }


def test_next_states_follow_each_model(api: httpx.Client) -> None:
    standard = values(standard_change(api))["sys_id"]
    answer = result(api.get(f"{API}/{standard}/nextstates"))
    assert answer["available_states"] == ["-5", "-2", "4"]
    assert answer["state_label"] == {"-5": "New", "-2": "Scheduled", "4": "Canceled"}
    assert transitions(answer) == {"-2": (True, False), "4": (True, False)}

    normal = result(api.post("/api/now/table/change_request", json={}), 201)
    result(api.patch(f"/api/now/table/change_request/{normal['sys_id']}", json={"state": "-4"}))
    answer = result(api.get(f"{API}/{normal['sys_id']}/nextstates"))
    assert answer["available_states"] == ["-4", "-5", "4"]  # Authorize is the approval flow's move
    assert transitions(answer) == {"-3": (False, True), "-5": (True, False), "4": (True, False)}
    (to_authorize,) = next(t for t in answer["state_transitions"] if t[0]["to_state"] == "-3")
    assert to_authorize["display_value"] == "Assess to Authorize" and to_authorize["from_state"] == "-4"
    assert {c["condition"]["name"]: c["passed"] for c in to_authorize["conditions"]} == {
        "Not On hold": True,
        "Approvals of the stage approved": False,
    }


def test_on_hold_only_cancel_is_available(api: httpx.Client) -> None:
    change = values(standard_change(api, state="-2"))["sys_id"]
    result(api.patch(f"{API}/{change}", json={"on_hold": "true"}))
    answer = result(api.get(f"{API}/{change}/nextstates"))
    assert answer["available_states"] == ["-2", "4"]
    assert transitions(answer) == {"-1": (False, False), "4": (True, False)}


def test_patch_moves_a_change_along_its_model_and_refuses_the_rest_with_400(api: httpx.Client) -> None:
    standard = values(standard_change(api))["sys_id"]
    moved = result(api.patch(f"{API}/{standard}", json={"state": "-2", "work_notes": "scheduled through sn_chg_rest"}))
    assert moved["state"] == {"display_value": "Scheduled", "value": -2.0}
    refused = api.patch(f"{API}/{standard}", json={"state": "3"})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": {
            "message": "Operation Failed",
            "detail": "Invalid state transition: Scheduled -> Closed is not allowed for a standard change",
        },
        "status": "failure",
    }
    normal = result(api.post("/api/now/table/change_request", json={}), 201)["sys_id"]
    result(api.patch(f"{API}/{normal}", json={"state": "-4"}))
    assert approvals_of(api, normal, "requested")  # Request Approval through the API creates the approvals too
    assert api.patch(f"{API}/{normal}", json={"state": "-3"}).status_code == 400
    assert values(result(api.get(f"{API}/{normal}")))["state"] == -4.0
    assert result(api.get(f"/api/sn_chg_rest/v1/change/{normal}"))["number"]["value"].startswith("CHG")  # versioned
    assert api.get(f"{API}/{'f' * 32}").status_code == 404


def conflict_check(api: httpx.Client, change: str) -> dict[str, Any]:
    started = api.post(f"{API}/{change}/conflict")
    assert started.status_code == 200 and len(started.json()["result"]) == 32
    answer: dict[str, Any] = result(api.get(f"{API}/{change}/conflict"))
    return answer


def windowed(api: httpx.Client, ci: str, start: str, end: str) -> str:
    body = {"cmdb_ci": ci, "start_date": start, "end_date": end}
    change: dict[str, Any] = result(api.post("/api/now/table/change_request", json=body), 201)
    return str(change["sys_id"])


def test_a_conflict_check_finds_a_blackout_over_the_planned_window(api: httpx.Client, control: httpx.Client) -> None:
    change = windowed(api, PAYMENTS_API, when(0.05), when(1))
    assert result(api.get(f"{API}/{change}/conflict")) == {
        "status": "Not Run",
        "last_run": "",
        "record_count": "0",
        "job_status": "",
        "conflicts": [],
    }
    clear = conflict_check(api, change)
    assert (clear["status"], clear["job_status"], clear["conflicts"]) == ("Conflict", "2", [])  # as documented
    assert result(api.get(f"/api/now/table/change_request/{change}"))["conflict_status"] == "No Conflict"

    blackout = control.post("/blackouts", json={"start_in": 600, "end_in": 900}).json()
    found = conflict_check(api, change)
    (conflict,) = found["conflicts"]
    assert conflict["type"] == {"display_value": "Blackout", "value": "blackout"}
    assert conflict["schedule"] == {"display_value": "Sandbox blackout", "value": blackout["schedule"]}
    assert conflict["change"]["value"] == change and conflict["configuration_item"]["value"] == PAYMENTS_API
    stored = result(api.get(f"/api/now/table/change_request/{change}"))
    assert (stored["conflict_status"], stored["conflict_last_run"]) == ("Conflict", found["last_run"])
    rows = result(api.get("/api/now/table/conflict", params={"sysparm_query": f"change={change}"}))
    assert [r["type"] for r in rows] == ["blackout"]  # a new run replaced the old records


def test_the_seeded_blackout_applies_only_to_legacy_batch(api: httpx.Client) -> None:
    day = next_weekday_at(10)
    window = (when(base=day), when(1, base=day))
    legacy = windowed(api, seed_sys_id("cmdb_ci", "legacy-batch"), *window)
    assert [c["type"]["value"] for c in conflict_check(api, legacy)["conflicts"]] == ["blackout"]
    payments = windowed(api, PAYMENTS_API, *window)
    assert conflict_check(api, payments)["conflicts"] == []


def test_a_ci_with_a_maintenance_schedule_must_be_changed_inside_it(api: httpx.Client) -> None:
    wiki = seed_sys_id("cmdb_ci", "internal-wiki")
    night = next_weekday_at(2)
    inside = windowed(api, wiki, when(0.5, base=night), when(1.5, base=night))
    assert conflict_check(api, inside)["conflicts"] == []
    outside = windowed(api, wiki, when(3, base=night), when(4, base=night))
    (conflict,) = conflict_check(api, outside)["conflicts"]
    assert conflict["type"] == {"display_value": "Not In Maintenance Window", "value": "not_in_maintenance_window"}
    assert conflict["schedule"]["display_value"] == "Wiki maintenance window"
    assert result(api.get(f"/api/now/table/change_request/{outside}"))["outside_maintenance_schedule"] == "true"


def test_a_conflict_check_needs_a_ci_and_a_planned_window(api: httpx.Client) -> None:
    no_dates = result(api.post("/api/now/table/change_request", json={"cmdb_ci": PAYMENTS_API}), 201)["sys_id"]
    refused = api.post(f"{API}/{no_dates}/conflict")
    assert refused.status_code == 400 and "Planned start date" in refused.json()["error"]["detail"]
    no_ci = windowed(api, "", when(1), when(2))
    assert api.post(f"{API}/{no_ci}/conflict").status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/standard/template"),
        ("POST", f"/standard/{RESTART}"),
        ("GET", f"/{'a' * 32}/nextstates"),
        ("PATCH", f"/{'a' * 32}"),
        ("POST", f"/{'a' * 32}/conflict"),
        ("GET", f"/{'a' * 32}/conflict"),
    ],
)
def test_without_the_plugin_every_path_answers_like_an_unknown_uri(
    api: httpx.Client, control: httpx.Client, method: str, path: str
) -> None:
    control.put("/config", json={"change_api": False}).raise_for_status()
    response = api.request(method, f"{API}{path}", json={})
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": "Requested URI does not represent any resource", "detail": None},
        "status": "failure",
    }
    assert api.get("/api/now/table/change_request", params={"sysparm_limit": 1}).status_code == 200  # Table API on


def test_the_api_needs_credentials(api: httpx.Client) -> None:
    assert httpx.get(f"{api.base_url}{API}/standard/template").status_code == 401


def test_the_api_acts_as_the_caller_under_the_change_request_acls(api: httpx.Client, control: httpx.Client) -> None:
    change = values(standard_change(api))["sys_id"]
    control.put("/roles/changeloop.integration", json={"roles": ["sn_change_read"]}).raise_for_status()
    assert api.get(f"{API}/{change}").status_code == 200
    for response in (
        api.patch(f"{API}/{change}", json={"state": "-2"}),
        api.post(f"{API}/standard/{RESTART}", json={}),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["detail"].startswith("ACL Exception")
    control.put("/roles/changeloop.integration", json={"roles": []}).raise_for_status()
    assert api.get(f"{API}/{change}/nextstates").status_code == 404  # unreadable is "not found"
