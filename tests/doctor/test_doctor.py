"""`changeloop doctor` is green on a complete installation, and names each problem of a misconfigured one with its
fix: the acceptance case (the integration user's write role removed and the change Business Rule missing), then
one test per other check that can be made to fail on the sandbox and the dev server."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from pydantic import SecretStr
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client

from servicenow.client import ServiceNowClient
from starter import schedules
from starter.doctor import AdminLogin, run_doctor
from starter.doctor_report import Status
from starter.doctor_servicenow import PROPERTIES, REST_MESSAGE, REST_METHOD, RULES
from tests.conftest import ADMIN_USER, INTEGRATION_USER, OAUTH_CLIENT, WEBHOOK_TOKEN, SandboxControl
from tests.doctor.conftest import INCIDENT_TOKEN, Installation, changeloop_doctor, installed_record, put_back
from tests.helpers import refused_port, wait_for

UPDATE_SET = Path(__file__).parents[2] / "deploy" / "servicenow" / "changeloop_update_set.xml"


def _statuses(report: object) -> dict[str, Status]:
    return {c.id: c.status for c in report.checks}  # type: ignore[attr-defined]


async def test_green_on_a_complete_installation(installed: Installation) -> None:
    report = await run_doctor(installed.settings)

    assert report.exit_code == 0, [c.line() for c in report.failed]
    not_ok = {c.id: c.status for c in report.checks if c.status != Status.OK}
    assert not_ok == {"servicenow.change_api": Status.INFO, "servicenow.rate_limit": Status.INFO}, not_ok
    ids = {c.id for c in report.checks}
    assert {
        "registry",
        "servicenow.auth",
        "servicenow.access.change_request",
        "servicenow.access.attachments",
        "servicenow.least_privilege",
        "servicenow.dictionary",
        "update_set.rule.send_approved_change",
        "update_set.rule.send_resolved_incident",
        "update_set.rest_message",
        "update_set.property.x_changeloop.webhook_token",
        "shim.reachable",
        "temporal.reachable",
        "temporal.search_attributes",
        f"temporal.schedule.{schedules.CHANGE_POLL}",
        "temporal.worker",
    } <= ids
    assert report.get("shim.reachable").summary.startswith(f"the shim at {installed.shim.url} answers")


async def test_the_command_prints_lines_or_json_and_never_a_token(installed: Installation) -> None:
    code, out, err = await changeloop_doctor(installed.settings)
    assert code == 0, out + err
    assert "✓ changeloop.integration may read and write change_request" in out
    assert "ready: no blocking problem found" in out

    code, out, err = await changeloop_doctor(installed.settings, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["ok"] is True and body["exit_code"] == 0
    assert {c["id"] for c in body["checks"]} >= {"servicenow.auth", "update_set.property.x_changeloop.incident_token"}
    for secret in (WEBHOOK_TOKEN, INCIDENT_TOKEN, INTEGRATION_USER[1]):
        assert secret not in out, "a secret was printed"


async def test_names_the_missing_write_role_and_the_missing_business_rule(
    installed: Installation, sandbox_control: SandboxControl, admin_sn: ServiceNowClient
) -> None:
    await sandbox_control._call("DELETE", "/roles/changeloop.integration/sn_change_write")
    rule = await installed_record(admin_sn, "sys_script", "changeloop: send approved change")
    await admin_sn.update("sys_script", rule, {"active": "false"})

    code, out, err = await changeloop_doctor(installed.settings)

    assert code == 1, out + err
    assert (
        "✗ changeloop.integration may not read or write change_request (no role among read: itil, sn_change_read; "
        "write: itil, sn_change_write): grant sn_change_write to changeloop.integration"
    ) in out
    assert "✗ Business Rule 'changeloop: send approved change' on change_request is inactive" in out

    await admin_sn.delete("sys_script", rule)
    report = await run_doctor(installed.settings)
    assert report.exit_code == 1
    assert {c.id for c in report.failed} == {
        "servicenow.access.change_request",
        "servicenow.access.sysapproval_approver",
        "servicenow.access.sys_journal_field",
        "update_set.rule.send_approved_change",
    }
    missing = report.get("update_set.rule.send_approved_change")
    assert "on change_request is missing" in missing.summary and "changeloop_update_set.xml" in missing.fix
    assert report.get("servicenow.access.change_task").status == Status.WARN, "no shipped workflow writes tasks"
    assert report.get("update_set.rule.send_change_event").status == Status.OK, "the other rule is still there"


async def test_an_integration_user_that_does_not_authenticate(installed: Installation) -> None:
    wrong = installed.settings.model_copy(update={"servicenow_password": SecretStr("not-the-password")})

    report = await run_doctor(wrong)

    auth = report.get("servicenow.auth")
    assert auth.status == Status.FAIL and "does not authenticate" in auth.summary
    assert "CHANGELOOP_SERVICENOW_USERNAME / _PASSWORD" in auth.fix
    assert report.get("update_set").status == Status.SKIPPED and report.exit_code == 1
    assert report.get("temporal.reachable").status == Status.OK, "the other areas are still checked"


async def test_oauth_as_configured(installed: Installation) -> None:
    oauth = installed.settings.model_copy(
        update={"servicenow_client_id": OAUTH_CLIENT[0], "servicenow_client_secret": SecretStr(OAUTH_CLIENT[1])}
    )
    good = (await run_doctor(oauth)).get("servicenow.auth")
    wrong = oauth.model_copy(update={"servicenow_client_secret": SecretStr("not-the-secret")})
    bad = (await run_doctor(wrong)).get("servicenow.auth")

    assert good.status == Status.OK and good.summary.endswith("with OAuth")
    assert bad.status == Status.FAIL and "_CLIENT_ID / _CLIENT_SECRET" in bad.fix


async def test_an_instance_or_a_temporal_that_does_not_answer(installed: Installation) -> None:
    with refused_port() as instance, refused_port() as temporal:
        gone = f"http://127.0.0.1:{instance}"
        report = await run_doctor(
            installed.settings.model_copy(update={"servicenow_url": gone, "temporal_address": f"127.0.0.1:{temporal}"})
        )

    assert report.get("servicenow.auth").summary.startswith(f"ServiceNow at {gone} does not answer")
    assert report.get("temporal.reachable").status == Status.FAIL
    assert report.get("temporal.schedules").status == Status.SKIPPED
    assert {c.id for c in report.failed} == {"servicenow.auth", "temporal.reachable"}


async def test_an_instance_that_fails_or_rate_limits_the_first_call(
    installed: Installation, sandbox_control: SandboxControl
) -> None:
    once = {"method": "GET", "table": "change_request", "count": 1}
    await sandbox_control.set_faults(rules=[{**once, "mode": "error_503"}])
    try:
        failing = await run_doctor(installed.settings)
        await sandbox_control.set_faults(rules=[{**once, "mode": "rate_limit"}])
        limited = await run_doctor(installed.settings)
    finally:
        await sandbox_control.clear_faults()

    auth = failing.get("servicenow.auth")
    assert auth.status == Status.FAIL and "answered 503" in auth.summary, "a 5xx proves nothing about the user"
    assert failing.get("update_set").status == Status.SKIPPED
    assert limited.get("servicenow.auth").status == Status.OK
    rate = limited.get("servicenow.rate_limit")
    assert rate.status == Status.WARN and "rate limited right now" in rate.summary and limited.exit_code == 0


async def test_an_invalid_registry(installed: Installation, tmp_path: Path) -> None:
    bad = tmp_path / "runbooks.yaml"
    bad.write_text("runbooks:\n  r:\n    steps: []\nmatch:\n  - template: T\n    runbook: nowhere\n")

    check = (await run_doctor(installed.settings.model_copy(update={"runbooks": bad}))).get("registry")

    assert check.status == Status.FAIL and str(bad) in check.summary and "nowhere" in check.summary


async def test_empty_properties_and_a_shim_that_does_not_answer(
    installed: Installation, sandbox_control: SandboxControl
) -> None:
    with refused_port() as port:
        closed = f"http://127.0.0.1:{port}"
        await sandbox_control.set_config(shim_url=closed, webhook_token="", incident_token="")
        try:
            report = await run_doctor(installed.settings)
        finally:
            await put_back(sandbox_control, installed.shim.url)

    token = report.get("update_set.property.x_changeloop.webhook_token")
    assert token.status == Status.FAIL and "is empty" in token.summary
    assert report.get("update_set.property.x_changeloop.incident_token").status == Status.WARN
    shim = report.get("shim.reachable")
    assert shim.status == Status.FAIL and shim.summary.startswith(f"the shim at {closed} does not answer /healthz")
    assert report.exit_code == 1


async def test_the_rest_message_without_its_method(
    installed: Installation, sandbox_control: SandboxControl, admin_sn: ServiceNowClient
) -> None:
    await admin_sn.delete("sys_rest_message_fn", await installed_record(admin_sn, "sys_rest_message_fn", REST_METHOD))
    try:
        check = (await run_doctor(installed.settings)).get("update_set.rest_message")
    finally:
        await admin_sn.delete("sys_rest_message", await installed_record(admin_sn, "sys_rest_message", REST_MESSAGE))
        await put_back(sandbox_control, installed.shim.url)  # commits the update set again: both come back
    assert check.status == Status.FAIL and f"has no '{REST_METHOD}' method" in check.summary


async def test_a_configured_custom_field_that_the_instance_lacks(
    installed: Installation, admin_sn: ServiceNowClient
) -> None:
    settings = installed.settings.model_copy(update={"execution_url_field": f"u_cl_{uuid.uuid4().hex[:8]}"})
    field = settings.execution_url_field
    assert field is not None

    report = await run_doctor(settings)
    check = report.get(f"servicenow.dictionary.change_request.{field}")
    assert check.status == Status.WARN and "CHANGELOOP_EXECUTION_URL_FIELD" in check.fix
    assert report.exit_code == 0, "a lost link does not block changes"

    entry = await admin_sn.create(
        "sys_dictionary", {"name": "change_request", "element": field, "internal_type": "url"}
    )
    try:
        statuses = _statuses(await run_doctor(settings))
    finally:
        await admin_sn.delete("sys_dictionary", str(entry["sys_id"]))
    assert f"servicenow.dictionary.change_request.{field}" not in statuses
    assert statuses["servicenow.dictionary"] == Status.OK


async def test_roles_the_integration_user_may_not_read_are_unknown_until_an_admin_reads_them(
    installed: Installation, sandbox_control: SandboxControl
) -> None:
    rule = {"table": "sys_user_has_role", "user": INTEGRATION_USER[0]}
    await sandbox_control._call("PUT", "/acl", {"rules": [rule]})
    try:
        alone = await run_doctor(installed.settings)
        as_admin = await run_doctor(installed.settings, admin=AdminLogin(ADMIN_USER[0], SecretStr(ADMIN_USER[1])))
        cli_code, cli_out, _ = await changeloop_doctor(
            installed.settings, "--admin-user", ADMIN_USER[0], CHANGELOOP_DOCTOR_ADMIN_PASSWORD=ADMIN_USER[1]
        )
    finally:
        await sandbox_control._call("DELETE", "/acl")

    unknown = alone.get("servicenow.access")
    assert unknown.status == Status.UNKNOWN and "--admin-user" in unknown.fix
    assert alone.exit_code == 0, "what could not be verified is said, not failed"
    assert as_admin.get("servicenow.access.change_request").status == Status.OK
    assert cli_code == 0 and "✓ changeloop.integration may read and write change_request" in cli_out, cli_out


async def test_rate_limit_headroom_from_the_instances_headers(
    installed: Installation, sandbox_control: SandboxControl
) -> None:
    def rule(limit: int) -> dict[str, object]:
        return {
            "window_seconds": 3600,
            "rules": [
                {
                    "name": "changeloop",
                    "apply_to": "user",
                    "user": INTEGRATION_USER[0],
                    "table": "change_request",
                    "limit": limit,
                }
            ],
        }

    await sandbox_control._call("PUT", "/rate-limits", rule(5000))
    try:
        roomy = (await run_doctor(installed.settings)).get("servicenow.rate_limit")
        await sandbox_control._call("PUT", "/rate-limits", rule(20))
        tight = (await run_doctor(installed.settings)).get("servicenow.rate_limit")
    finally:
        await sandbox_control._call("POST", "/reset-faults")
    assert roomy.status == Status.INFO and "may make 5000 requests per hour" in roomy.summary
    assert "the scheduled poll alone uses at least 12" in roomy.summary, "poll.interval 5m: 12 per hour"
    assert tight.status == Status.WARN and not tight.blocking and "poll.interval" in tight.fix


async def test_the_change_api_is_information_even_when_forced_on_and_absent(
    installed: Installation, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.set_config(change_api=False)
    try:
        auto = await run_doctor(installed.settings)
        forced = await run_doctor(installed.settings.model_copy(update={"change_api": "on"}))
    finally:
        await sandbox_control.set_config(change_api=True)
    assert auto.get("servicenow.change_api").status == Status.INFO
    assert "absent: changes are created through the Table API" in auto.get("servicenow.change_api").summary
    assert forced.get("servicenow.change_api").status == Status.WARN and forced.exit_code == 0


async def test_a_too_powerful_integration_user(installed: Installation, sandbox_control: SandboxControl) -> None:
    await sandbox_control._call("PUT", "/roles/changeloop.integration/admin")
    try:
        report = await run_doctor(installed.settings)
    finally:
        await sandbox_control._call("POST", "/reset-faults")
    check = report.get("servicenow.least_privilege")
    assert check.status == Status.WARN and "remove admin from changeloop.integration" in check.fix


async def test_schedules_missing_or_paused(installed: Installation, temporal_client: Client) -> None:
    await temporal_client.get_schedule_handle(schedules.CHANGE_POLL).pause(note="incident INC0010042")
    paused = await run_doctor(installed.settings)
    await schedules.delete(temporal_client)
    missing = await run_doctor(installed.settings)

    check = paused.get(f"temporal.schedule.{schedules.CHANGE_POLL}")
    assert check.status == Status.WARN and "paused (incident INC0010042)" in check.summary
    check = missing.get(f"temporal.schedule.{schedules.CHANGE_POLL}")
    assert check.status == Status.FAIL and "changeloop schedules apply" in check.fix


async def test_a_namespace_without_the_search_attributes(installed: Installation, temporal_client: Client) -> None:
    namespace = f"doctor-{uuid.uuid4().hex[:8]}"
    await temporal_client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))
    )
    await wait_for(
        lambda: temporal_client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace)),
        timeout=10,
        message="the namespace exists",
    )

    report = await run_doctor(installed.settings.model_copy(update={"temporal_namespace": namespace}))

    check = report.get("temporal.search_attributes")
    assert check.status == Status.FAIL
    for name, kind in (("ChangeNumber", "Keyword"), ("CmdbCi", "KeywordList"), ("TicketState", "Keyword")):
        assert f"--namespace {namespace} --name {name} --type {kind}" in check.fix
    assert report.get("temporal.worker").status == Status.WARN


def test_the_rules_and_properties_checked_are_those_the_update_set_ships() -> None:
    shipped: dict[str, set[tuple[str, str]]] = {}
    for update in ET.parse(UPDATE_SET).getroot().iter("sys_update_xml"):
        payload = ET.fromstring(update.findtext("payload") or "")
        for record in payload:
            shipped.setdefault(payload.get("table", ""), set()).add(
                (record.findtext("name") or record.findtext("function_name") or "", record.findtext("collection") or "")
            )
    assert shipped["sys_script"] == {(r.name, r.table) for r in RULES}
    assert {name for name, _ in shipped["sys_properties"]} == set(PROPERTIES)
    assert shipped["sys_rest_message"] == {(REST_MESSAGE, "")}
    assert shipped["sys_rest_message_fn"] == {(REST_METHOD, "")}
