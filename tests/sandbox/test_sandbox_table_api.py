"""The Table API's shapes: envelopes, string values, references, display values, fields, errors, pagination."""

from __future__ import annotations

import re
import uuid

import httpx

from sandbox.seed import seed_sys_id
from tests.sandbox.support import result

PAYMENTS_API = seed_sys_id("cmdb_ci", "payments-api")
PAYMENTS_SRE = seed_sys_id("sys_user_group", "Payments SRE")
CHG1 = seed_sys_id("change_request", "CHG0030001")


def test_list_answers_result_array_and_one_record_answers_result_object(api: httpx.Client) -> None:
    listed = api.get("/api/now/table/cmdb_ci_appl").json()
    one = api.get(f"/api/now/table/cmdb_ci_appl/{PAYMENTS_API}").json()
    assert isinstance(listed["result"], list) and len(listed["result"]) == 6
    assert isinstance(one["result"], dict) and one["result"]["name"] == "payments-api"


def test_every_value_is_a_string_and_unset_is_empty_string(api: httpx.Client) -> None:
    record = result(api.get(f"/api/now/table/change_request/{CHG1}", params={"sysparm_exclude_reference_link": "true"}))
    assert all(isinstance(v, str) for v in record.values())
    assert record["state"] == "-2" and record["sys_mod_count"] == "0" and record["close_code"] == ""


def test_reference_is_link_and_value(api: httpx.Client, emulator) -> None:
    record = result(api.get(f"/api/now/table/cmdb_ci_appl/{PAYMENTS_API}"))
    assert record["support_group"] == {
        "link": f"{emulator.url}/api/now/table/sys_user_group/{PAYMENTS_SRE}",
        "value": PAYMENTS_SRE,
    }
    assert record["owned_by"] == ""  # an empty reference is an empty string


def test_exclude_reference_link_gives_plain_sys_id(api: httpx.Client) -> None:
    params = {"sysparm_exclude_reference_link": "true"}
    record = result(api.get(f"/api/now/table/cmdb_ci_appl/{PAYMENTS_API}", params=params))
    assert record["support_group"] == PAYMENTS_SRE


def test_display_value_true_shows_labels_and_display_values(api: httpx.Client) -> None:
    params = {"sysparm_display_value": "true", "sysparm_exclude_reference_link": "true"}
    record = result(api.get(f"/api/now/table/change_request/{CHG1}", params=params))
    assert record["state"] == "Scheduled"
    assert record["approval"] == "Approved"
    assert record["cmdb_ci"] == "payments-api"
    assert record["std_change_producer_version"] == "Restart application service"
    linked = result(api.get(f"/api/now/table/change_request/{CHG1}", params={"sysparm_display_value": "true"}))
    assert linked["assignment_group"]["display_value"] == "Payments SRE" and "link" in linked["assignment_group"]


def test_display_value_all_gives_display_value_and_value(api: httpx.Client) -> None:
    record = result(api.get(f"/api/now/table/change_request/{CHG1}", params={"sysparm_display_value": "all"}))
    assert record["state"] == {"display_value": "Scheduled", "value": "-2"}
    assert record["cmdb_ci"]["display_value"] == "payments-api"
    assert record["cmdb_ci"]["value"] == PAYMENTS_API and record["cmdb_ci"]["link"].endswith(PAYMENTS_API)


def test_fields_limits_the_answer_and_dot_walks_one_reference(api: httpx.Client) -> None:
    params = {"sysparm_fields": "number,cmdb_ci.name,assignment_group.name,no_such_field"}
    record = result(api.get(f"/api/now/table/change_request/{CHG1}", params=params))
    assert record == {"number": "CHG0030001", "cmdb_ci.name": "payments-api", "assignment_group.name": "Payments SRE"}


def test_unknown_table_is_400_invalid_table(api: httpx.Client) -> None:
    response = api.get("/api/now/table/u_no_such_table")
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": "Invalid table u_no_such_table", "detail": None},
        "status": "failure",
    }


def test_unknown_sys_id_is_404_no_record_found(api: httpx.Client) -> None:
    response = api.get(f"/api/now/table/incident/{uuid.uuid4().hex}")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"message": "No Record found", "detail": "Record doesn't exist or ACL restricts the record retrieval"},
        "status": "failure",
    }


def test_post_is_201_patch_updates_delete_is_204(api: httpx.Client) -> None:
    created = result(api.post("/api/now/table/cmn_location", json={"name": "Lisbon DC3", "city": "Lisbon"}), 201)
    path = f"/api/now/table/cmn_location/{created['sys_id']}"
    assert re.fullmatch(r"[0-9a-f]{32}", created["sys_id"])
    updated = result(api.patch(path, json={"city": "Porto"}))
    assert updated["city"] == "Porto" and updated["sys_mod_count"] == "1"
    assert updated["sys_updated_by"] == "changeloop.integration"
    assert api.put(path, json={"country": "Portugal"}).json()["result"]["city"] == "Porto"  # PUT is partial too
    deleted = api.delete(path)
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.get(path).status_code == 404


def test_fields_the_table_does_not_have_are_ignored_but_custom_u_fields_are_kept(api: httpx.Client) -> None:
    body = {"name": "odd-01", "bogus": "x", "u_review_needed": "true"}
    created = result(api.post("/api/now/table/cmdb_ci_linux_server", json=body), 201)
    assert "bogus" not in created and created["u_review_needed"] == "true"


def test_sys_fields_are_stamped_on_insert(api: httpx.Client) -> None:
    created = result(api.post("/api/now/table/cmn_location", json={"name": f"loc-{uuid.uuid4().hex[:6]}"}), 201)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created["sys_created_on"])
    assert created["sys_created_on"] == created["sys_updated_on"]
    assert created["sys_created_by"] == created["sys_updated_by"] == "changeloop.integration"


def test_class_table_records_are_visible_from_parent_classes(api: httpx.Client) -> None:
    server_id = seed_sys_id("cmdb_ci", "pay-web-01")
    for table in ("cmdb_ci", "cmdb_ci_server", "cmdb_ci_linux_server"):
        record = result(api.get(f"/api/now/table/{table}/{server_id}"))
        assert record["sys_class_name"] == "cmdb_ci_linux_server"
    assert api.get(f"/api/now/table/cmdb_ci_appl/{server_id}").status_code == 404
    windows = {"sysparm_query": "name=win-report-01"}
    assert len(result(api.get("/api/now/table/cmdb_ci_server", params=windows))) == 1
    assert result(api.get("/api/now/table/cmdb_ci_linux_server", params=windows)) == []


def test_pagination_headers_across_three_pages(api: httpx.Client) -> None:
    query = {"sysparm_query": "nameSTARTSWITHfleet-^ORDERBYname", "sysparm_limit": "8", "sysparm_fields": "name"}
    names: list[str] = []
    url: str | None = "/api/now/table/cmdb_ci_linux_server"
    params: dict[str, str] | None = query
    pages = []
    while url:
        response = api.get(url, params=params)
        assert response.headers["X-Total-Count"] == "20"
        links = dict((rel, link) for link, rel in re.findall(r'<([^>]+)>;rel="(\w+)"', response.headers["Link"]))
        pages.append(set(links))
        names += [r["name"] for r in response.json()["result"]]
        url, params = links.get("next"), None
    assert names == [f"fleet-{n:02d}" for n in range(1, 21)]
    assert pages == [{"first", "next", "last"}, {"first", "prev", "next", "last"}, {"first", "prev", "last"}]
    assert "sysparm_offset=16" in links["last"] and "sysparm_offset=8" in links["prev"]
