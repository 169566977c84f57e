"""sys_db_object and sys_dictionary: which tables and columns the instance has, as an admin's tool reads them."""

from __future__ import annotations

import httpx

from tests.sandbox.support import result


def _entries(api: httpx.Client, query: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = result(
        api.get(
            "/api/now/table/sys_dictionary",
            params={"sysparm_query": query, "sysparm_fields": "name,element,internal_type,reference"},
        )
    )
    return rows


def test_a_field_is_listed_on_the_table_that_defines_it(api: httpx.Client) -> None:
    assert _entries(api, "name=change_request^element=correlation_id") == [], "task defines it"
    (task_field,) = _entries(api, "name=task^element=correlation_id")
    assert task_field["internal_type"] == "string"
    (own,) = _entries(api, "name=change_request^element=std_change_producer_version")
    assert own["internal_type"] == "reference" and own["reference"] == "std_change_producer_version"
    (notes,) = _entries(api, "name=task^element=work_notes")
    assert notes["internal_type"] == "journal_input"
    (name,) = _entries(api, "nameINcmdb_ci,cmdb_ci_appl^element=name")
    assert name["name"] == "cmdb_ci"


def test_tables_name_what_they_extend(api: httpx.Client) -> None:
    rows = result(
        api.get(
            "/api/now/table/sys_db_object",
            params={"sysparm_query": "nameINincident,task,cmdb_ci_linux_server", "sysparm_display_value": "true"},
        )
    )
    parents = {row["name"]: row["super_class"] and row["super_class"]["display_value"] for row in rows}
    assert parents == {"incident": "task", "task": "", "cmdb_ci_linux_server": "cmdb_ci_server"}
    (collection,) = _entries(api, "name=incident^elementISEMPTY")
    assert collection["internal_type"] == "collection"


def test_a_custom_column_exists_once_an_admin_adds_its_entry(api: httpx.Client, admin_api: httpx.Client) -> None:
    query = "name=change_request^element=u_changeloop_execution"
    assert _entries(api, query) == []
    body = {"name": "change_request", "element": "u_changeloop_execution", "internal_type": "url", "active": "true"}
    created = result(admin_api.post("/api/now/table/sys_dictionary", json=body), 201)
    try:
        assert [r["element"] for r in _entries(api, query)] == ["u_changeloop_execution"]
    finally:
        admin_api.delete(f"/api/now/table/sys_dictionary/{created['sys_id']}").raise_for_status()
    assert _entries(api, query) == []


def test_a_base_system_entry_cannot_be_removed(admin_api: httpx.Client, api: httpx.Client) -> None:
    (entry,) = result(
        admin_api.get("/api/now/table/sys_dictionary", params={"sysparm_query": "name=task^element=close_notes"})
    )
    admin_api.delete(f"/api/now/table/sys_dictionary/{entry['sys_id']}").raise_for_status()
    assert [r["element"] for r in _entries(api, "name=task^element=close_notes")] == ["close_notes"]
