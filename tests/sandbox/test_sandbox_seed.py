"""The demo instance: stable names other code and the docs rely on."""

from __future__ import annotations

import httpx

from sandbox.change_model import CRITICALITY_LEVELS
from tests.sandbox.support import result


def query(api: httpx.Client, table: str, q: str, fields: str) -> list[dict[str, str]]:
    params = {"sysparm_query": q, "sysparm_fields": fields, "sysparm_exclude_reference_link": "true"}
    rows: list[dict[str, str]] = result(api.get(f"/api/now/table/{table}", params=params))
    return rows


def test_applications_cover_every_criticality_and_routing_case(api: httpx.Client) -> None:
    fields = "name,busines_criticality,support_group.name,managed_by_group.name"
    apps = {r["name"]: r for r in query(api, "cmdb_ci_appl", "ORDERBYname", fields)}
    assert {a["busines_criticality"] for a in apps.values()} == set(CRITICALITY_LEVELS)
    assert apps["payments-api"]["support_group.name"] == "Payments SRE"
    assert (apps["internal-wiki"]["support_group.name"], apps["internal-wiki"]["managed_by_group.name"]) == (
        "",
        "Service Desk",
    )
    assert (apps["legacy-batch"]["support_group.name"], apps["legacy-batch"]["managed_by_group.name"]) == ("", "")


def test_fleet_app_runs_on_twenty_servers(api: httpx.Client) -> None:
    rels = query(api, "cmdb_rel_ci", "parent.name=fleet^type.name=Runs on::Runs", "child.name")
    assert sorted(r["child.name"] for r in rels) == [f"fleet-{n:02d}" for n in range(1, 21)]


def test_one_server_is_retired(api: httpx.Client) -> None:
    retired = query(api, "cmdb_ci_server", "install_status=7", "name")
    assert [r["name"] for r in retired] == ["batch-02"]


def test_users_groups_templates_and_changes_exist(api: httpx.Client) -> None:
    users = {r["user_name"] for r in query(api, "sys_user", "", "user_name")}
    assert {"admin", "changeloop.integration", "alice.ops", "bob.sre", "carol.cab"} <= users
    groups = {r["name"] for r in query(api, "sys_user_group", "", "name")}
    assert {"Payments SRE", "Web Platform", "Data Platform", "Service Desk"} <= groups
    templates = {r["name"] for r in query(api, "std_change_producer_version", "", "name")}
    assert templates == {"Restart application service", "Patch Linux servers", "Run maintenance steps"}
    changes = query(api, "change_request", "numberINCHG0030001,CHG0030002,CHG0030003", "number,state,approval")
    assert [(c["state"], c["approval"]) for c in changes] == [
        ("-2", "approved"),
        ("-4", "requested"),
        ("3", "approved"),
    ]
    rel_types = {r["name"] for r in query(api, "cmdb_rel_type", "", "name")}
    assert rel_types == {"Depends on::Used by", "Runs on::Runs"}


def test_the_cab_has_carol_and_alice_and_mallory_is_on_no_list(api: httpx.Client) -> None:
    rows = query(api, "sys_user_grmember", "ORDERBYuser.user_name", "group.name,user.user_name")
    members: dict[str, list[str]] = {}
    for row in rows:
        members.setdefault(row["group.name"], []).append(row["user.user_name"])
    assert members["Change Advisory Board"] == ["alice.ops", "carol.cab"]
    assert "mallory" in {r["user_name"] for r in query(api, "sys_user", "", "user_name")}
    assert all("mallory" not in names for names in members.values())
