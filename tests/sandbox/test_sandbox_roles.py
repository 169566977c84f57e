"""Roles and the table ACLs that check them; what an admin's tool reads in sys_user_has_role."""

from __future__ import annotations

import uuid

import httpx

from sandbox.server import SandboxConfig, SandboxServer
from tests.sandbox.support import result

ACL_UPDATE = {
    "error": {"message": "Operation Failed", "detail": "ACL Exception Update Failed due to security constraints"},
    "status": "failure",
}


def _own_change(api: httpx.Client) -> str:
    return str(
        result(api.post("/api/now/table/change_request", json={"short_description": "roles test"}), 201)["sys_id"]
    )


def _grants(api: httpx.Client, user: str) -> dict[str, str]:
    """role name -> inherited flag, read through the Table API the way an admin's script would."""
    rows = result(
        api.get(
            "/api/now/table/sys_user_has_role",
            params={"sysparm_query": f"user.user_name={user}", "sysparm_display_value": "true"},
        )
    )
    return {row["role"]["display_value"]: row["inherited"] for row in rows}


def test_the_default_roles_let_the_integration_user_do_what_changeloop_does(control: httpx.Client) -> None:
    roles = control.get("/roles").json()
    assert roles["admin"] == ["admin"]
    assert roles["changeloop.integration"] == ["sn_change_write", "sn_incident_write", "sn_cmdb_editor"]


def test_sys_user_has_role_lists_direct_and_contained_roles(api: httpx.Client) -> None:
    grants = _grants(api, "changeloop.integration")
    assert grants["sn_change_write"] == "false" and grants["sn_change_read"] == "true"
    assert grants["sn_incident_write"] == "false" and grants["sn_incident_read"] == "true"
    assert "admin" not in grants and "itil" not in grants
    role_names = {r["name"] for r in result(api.get("/api/now/table/sys_user_role", params={"sysparm_fields": "name"}))}
    assert {"admin", "itil", "sn_change_write", "sn_change_read", "sn_incident_write"} <= role_names


def test_without_its_change_role_the_integration_user_gets_403_on_writes_and_sees_no_change(
    api: httpx.Client, control: httpx.Client
) -> None:
    change = _own_change(api)
    assert control.delete("/roles/changeloop.integration/sn_change_write").json()["roles"] == [
        "sn_incident_write",
        "sn_cmdb_editor",
    ]

    insert = api.post("/api/now/table/change_request", json={"short_description": "refused"})
    assert insert.status_code == 403
    assert insert.json()["error"]["detail"] == "ACL Exception Insert Failed due to security constraints"
    listed = api.get("/api/now/table/change_request", params={"sysparm_limit": "5"})
    assert listed.status_code == 200 and listed.json()["result"] == []
    assert int(listed.headers["X-Total-Count"]) >= 3  # the rows exist; the read ACL hides them
    assert api.get(f"/api/now/table/change_request/{change}").status_code == 404
    assert "sn_change_write" not in _grants(api, "changeloop.integration")
    # Other tables are unaffected.
    assert api.post("/api/now/table/incident", json={"short_description": "still allowed"}).status_code == 201

    control.put("/roles/changeloop.integration/sn_change_write").raise_for_status()
    assert api.patch(f"/api/now/table/change_request/{change}", json={"work_notes": "back"}).status_code == 200


def test_a_readable_table_without_the_write_role_answers_403_with_the_acl_envelope(
    api: httpx.Client, control: httpx.Client
) -> None:
    change = _own_change(api)
    # Read access only: sn_change_read alone opens change_request for reading, not for writing.
    control.put(
        "/roles/changeloop.integration", json={"roles": ["sn_change_read", "sn_incident_write"]}
    ).raise_for_status()
    assert api.get(f"/api/now/table/change_request/{change}").status_code == 200
    response = api.patch(f"/api/now/table/change_request/{change}", json={"short_description": "nope"})
    assert response.status_code == 403 and response.json() == ACL_UPDATE
    assert api.delete(f"/api/now/table/change_request/{change}").json()["error"]["detail"] == (
        "ACL Exception Delete Failed due to security constraints"
    )


def test_itil_opens_the_task_tables_like_the_application_roles(api: httpx.Client, control: httpx.Client) -> None:
    control.put("/roles/changeloop.integration", json={"roles": ["itil"]}).raise_for_status()
    marker = f"itil-{uuid.uuid4().hex[:8]}"
    for table in ("change_request", "change_task", "incident"):
        assert api.post(f"/api/now/table/{table}", json={"correlation_id": marker}).status_code == 201
    assert api.post("/api/now/table/cmdb_ci", json={"name": marker}).status_code == 201


def test_admin_passes_every_acl_and_nobody_writes_the_role_tables(
    control: httpx.Client, admin_api: httpx.Client
) -> None:
    assert admin_api.post("/api/now/table/change_request", json={"short_description": "admin"}).status_code == 201
    grant = next(iter(result(admin_api.get("/api/now/table/sys_user_has_role", params={"sysparm_limit": "1"}))))
    refused = admin_api.patch(f"/api/now/table/sys_user_has_role/{grant['sys_id']}", json={"state": "pending"})
    assert refused.status_code == 403


def test_reset_faults_restores_the_configured_roles(api: httpx.Client, control: httpx.Client) -> None:
    control.put("/roles/changeloop.integration", json={"roles": []}).raise_for_status()
    assert api.post("/api/now/table/incident", json={"short_description": "no roles"}).status_code == 403
    control.post("/reset-faults").raise_for_status()
    assert control.get("/roles").json()["changeloop.integration"] == [
        "sn_change_write",
        "sn_incident_write",
        "sn_cmdb_editor",
    ]
    assert api.post("/api/now/table/incident", json={"short_description": "roles back"}).status_code == 201


def test_a_user_configured_without_roles_gets_itil_and_an_empty_list_means_none() -> None:
    users = {"admin": "admin", "alice.ops": "alice-pw", "dave.data": "dave-pw"}
    config = SandboxConfig(port=0, users=users, roles={"admin": ["admin"], "dave.data": []})
    with SandboxServer(config) as server:
        assert httpx.get(f"{server.url}/sandbox/roles").json() == {
            "admin": ["admin"],
            "alice.ops": ["itil"],
            "dave.data": [],
        }
        body = {"short_description": "by a fulfiller"}
        alice = httpx.post(f"{server.url}/api/now/table/incident", json=body, auth=("alice.ops", "alice-pw"))
        assert alice.status_code == 201
        dave = httpx.post(f"{server.url}/api/now/table/incident", json=body, auth=("dave.data", "dave-pw"))
        assert dave.status_code == 403
