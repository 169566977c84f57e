"""Encoded queries: every operator, ^OR, ^NQ, ORDER BY, dot-walking, and the silently ignored invalid clause."""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.support import result


def names(api: httpx.Client, query: str, table: str = "cmdb_ci_appl") -> list[str]:
    params = {"sysparm_query": query, "sysparm_fields": "name"}
    return [r["name"] for r in result(api.get(f"/api/now/table/{table}", params=params))]


APPS = ["payments-api", "web-storefront", "reporting-etl", "fleet", "internal-wiki", "legacy-batch"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=fleet", ["fleet"]),
        ("name!=fleet", [a for a in APPS if a != "fleet"]),
        ("nameINfleet,payments-api", ["payments-api", "fleet"]),
        ("nameNOT INfleet,payments-api", [a for a in APPS if a not in ("fleet", "payments-api")]),
        ("nameLIKEstore", ["web-storefront"]),
        ("nameNOTLIKE-", ["fleet"]),
        ("nameSTARTSWITHweb", ["web-storefront"]),
        ("nameENDSWITHbatch", ["legacy-batch"]),
        ("support_groupISEMPTY", ["internal-wiki", "legacy-batch"]),
        ("managed_by_groupISNOTEMPTY", ["payments-api", "web-storefront", "internal-wiki"]),
    ],
)
def test_each_string_operator_selects_like_the_instance(api: httpx.Client, query: str, expected: list[str]) -> None:
    assert names(api, query) == expected


def test_comparisons_on_integer_choice_fields_are_numeric(api: httpx.Client) -> None:
    # As text "-4" > "-2" would hold; as numbers -4 < -2.
    seeded = "^numberINCHG0030001,CHG0030002,CHG0030003"

    def numbers(query: str) -> list[str]:
        params = {"sysparm_query": query + seeded}
        return [r["number"] for r in result(api.get("/api/now/table/change_request", params=params))]

    assert numbers("state<-2") == ["CHG0030002"]
    assert numbers("state<=-2") == ["CHG0030001", "CHG0030002"]
    assert numbers("state>-2") == ["CHG0030003"]
    assert numbers("state>=3") == ["CHG0030003"]


def test_dates_compare_as_strings(api: httpx.Client) -> None:
    assert len(names(api, "sys_created_on>=2000-01-01 00:00:00")) == 6
    assert names(api, "sys_created_on<2000-01-01 00:00:00") == []


def test_or_binds_to_the_previous_term(api: httpx.Client) -> None:
    # busines_criticality=4 AND (name=fleet OR name=internal-wiki)
    assert names(api, "busines_criticality=4 - not critical^name=fleet^ORname=internal-wiki") == ["internal-wiki"]


def test_nq_ors_whole_queries(api: httpx.Client) -> None:
    query = "busines_criticality=1 - most critical^NQname=fleet^support_group.name=Web Platform"
    assert names(api, query) == ["payments-api", "fleet"]


def test_orderbydesc_sorts_descending(api: httpx.Client) -> None:
    assert names(api, "ORDERBYDESCname") == sorted(APPS, reverse=True)
    assert names(api, "ORDERBYbusines_criticality^ORDERBYDESCname")[:3] == [
        "payments-api",
        "web-storefront",
        "reporting-etl",
    ]


def test_dot_walk_queries_through_a_reference(api: httpx.Client) -> None:
    query = "parent.name=payments-api^type.name=Runs on::Runs^ORDERBYchild.name"
    params = {"sysparm_query": query, "sysparm_fields": "child.name"}
    children = [r["child.name"] for r in result(api.get("/api/now/table/cmdb_rel_ci", params=params))]
    assert children == ["pay-web-01", "pay-web-02", "pay-web-03", "pay-web-04"]
    users = {
        "sysparm_query": "parent.sys_class_name=cmdb_ci_appl^child.name=payments-api",
        "sysparm_fields": "parent.name",
    }
    parents = [r["parent.name"] for r in result(api.get("/api/now/table/cmdb_rel_ci", params=users))]
    assert parents == ["web-storefront", "reporting-etl"]


def test_invalid_field_clause_is_silently_ignored(api: httpx.Client) -> None:
    assert names(api, "no_such_field=1^name=fleet") == ["fleet"]
    assert (
        names(api, "no_such_field=1") == APPS
    )  # the trap of an invalid clause (ServiceNow's Table API docs): a typo selects every row
    assert names(api, "name=fleet^ORno_such_field=1") == ["fleet"]


def test_order_ties_keep_insertion_order(api: httpx.Client) -> None:
    # Seeded in one second: ordering by creation time keeps creation order.
    assert names(api, "ORDERBYsys_created_on") == APPS
