"""Create, read, update and delete over the Table API, and the read options a caller relies on."""

from __future__ import annotations

import pytest

from servicenow.client import ServiceNowClient
from servicenow.errors import NotFound
from servicenow.query import Query, QueryValueError


async def test_a_record_round_trips_through_create_get_update_and_delete(sn_client: ServiceNowClient, scope_id):
    created = await sn_client.create(
        "incident",
        {"short_description": f"{scope_id} disk full", "correlation_id": scope_id, "impact": "2", "urgency": "2"},
    )
    sys_id = created["sys_id"]
    assert created["number"].startswith("INC")
    assert created["state"] == "1"  # New
    assert created["impact"] == "2"

    fetched = await sn_client.get("incident", sys_id)
    assert fetched["short_description"] == f"{scope_id} disk full"
    assert fetched["correlation_id"] == scope_id

    updated = await sn_client.update("incident", sys_id, {"short_description": f"{scope_id} disk cleaned"})
    assert updated["short_description"] == f"{scope_id} disk cleaned"
    assert updated["impact"] == "2"  # PATCH leaves the fields it wasn't given
    assert (await sn_client.get("incident", sys_id))["short_description"] == f"{scope_id} disk cleaned"

    await sn_client.delete("incident", sys_id)
    with pytest.raises(NotFound):
        await sn_client.get("incident", sys_id)


async def test_work_notes_are_appended_to_the_journal_not_overwritten(sn_client: ServiceNowClient, scope_id):
    created = await sn_client.create("incident", {"short_description": f"{scope_id} journal", "impact": "3"})
    sys_id = created["sys_id"]
    try:
        await sn_client.update("incident", sys_id, {"work_notes": "first note from changeloop"})
        await sn_client.update("incident", sys_id, {"work_notes": "second note from changeloop"})

        history = (await sn_client.get("incident", sys_id, display_value=True))["work_notes"]
        assert "first note from changeloop" in history
        assert "second note from changeloop" in history
        # value mode reads a journal field as empty, as on a real instance
        assert (await sn_client.get("incident", sys_id))["work_notes"] == ""
    finally:
        await sn_client.delete("incident", sys_id)


async def _incident_on_a_server(sn_client: ServiceNowClient, scope_id: str) -> tuple[dict, dict]:
    server = await sn_client.first("cmdb_ci_server", Query().isnotempty("name"))
    assert server is not None, "the seeded sandbox has servers"
    incident = await sn_client.create(
        "incident", {"short_description": f"{scope_id} refs", "cmdb_ci": server["sys_id"], "impact": "3"}
    )
    return server, incident


async def test_references_come_as_link_and_value_unless_links_are_excluded(
    sn_client: ServiceNowClient, scope_id, sandbox_url
):
    server, incident = await _incident_on_a_server(sn_client, scope_id)
    try:
        assert incident["cmdb_ci"] == server["sys_id"]  # create() asks for bare sys_ids

        default = await sn_client.get("incident", incident["sys_id"])
        assert default["cmdb_ci"] == {
            "link": f"{sandbox_url}/api/now/table/cmdb_ci/{server['sys_id']}",
            "value": server["sys_id"],
        }

        bare = await sn_client.get("incident", incident["sys_id"], exclude_reference_link=True)
        assert bare["cmdb_ci"] == server["sys_id"]
    finally:
        await sn_client.delete("incident", incident["sys_id"])


async def test_display_value_answers_labels_and_display_names(sn_client: ServiceNowClient, scope_id):
    server, incident = await _incident_on_a_server(sn_client, scope_id)
    try:
        shown = await sn_client.get("incident", incident["sys_id"], display_value=True, exclude_reference_link=True)
        assert shown["state"] == "New"
        assert shown["cmdb_ci"] == server["name"]

        both = await sn_client.get("incident", incident["sys_id"], display_value="all", fields=["state", "cmdb_ci"])
        assert set(both) == {"state", "cmdb_ci"}
        assert both["state"] == {"display_value": "New", "value": "1"}
        assert both["cmdb_ci"]["display_value"] == server["name"]
        assert both["cmdb_ci"]["value"] == server["sys_id"]

        raw = await sn_client.get("incident", incident["sys_id"], display_value=False)
        assert raw["state"] == "1"
    finally:
        await sn_client.delete("incident", incident["sys_id"])


async def test_dot_walked_queries_select_through_a_reference(sn_client: ServiceNowClient, scope_id):
    server, incident = await _incident_on_a_server(sn_client, scope_id)
    try:
        query = Query().eq("cmdb_ci.name", server["name"]).eq("short_description", f"{scope_id} refs")
        found = await sn_client.list("incident", query)
        assert [r["sys_id"] for r in found] == [incident["sys_id"]]
    finally:
        await sn_client.delete("incident", incident["sys_id"])


async def test_a_query_value_with_a_caret_is_refused_before_any_request(sn_client: ServiceNowClient, sandbox_control):
    before = await sandbox_control.stats()

    with pytest.raises(QueryValueError, match="short_description"):
        await sn_client.list("incident", Query().eq("short_description", "x^ORactive=true"))
    with pytest.raises(QueryValueError, match="name"):
        await sn_client.first("cmdb_ci", Query().like("name", "web\n"))

    assert await sandbox_control.stats() == before
    assert sn_client.calls == {}
