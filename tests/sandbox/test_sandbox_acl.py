"""Row-level ACLs as an instance applies them: after sysparm_limit/sysparm_offset cut the page (c_TableAPI.md)."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from sandbox.seed import seed_sys_id
from tests.sandbox.support import result

INTEGRATION_ID = seed_sys_id("sys_user", "changeloop.integration")
ADMIN_ID = seed_sys_id("sys_user", "admin")


def _make_incidents(api: httpx.Client, n: int) -> tuple[str, list[dict[str, str]]]:
    """`n` incidents of this test's own (correlation_id), in number order."""
    marker = f"acl-{uuid.uuid4().hex[:10]}"
    for i in range(n):
        body = {"short_description": f"{marker} #{i:02d}", "correlation_id": marker}
        result(api.post("/api/now/table/incident", json=body), 201)
    rows = result(
        api.get("/api/now/table/incident", params={"sysparm_query": f"correlation_id={marker}^ORDERBYnumber"})
    )
    assert len(rows) == n
    return marker, rows


def _hide(control: httpx.Client, table: str, sys_ids: list[str], user: str | None = "changeloop.integration") -> None:
    control.put("/acl", json={"rules": [{"table": table, "user": user, "sys_ids": sys_ids}]}).raise_for_status()


def _next_offset(response: httpx.Response) -> int | None:
    for part in response.headers["Link"].split(","):
        url, _, rel = part.partition(";")
        if rel.strip() == 'rel="next"':
            return int(parse_qs(urlparse(url.strip("<> ")).query)["sysparm_offset"][0])
    return None


def test_a_page_is_cut_before_the_acl_so_it_comes_back_short_or_empty_while_more_rows_follow(
    api: httpx.Client, control: httpx.Client
) -> None:
    marker, rows = _make_incidents(api, 30)
    _hide(control, "incident", [r["sys_id"] for r in rows[5:15]])  # one block of 10

    sizes, totals, next_offsets, seen = [], [], [], []
    for offset in range(0, 30, 5):
        params = {
            "sysparm_query": f"correlation_id={marker}^ORDERBYnumber",
            "sysparm_limit": "5",
            "sysparm_offset": str(offset),
        }
        response = api.get("/api/now/table/incident", params=params)
        page = result(response)
        sizes.append(len(page))
        totals.append(response.headers["X-Total-Count"])
        next_offsets.append(_next_offset(response))
        seen += [r["sys_id"] for r in page]

    assert sizes == [5, 0, 0, 5, 5, 5]  # empty pages in the middle, more rows after them
    assert totals == ["30"] * 6  # the query's count, hidden rows included
    assert next_offsets == [5, 10, 15, 20, 25, None]  # next = offset + limit while rows follow
    assert seen == [r["sys_id"] for r in rows[:5] + rows[15:]]


def test_a_hidden_record_is_not_found_for_get_patch_and_delete_but_admin_sees_it(
    api: httpx.Client, admin_api: httpx.Client, control: httpx.Client
) -> None:
    _, rows = _make_incidents(api, 2)
    hidden, shown = rows[0]["sys_id"], rows[1]["sys_id"]
    _hide(control, "incident", [hidden])

    for response in (
        api.get(f"/api/now/table/incident/{hidden}"),
        api.patch(f"/api/now/table/incident/{hidden}", json={"short_description": "changed"}),
        api.delete(f"/api/now/table/incident/{hidden}"),
    ):
        assert response.status_code == 404
        assert response.json() == {
            "error": {
                "message": "No Record found",
                "detail": "Record doesn't exist or ACL restricts the record retrieval",
            },
            "status": "failure",
        }
    assert result(api.get(f"/api/now/table/incident/{shown}"))["sys_id"] == shown
    record = result(admin_api.get(f"/api/now/table/incident/{hidden}"))  # admin overrides
    assert record["short_description"].endswith("#00")  # and the refused PATCH changed nothing


def test_a_rule_by_encoded_query_hides_matching_rows_for_its_user_only(
    api: httpx.Client, admin_api: httpx.Client, control: httpx.Client
) -> None:
    marker, _ = _make_incidents(api, 4)
    rule = {
        "table": "incident",
        "user": "changeloop.integration",
        "query": "short_descriptionENDSWITH#01^ORshort_descriptionENDSWITH#03",
    }
    control.put("/acl", json={"rules": [rule]}).raise_for_status()

    query = {"sysparm_query": f"correlation_id={marker}^ORDERBYnumber"}
    visible = [r["short_description"][-3:] for r in result(api.get("/api/now/table/incident", params=query))]
    assert visible == ["#00", "#02"]
    assert len(result(admin_api.get("/api/now/table/incident", params=query))) == 4


def test_a_rule_on_a_class_also_hides_the_records_of_the_classes_extending_it(
    api: httpx.Client, control: httpx.Client
) -> None:
    server = seed_sys_id("cmdb_ci", "pay-web-01")
    _hide(control, "cmdb_ci", [server])

    assert api.get(f"/api/now/table/cmdb_ci_linux_server/{server}").status_code == 404
    names = {
        r["name"]
        for r in result(
            api.get("/api/now/table/cmdb_ci_linux_server", params={"sysparm_query": "nameSTARTSWITHpay-web-"})
        )
    }
    assert names == {"pay-web-02", "pay-web-03", "pay-web-04"}


def test_a_rule_without_a_user_applies_to_everyone_but_admin(
    api: httpx.Client, admin_api: httpx.Client, control: httpx.Client
) -> None:
    location = seed_sys_id("cmn_location", "Dublin DC2")
    _hide(control, "cmn_location", [location], user=None)
    assert api.get(f"/api/now/table/cmn_location/{location}").status_code == 404
    assert admin_api.get(f"/api/now/table/cmn_location/{location}").status_code == 200


def test_reset_faults_lifts_every_acl_rule(api: httpx.Client, control: httpx.Client) -> None:
    location = seed_sys_id("cmn_location", "Frankfurt DC1")
    _hide(control, "cmn_location", [location])
    assert api.get(f"/api/now/table/cmn_location/{location}").status_code == 404
    control.post("/reset-faults").raise_for_status()
    assert control.get("/acl").json() == {"rules": []}
    assert api.get(f"/api/now/table/cmn_location/{location}").status_code == 200


def test_a_rule_for_an_unknown_table_is_refused(control: httpx.Client) -> None:
    response = control.put("/acl", json={"rules": [{"table": "no_such_table", "sys_ids": ["x"]}]})
    assert response.status_code == 422
    assert control.get("/acl").json() == {"rules": []}


def test_no_count_and_suppress_pagination_header_leave_the_headers_out(api: httpx.Client) -> None:
    params = {"sysparm_limit": "1"}
    plain = api.get("/api/now/table/cmn_location", params=params)
    assert "X-Total-Count" in plain.headers and "Link" in plain.headers
    quiet = api.get(
        "/api/now/table/cmn_location",
        params={**params, "sysparm_no_count": "true", "sysparm_suppress_pagination_header": "true"},
    )
    assert quiet.status_code == 200 and len(quiet.json()["result"]) == 1
    assert "X-Total-Count" not in quiet.headers and "Link" not in quiet.headers


def test_a_fault_can_strip_the_count_header_from_every_answer(api: httpx.Client, control: httpx.Client) -> None:
    control.put("/faults", json={"strip_headers": ["X-Total-Count"]}).raise_for_status()
    response = api.get("/api/now/table/cmn_location", params={"sysparm_limit": "1"})
    assert response.status_code == 200
    assert "X-Total-Count" not in response.headers and "Link" in response.headers
    control.post("/reset-faults").raise_for_status()
    assert "X-Total-Count" in api.get("/api/now/table/cmn_location", params={"sysparm_limit": "1"}).headers


@pytest.mark.parametrize(
    ("table", "body"),
    [
        ("incident", {"short_description": "opened_by check"}),
        ("change_request", {"short_description": "opened_by check"}),
        ("change_task", {"short_description": "opened_by check"}),
    ],
)
def test_opened_by_is_the_calling_user_on_insert(api: httpx.Client, table: str, body: dict[str, str]) -> None:
    created = result(api.post(f"/api/now/table/{table}", json=body, params={"sysparm_display_value": "all"}), 201)
    assert created["opened_by"]["value"] == INTEGRATION_ID
    assert created["opened_by"]["display_value"] == "changeloop Integration"


def test_opened_by_given_by_the_caller_is_kept_and_admin_inserts_are_opened_by_admin(
    api: httpx.Client, admin_api: httpx.Client
) -> None:
    by_admin = result(admin_api.post("/api/now/table/incident", json={"short_description": "by admin"}), 201)
    assert by_admin["opened_by"]["value"] == ADMIN_ID
    on_behalf = result(
        api.post("/api/now/table/incident", json={"short_description": "on behalf", "opened_by": ADMIN_ID}), 201
    )
    assert on_behalf["opened_by"]["value"] == ADMIN_ID
