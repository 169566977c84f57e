"""servicenow/change_api.py against the sandbox's sn_chg_rest: presence, templates, one change with its typed values
normalised to the Table API's strings, next states, conflict checks; and the normalisation rules themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from servicenow.change_api import ApiRecord, ChangeApi, NextStates, Presence, plain
from servicenow.change_request import ChangeRequest
from servicenow.client import ServiceNowClient
from servicenow.errors import BadRequest, Forbidden
from tests.changes import Changes
from tests.conftest import SandboxControl


@pytest_asyncio.fixture(loop_scope="session")
async def api(sn_client: ServiceNowClient) -> ChangeApi:
    return ChangeApi(sn_client)


@pytest_asyncio.fixture(loop_scope="session")
async def plugin_absent(sandbox_control: SandboxControl) -> AsyncIterator[None]:
    await sandbox_control.set_config(change_api=False)
    try:
        yield
    finally:
        await sandbox_control.set_config(change_api=True)


async def test_presence_tells_an_instance_with_the_plugin_from_one_without(
    api: ChangeApi, sandbox_control: SandboxControl
) -> None:
    assert await api.presence() == Presence.PRESENT
    assert await ChangeApi(api.client, version="v1").available()
    await sandbox_control.set_config(change_api=False)
    try:
        assert await api.presence() == Presence.ABSENT
        assert not await api.available()
    finally:
        await sandbox_control.set_config(change_api=True)


async def test_templates_are_listed_and_found_by_exact_name(api: ChangeApi) -> None:
    names = {t.name for t in await api.templates()}
    assert {"Restart application service", "Patch Linux servers", "Run maintenance steps"} <= names
    found = await api.find_template("Patch Linux servers")
    assert found is not None and found.active and len(found.sys_id) == 32
    assert await api.find_template("Patch Linux") is None


async def test_a_change_reads_back_as_table_api_strings(api: ChangeApi, changes: Changes) -> None:
    made = await changes.create(template="Restart application service")

    record = await api.get_change(made["sys_id"])

    assert record.value("state") == "-2", "a JSON number -2.0 is the Table API's '-2'"
    assert record.shown("state") == "Scheduled"
    assert record.value("on_hold") == "false" and record.value("approval") == "approved"
    change = ChangeRequest.model_validate(record.as_display_all())
    assert change.number == made["number"] and change.template == "Restart application service"
    assert change.cmdb_ci_name == "payments-api" and change.state == "-2"


async def test_next_states_of_a_scheduled_standard_change(api: ChangeApi, changes: Changes) -> None:
    made = await changes.create(template="Restart application service")

    states = await api.next_states(made["sys_id"])

    assert states.can_move_to("-1") and states.can_move_to("4")
    assert not states.can_move_to("3"), "no jump from Scheduled to Closed"
    assert states.state_label["-1"] == "Implement"

    await api.client.update("change_request", made["sys_id"], {"on_hold": "true", "on_hold_reason": "vendor"})
    held = await api.next_states(made["sys_id"])
    assert not held.can_move_to("-1") and held.blocking_conditions("-1") == ["Not On hold"]
    assert held.can_move_to("4"), "a held change can still be canceled"

    moved = await api.update_change(made["sys_id"], {"on_hold": "false"})
    assert moved.value("on_hold") == "false"


async def test_a_refused_move_is_an_error_not_a_silent_no(api: ChangeApi, changes: Changes) -> None:
    made = await changes.create(template="Restart application service")
    with pytest.raises(BadRequest, match="Invalid state transition"):
        await api.update_change(made["sys_id"], {"state": "3"})


async def test_conflict_check_starts_and_reports(api: ChangeApi, changes: Changes) -> None:
    made = await changes.create(template="Restart application service")
    window = {"start_date": "2031-03-04 05:00:00", "end_date": "2031-03-04 06:00:00"}
    await api.client.update("change_request", made["sys_id"], window)
    assert not (await api.conflict_status(made["sys_id"])).ran

    worker = await api.start_conflict_check(made["sys_id"])
    status = await api.conflict_status(made["sys_id"])

    assert len(worker) == 32
    assert status.ran and status.status == "Conflict"
    assert status.conflicts == [], "payments-api is in no blackout"


async def test_without_write_roles_the_api_refuses_to_create(api: ChangeApi, sandbox_control: SandboxControl) -> None:
    template = await api.find_template("Restart application service")
    assert template is not None
    await sandbox_control._call("DELETE", "/roles/changeloop.integration/sn_change_write")
    try:
        with pytest.raises(Forbidden):
            await api.create_standard(template.sys_id, {"short_description": "must not exist"})
    finally:
        await sandbox_control._call("PUT", "/roles/changeloop.integration/sn_change_write")


def test_typed_values_become_the_table_apis_strings() -> None:
    assert plain({"value": -2.0, "display_value": "Scheduled"}, "state") == "-2"
    assert plain("-2.0", "state") == "-2" and plain("3.0", "impact") == "3"
    assert plain("1.0", "version") == "1.0", "only integer fields lose the .0"
    assert plain(True) == "true" and plain(False) == "false" and plain(None) == ""
    assert plain(1.5) == "1.5" and plain(7) == "7"
    record = ApiRecord.parse(
        {
            "state": {"value": -2.0, "display_value": "Scheduled"},
            "active": {"value": True, "display_value": "true"},
            "start_date": {"value": "2030-01-01 10:00:00", "display_value": "01/01/2030 10:00:00"},
            "__meta": {"ignoredFields": ["description"]},
        }
    )
    assert record.values == {"state": "-2", "active": "true", "start_date": "2030-01-01 10:00:00"}
    assert record.shown("start_date") == "01/01/2030 10:00:00" and record.ignored_fields == ["description"]


def test_next_states_parse_the_documented_sample() -> None:
    # The sample of change-management-api.md, GET .../nextstates (trimmed).
    states = NextStates.parse(
        {
            "available_states": ["0", "4", "-1"],
            "state_transitions": [
                [
                    {
                        "sys_id": "7a0d",
                        "display_value": "Implement to Review",
                        "from_state": "-1",
                        "to_state": "0",
                        "transition_available": False,
                        "automatic_transition": True,
                        "conditions": [
                            {"passed": False, "condition": {"name": "No active Change Tasks", "description": None}}
                        ],
                    },
                    {
                        "sys_id": "db40",
                        "display_value": "Implement to Review",
                        "from_state": "-1",
                        "to_state": "0",
                        "transition_available": True,
                        "automatic_transition": False,
                        "conditions": [{"passed": True, "condition": {"name": "Not On hold", "description": None}}],
                    },
                ]
            ],
            "state_label": {"0": "Review", "4": "Canceled", "-1": "Implement"},
        }
    )
    assert states.can_move_to("0") and not states.can_move_to("3")
    assert states.blocking_conditions("0") == ["No active Change Tasks"]
