"""The four outbound Business Rules changeloop ships (deploy/servicenow/*.js), emulated.

Each rule here mirrors one script: same table, trigger condition, URL path, body fields, token property. A rule
fires only while what the update set installs is on the instance, exactly as the script would run only then:
its `sys_script` record (by name, on its table, active), the `x_changeloop.*` system properties (a script with an
empty shim URL or token logs a warning and sends nothing), and the `changeloop shim` REST message with its `post`
method (the scripts build their request from it). `install()` writes all of these; a test deletes or deactivates a
record to see a rule stop. tests/sandbox/test_sandbox_outbound_rules.py compares each rule with its script.

Condition semantics follow GlideElement: `changesTo(v)` is "now v and was not v before the write";
`changes()` is "differs from before"; on insert every field changes from empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from sandbox.change_model import Approval, ApprovalState, ChangeState, ChangeType, IncidentState

if TYPE_CHECKING:
    from sandbox.instance import Instance

Record = dict[str, str]

SHIM_URL = "x_changeloop.shim_url"
WEBHOOK_TOKEN = "x_changeloop.webhook_token"
INCIDENT_TOKEN = "x_changeloop.incident_token"
PROPERTIES = {
    SHIM_URL: ("string", "Base URL of the changeloop starter shim, e.g. https://changeloop.example.com (no slash)"),
    WEBHOOK_TOKEN: ("password2", "Bearer token of the `servicenow` principal (scope change:webhook)"),
    INCIDENT_TOKEN: ("password2", "Bearer token of the incident-resolve principal (scope incident:resolve)"),
}
REST_MESSAGE = "changeloop shim"
REST_METHOD = "post"

# The shipped scripts, when the sandbox runs from a checkout (the sandbox is a dev dependency).
SCRIPTS = Path(__file__).resolve().parents[1] / "deploy" / "servicenow"


@dataclass(frozen=True)
class Write:
    """What a rule's script sees of one write: `current`, `previous`, the journal entries made by the write."""

    previous: Record | None
    current: Record
    journals: Record
    instance: Instance

    def before(self, field: str) -> str:
        return (self.previous or {}).get(field, "")

    def changes(self, field: str) -> bool:
        return self.current.get(field, "") != self.before(field)

    def changes_to(self, field: str, value: str) -> bool:
        return self.current.get(field) == value and self.before(field) != value

    def user_name(self, sys_id: str) -> str:
        user = self.instance.lookup("sys_user", sys_id) if sys_id else None
        return user.get("user_name", "") if user else ""


@dataclass(frozen=True)
class OutboundRule:
    name: str  # sys_script.name
    collection: str  # sys_script.collection: the table
    on_insert: bool
    on_update: bool
    condition: str  # sys_script.condition, as in the script's header
    script_file: str
    token_property: str
    fields: tuple[str, ...]  # the body's keys, in the script's order
    fires: Callable[[Write], bool]
    path: Callable[[Write], str]
    body: Callable[[Write], dict[str, str]]
    when: str = "after"
    order: int = 100

    def script(self) -> str:
        path = SCRIPTS / self.script_file
        return path.read_text() if path.exists() else f"// {self.name}: emulated by the changeloop sandbox\n"


# --- a. change approved ----------------------------------------------------------------------------------------


def _change_approved(w: Write) -> bool:
    if w.changes_to("approval", Approval.APPROVED):
        return True
    return (
        w.current.get("type") == ChangeType.STANDARD
        and w.current.get("approval") == Approval.APPROVED
        and w.changes_to("state", ChangeState.SCHEDULED)
    )


CHANGE_FIELDS = (
    "sys_id",
    "number",
    "state",
    "type",
    "approval",
    "category",
    "short_description",
    "cmdb_ci",
    "cmdb_ci_name",
    "std_change_producer_version",
    "std_change_producer_version_name",
)


def _change_body(w: Write) -> dict[str, str]:
    body = {name: w.current.get(name, "") for name in CHANGE_FIELDS}
    body["cmdb_ci_name"] = w.instance.display_of("cmdb_ci", w.current.get("cmdb_ci", ""))
    body["std_change_producer_version_name"] = w.instance.display_of(
        "std_change_producer_version", w.current.get("std_change_producer_version", "")
    )
    return body


# --- b. approval decided ---------------------------------------------------------------------------------------

APPROVAL_FIELDS = ("number", "sys_id", "approval_sys_id", "approval", "approver", "comments")


def _approval_decided(w: Write) -> bool:
    decided = w.changes_to("state", ApprovalState.APPROVED) or w.changes_to("state", ApprovalState.REJECTED)
    return decided and w.current.get("source_table") == "change_request"


def _approval_body(w: Write) -> dict[str, str]:
    change = w.instance.lookup("change_request", w.current.get("sysapproval", "")) or {}
    return {
        "number": change.get("number", ""),
        "sys_id": w.current.get("document_id") or w.current.get("sysapproval", ""),
        "approval_sys_id": w.current["sys_id"],
        "approval": w.current.get("state", ""),
        "approver": w.user_name(w.current.get("approver", "")),
        "comments": w.journals.get("comments", ""),
    }


# --- c. change canceled / on hold / rescheduled -------------------------------------------------------------------

EVENT_FIELDS = ("number", "sys_id", "state", "on_hold", "on_hold_reason", "start_date", "end_date")


def _change_event(w: Write) -> bool:
    return (
        w.changes_to("state", ChangeState.CANCELED)
        or w.changes("on_hold")
        or w.changes("start_date")
        or w.changes("end_date")
    )


def _event_body(w: Write) -> dict[str, str]:
    body = {name: w.current.get(name, "") for name in EVENT_FIELDS}
    body["on_hold"] = "true" if w.current.get("on_hold") == "true" else "false"
    return body


# --- d. incident resolved ----------------------------------------------------------------------------------------

INCIDENT_FIELDS = ("resolved_by", "close_code", "close_notes", "correlation_id")


def _incident_resolved(w: Write) -> bool:
    return w.changes_to("state", IncidentState.RESOLVED) and w.current.get("correlation_display") == "changeloop"


def _incident_body(w: Write) -> dict[str, str]:
    return {
        "resolved_by": w.user_name(w.current.get("resolved_by", "")) or w.current.get("sys_updated_by", ""),
        "close_code": w.current.get("close_code", ""),
        "close_notes": w.current.get("close_notes", ""),
        "correlation_id": w.current.get("correlation_id", ""),
    }


RULES: tuple[OutboundRule, ...] = (
    OutboundRule(
        name="changeloop: send approved change",
        collection="change_request",
        on_insert=True,
        on_update=True,
        condition=(
            "current.approval.changesTo('approved') || (current.type == 'standard' && "
            "current.approval == 'approved' && current.state.changesTo('-2'))"
        ),
        script_file="changeloop_business_rule.js",
        token_property=WEBHOOK_TOKEN,
        fields=CHANGE_FIELDS,
        fires=_change_approved,
        path=lambda w: CHANGE_PATH,
        body=_change_body,
    ),
    OutboundRule(
        name="changeloop: send approval decision",
        collection="sysapproval_approver",
        on_insert=False,
        on_update=True,
        condition=(
            "(current.state.changesTo('approved') || current.state.changesTo('rejected')) && "
            "current.source_table == 'change_request'"
        ),
        script_file="changeloop_approval_rule.js",
        token_property=WEBHOOK_TOKEN,
        fields=APPROVAL_FIELDS,
        fires=_approval_decided,
        path=lambda w: "/api/servicenow/approval",
        body=_approval_body,
    ),
    OutboundRule(
        name="changeloop: send change event",
        collection="change_request",
        on_insert=False,
        on_update=True,
        condition=(
            "current.state.changesTo('4') || current.on_hold.changes() || current.start_date.changes() || "
            "current.end_date.changes()"
        ),
        script_file="changeloop_change_event_rule.js",
        token_property=WEBHOOK_TOKEN,
        fields=EVENT_FIELDS,
        fires=_change_event,
        path=lambda w: "/api/servicenow/change/event",
        body=_event_body,
    ),
    OutboundRule(
        name="changeloop: send resolved incident",
        collection="incident",
        on_insert=False,
        on_update=True,
        condition="current.state.changesTo('6') && current.correlation_display == 'changeloop'",
        script_file="changeloop_incident_resolved_rule.js",
        token_property=INCIDENT_TOKEN,
        fields=INCIDENT_FIELDS,
        fires=_incident_resolved,
        path=lambda w: f"/api/incidents/{quote(w.current.get('number', ''), safe='')}/resolve",
        body=_incident_body,
    ),
)


# --- installation (what the update set does) ---------------------------------------------------------------------

CHANGE_PATH = "/api/servicenow/change"


def shim_base(url: str) -> str:
    """The shim's base URL from what SandboxConfig.webhook_url historically held: its change URL."""
    return url.rstrip("/").removesuffix(CHANGE_PATH)


def configure(instance: Instance, shim_url: str, webhook_token: str, incident_token: str) -> None:
    """Point the rules at a shim: with a URL, (re)install everything; without, only blank the existing properties."""
    instance.rule_target = (shim_url, webhook_token, incident_token)
    if shim_url:
        install(instance, shim_url, webhook_token, incident_token)
        return
    values = {SHIM_URL: shim_url, WEBHOOK_TOKEN: webhook_token, INCIDENT_TOKEN: incident_token}
    for name, value in values.items():
        existing = instance.find("sys_properties", "name", name)
        if existing is not None and existing.get("value") != value:
            instance.update("sys_properties", existing["sys_id"], {"value": value}, "system", flow=True)


def install(instance: Instance, shim_url: str, webhook_token: str, incident_token: str) -> None:
    """What importing and committing the update set does, then setting the properties: every record as shipped."""
    values = {SHIM_URL: shim_url, WEBHOOK_TOKEN: webhook_token, INCIDENT_TOKEN: incident_token}
    for name, (kind, description) in PROPERTIES.items():
        existing = instance.find("sys_properties", "name", name)
        if existing is None:
            body = {"name": name, "value": values[name], "type": kind, "description": description}
            instance.create("sys_properties", {**body, "read_roles": "admin"}, "system", flow=True)
        elif existing.get("value") != values[name]:
            instance.update("sys_properties", existing["sys_id"], {"value": values[name]}, "system", flow=True)
    for rule in RULES:
        # Like committing the update set again: each rule's record is put back as shipped (active, same script).
        existing = instance.find("sys_script", "name", rule.name)
        if existing is None:
            instance.create("sys_script", script_record(rule), "system", flow=True)
        else:
            instance.update("sys_script", existing["sys_id"], script_record(rule), "system", flow=True)
    message = instance.find("sys_rest_message", "name", REST_MESSAGE)
    if message is None:
        message = instance.create("sys_rest_message", rest_message_record(), "system", flow=True)
    methods = [r for r in instance.store.rows("sys_rest_message_fn") if r.get("rest_message") == message["sys_id"]]
    if not any(r.get("function_name") == REST_METHOD for r in methods):
        instance.create(
            "sys_rest_message_fn", {**rest_method_record(), "rest_message": message["sys_id"]}, "system", flow=True
        )


def script_record(rule: OutboundRule) -> Record:
    """The sys_script record of a rule (also what deploy/servicenow/build_update_set.py embeds)."""
    return {
        "name": rule.name,
        "collection": rule.collection,
        "when": rule.when,
        "order": str(rule.order),
        "action_insert": "true" if rule.on_insert else "false",
        "action_update": "true" if rule.on_update else "false",
        "action_delete": "false",
        "action_query": "false",
        "active": "true",
        "advanced": "true",
        "condition": rule.condition,
        "script": rule.script(),
        "description": f"changeloop: see deploy/servicenow/{rule.script_file}",
    }


def rest_message_record() -> Record:
    return {
        "name": REST_MESSAGE,
        "rest_endpoint": "${shim_url}",
        "authentication_type": "no_authentication",
        "description": "changeloop starter shim; the rules set the endpoint from x_changeloop.shim_url",
    }


def rest_method_record() -> Record:
    return {"function_name": REST_METHOD, "http_method": "post", "rest_endpoint": "${shim_url}"}


def property_value(instance: Instance, name: str) -> str:
    record = instance.find("sys_properties", "name", name)
    return record.get("value", "") if record else ""


# --- firing ------------------------------------------------------------------------------------------------------


def _installed(instance: Instance, rule: OutboundRule) -> bool:
    script = instance.find("sys_script", "name", rule.name)
    if script is None or script.get("active") != "true" or script.get("collection") != rule.collection:
        return False
    message = instance.find("sys_rest_message", "name", REST_MESSAGE)
    return message is not None and any(
        r.get("rest_message") == message["sys_id"] and r.get("function_name") == REST_METHOD
        for r in instance.store.rows("sys_rest_message_fn")
    )


def after_write(instance: Instance, table: str, previous: Record | None, current: Record, journals: Record) -> None:
    """Run every installed rule on `table` whose trigger matches this write; each queues its POST."""
    write = Write(previous=previous, current=current, journals=journals, instance=instance)
    for rule in RULES:
        if rule.collection != table or not (rule.on_insert if previous is None else rule.on_update):
            continue
        if not rule.fires(write) or not _installed(instance, rule):
            continue
        shim_url, token = property_value(instance, SHIM_URL), property_value(instance, rule.token_property)
        if not shim_url or not token:
            continue  # the script logs a warning and sends nothing
        instance.emitter.emit(f"{shim_url}{rule.path(write)}", token, rule.body(write), rule=rule.name)
