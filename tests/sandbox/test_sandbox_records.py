"""What the instance does to records beyond storing them: numbers and journal fields."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.sandbox.support import result


def test_task_tables_number_records_with_their_prefix(api: httpx.Client) -> None:
    first = result(api.post("/api/now/table/incident", json={"short_description": "numbering a"}), 201)
    second = result(api.post("/api/now/table/incident", json={"short_description": "numbering b"}), 201)
    change = result(api.post("/api/now/table/change_request", json={"short_description": "numbering"}), 201)
    assert re.fullmatch(r"INC\d{7}", first["number"]) and int(first["number"][3:]) >= 10001
    assert int(second["number"][3:]) == int(first["number"][3:]) + 1
    # The seed used CHG0030001..CHG0030003: the sequence continues after it.
    assert re.fullmatch(r"CHG\d{7}", change["number"]) and int(change["number"][3:]) > 30003


def test_work_notes_append_journal_rows_in_order_and_read_empty(api: httpx.Client) -> None:
    change = result(api.post("/api/now/table/change_request", json={"work_notes": "first note"}), 201)
    path = f"/api/now/table/change_request/{change['sys_id']}"
    for note in ("second note", "third note"):
        result(api.patch(path, json={"work_notes": note}))
    result(api.patch(path, json={"comments": "a comment"}))
    assert result(api.get(path))["work_notes"] == ""  # value mode never shows the journal
    query = f"element_id={change['sys_id']}^element=work_notes^ORDERBYsys_created_on"
    rows = result(api.get("/api/now/table/sys_journal_field", params={"sysparm_query": query}))
    assert [r["value"] for r in rows] == ["first note", "second note", "third note"]
    assert {r["name"] for r in rows} == {"change_request"}
    assert {r["sys_created_by"] for r in rows} == {"changeloop.integration"}


def test_display_value_shows_journal_history_newest_first(api: httpx.Client) -> None:
    marker = uuid.uuid4().hex[:8]
    incident = result(api.post("/api/now/table/incident", json={"work_notes": f"older {marker}"}), 201)
    path = f"/api/now/table/incident/{incident['sys_id']}"
    result(api.patch(path, json={"work_notes": f"newer {marker}"}))
    history = result(api.get(path, params={"sysparm_display_value": "true"}))["work_notes"]
    entries = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - changeloop\.integration \(Work notes\)\n(.*)\n", history)
    assert entries == [f"newer {marker}", f"older {marker}"]


def test_an_update_that_changes_nothing_is_not_a_write(api: httpx.Client, control: httpx.Client) -> None:
    created = result(api.post("/api/now/table/cmn_location", json={"name": "same", "city": "Oslo"}), 201)
    before = control.get("/stats").json()["writes"]
    updated = result(api.patch(f"/api/now/table/cmn_location/{created['sys_id']}", json={"city": "Oslo"}))
    assert updated["sys_mod_count"] == "0"
    assert control.get("/stats").json()["writes"] == before
