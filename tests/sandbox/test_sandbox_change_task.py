"""change_task: numbering, the change it belongs to, states, closing, journal, correlation fields."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from sandbox.seed import seed_sys_id
from sandbox.server import SandboxConfig, SandboxServer
from tests.sandbox.support import INTEGRATION, result

CHANGE = seed_sys_id("change_request", "CHG0030001")
GROUP = seed_sys_id("sys_user_group", "Payments SRE")


def test_change_tasks_are_numbered_from_ctask0010001() -> None:
    with SandboxServer(SandboxConfig(port=0)) as fresh, httpx.Client(base_url=fresh.url, auth=INTEGRATION) as api:
        numbers = [
            result(api.post("/api/now/table/change_task", json={"change_request": CHANGE}), 201)["number"]
            for _ in range(2)
        ]
    assert numbers == ["CTASK0010001", "CTASK0010002"]


def test_a_change_task_belongs_to_its_change_and_starts_open(emulator, api: httpx.Client) -> None:
    marker = f"ctask-{uuid.uuid4().hex[:8]}"
    body = {
        "change_request": CHANGE,
        "short_description": "Restart payments-api on pay-web-01",
        "description": "step 1 of the runbook",
        "assignment_group": GROUP,
        "correlation_id": marker,
        "correlation_display": "changeloop",
        "change_task_type": "implementation",
    }
    task = result(api.post("/api/now/table/change_task", json=body), 201)

    assert re.fullmatch(r"CTASK\d{7}", task["number"])
    assert task["state"] == "1" and task["active"] == "true"
    assert task["change_request"] == {"link": f"{emulator.url}/api/now/table/change_request/{CHANGE}", "value": CHANGE}
    assert task["assignment_group"]["value"] == GROUP
    assert task["correlation_id"] == marker and task["correlation_display"] == "changeloop"
    shown = result(api.get(f"/api/now/table/change_task/{task['sys_id']}", params={"sysparm_display_value": "true"}))
    assert shown["state"] == "Open" and shown["change_task_type"] == "Implementation"
    assert shown["change_request"]["display_value"] == "CHG0030001"
    found = result(
        api.get(
            "/api/now/table/change_task",
            params={"sysparm_query": f"change_request.number=CHG0030001^correlation_id={marker}"},
        )
    )
    assert [r["sys_id"] for r in found] == [task["sys_id"]]


def test_closing_a_change_task_stamps_closed_at_and_keeps_the_work_notes(api: httpx.Client) -> None:
    task = result(api.post("/api/now/table/change_task", json={"change_request": CHANGE, "state": "2"}), 201)
    assert task["state"] == "2"
    api.patch(f"/api/now/table/change_task/{task['sys_id']}", json={"work_notes": "output: ok"}).raise_for_status()

    closed = result(
        api.patch(
            f"/api/now/table/change_task/{task['sys_id']}",
            json={"state": "3", "close_code": "successful", "close_notes": "step succeeded"},
        )
    )
    assert closed["state"] == "3" and closed["active"] == "false" and closed["closed_at"]
    assert closed["close_code"] == "successful" and closed["close_notes"] == "step succeeded"
    shown = result(api.get(f"/api/now/table/change_task/{task['sys_id']}", params={"sysparm_display_value": "true"}))
    assert shown["state"] == "Closed" and shown["close_code"] == "Successful"
    assert "output: ok" in shown["work_notes"]
    journal = result(
        api.get("/api/now/table/sys_journal_field", params={"sysparm_query": f"element_id={task['sys_id']}"})
    )
    assert [(j["name"], j["element"], j["value"]) for j in journal] == [("change_task", "work_notes", "output: ok")]


def test_canceling_a_change_task_closes_it_too(api: httpx.Client) -> None:
    task = result(api.post("/api/now/table/change_task", json={"change_request": CHANGE}), 201)
    canceled = result(api.patch(f"/api/now/table/change_task/{task['sys_id']}", json={"state": "4"}))
    assert canceled["active"] == "false" and canceled["closed_at"]


def _task(api: httpx.Client, change: str, **fields: str) -> dict[str, str]:
    created: dict[str, str] = result(
        api.post("/api/now/table/change_task", json={"change_request": change, **fields}), 201
    )
    return created


def _states(api: httpx.Client, change: str) -> dict[str, str]:
    rows = result(api.get("/api/now/table/change_task", params={"sysparm_query": f"change_request={change}"}))
    return {row["sys_id"]: row["state"] for row in rows}


@pytest.mark.parametrize(("path", "ends_at"), [(["-2", "-1", "0"], "review"), (["4"], "canceled")])
def test_moving_a_change_to_review_or_canceling_it_cancels_its_open_tasks_only(
    api: httpx.Client, path: list[str], ends_at: str
) -> None:
    change = result(api.post("/api/now/table/change_request", json={"type": "standard"}), 201)["sys_id"]
    still_open, in_progress = _task(api, change), _task(api, change, state="2")
    done = _task(api, change)
    api.patch(
        f"/api/now/table/change_task/{done['sys_id']}", json={"state": "3", "close_notes": "ok"}
    ).raise_for_status()
    other_change = result(api.post("/api/now/table/change_request", json={"type": "standard"}), 201)["sys_id"]
    elsewhere = _task(api, other_change)

    for state in path:
        api.patch(f"/api/now/table/change_request/{change}", json={"state": state}).raise_for_status()

    assert _states(api, change) == {still_open["sys_id"]: "4", in_progress["sys_id"]: "4", done["sys_id"]: "3"}, ends_at
    canceled = result(api.get(f"/api/now/table/change_task/{still_open['sys_id']}"))
    assert canceled["active"] == "false" and canceled["closed_at"]
    assert _states(api, other_change) == {elsewhere["sys_id"]: "1"}
