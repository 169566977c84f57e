"""Reconciliation's look-ups as the integration user sees the CMDB: a record it may not read (an ACL hides it) must
not be created a second time. The instance still counts hidden rows (X-Total-Count), so the write refuses, and the
item is named in the summary's failures instead."""

from __future__ import annotations

from typing import Any

from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.conftest import ADMIN_USER, SandboxControl
from tests.reconcile.conftest import Scenario


async def _as_admin(s: Scenario, table: str, query: Query) -> list[dict[str, Any]]:
    async with ServiceNowClient(s.settings.servicenow_url, BasicAuth(*ADMIN_USER)) as admin:
        return await admin.list(table, query)


async def test_a_live_host_whose_ci_the_integration_user_may_not_read_is_not_created_again(
    scenario: Scenario, hidden_rows: SandboxControl
) -> None:
    s = scenario
    secret = await s.ci("vault-01")  # the integration user created it; later a restricting ACL came
    await hidden_rows.hide_rows("cmdb_ci", sys_ids=[secret["sys_id"]])
    await s.ci("app-01")

    summary = await s.run(s.config(s.source("dc1", [s.host("vault-01", "10.9.7.1"), s.host("app-01", "10.9.7.2")])))

    assert summary.new == [s.name("vault-01")], "the pull cannot see it, so the diff calls it new"
    assert summary.created_total == 0
    found = await _as_admin(s, "cmdb_ci_linux_server", Query().eq("serial_number", s.name("SN-vault-01")))
    assert len(found) == 1, "no second CI beside the hidden one"
    (failed,) = summary.failed
    assert failed.startswith(s.name("vault-01")) and "may not read" in failed


async def test_a_missing_ci_whose_open_drift_incident_is_hidden_gets_no_second_incident(
    scenario: Scenario, hidden_rows: SandboxControl
) -> None:
    s = scenario
    gone = await s.ci("gone-01")
    first = await s.run(s.config(s.source("dc1", [])))
    assert first.incidents_total == 1
    (incident,) = await s.incidents_for(gone["sys_id"])
    await hidden_rows.hide_rows("incident", sys_ids=[incident["sys_id"]])  # reassigned to a restricted group

    second = await s.run(s.config(s.source("dc1", [])))

    assert second.incidents_total == 0 and second.incidents_already_open == 0
    assert len(await _as_admin(s, "incident", Query().eq("correlation_id", f"drift-{gone['sys_id']}"))) == 1
    (failed,) = second.failed
    assert failed.startswith(s.name("gone-01")) and "may not read" in failed
