"""The instance's own logic on change_request and incident: defaults, the change model, data policies,
the computed incident priority, and the outbound Business Rule's trigger and body.

A refusal raises `RuleViolation`; the Table API answers 403 and writes nothing. The webhook body here and the
JavaScript in deploy/servicenow/changeloop_business_rule.js must send the identical field set
(`WEBHOOK_FIELDS`); a test reads the script and compares.
"""

from __future__ import annotations

from collections.abc import Callable

from sandbox.tables import get_table
from servicenow.change_request import Approval, ChangeState, ChangeType, allowed_change_transition
from servicenow.incident import IncidentState

Record = dict[str, str]

# The body the Business Rule POSTs, in the script's order. `*_name` fields carry display values so the shim
# can pick a runbook by template name without calling back into the instance.
WEBHOOK_FIELDS = (
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

# Standard 3x3 impact × urgency matrix (1 high … 3 low) → priority 1 Critical … 5 Planning.
_PRIORITY = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}

_CLOSE_FIELDS = {"close_code": "Close code", "close_notes": "Close notes"}


class RuleViolation(Exception):
    """A business rule or data policy refused the write (403 "Operation Failed")."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _label(table: str, field: str, value: str) -> str:
    schema = get_table(table)
    return schema.choices.get(field, {}).get(value, value) if schema else value


def _require_close_fields(merged: Record) -> None:
    missing = [label for name, label in _CLOSE_FIELDS.items() if not merged.get(name, "").strip()]
    if missing:
        raise RuleViolation(f"Data Policy Exception: The following fields are mandatory: {', '.join(missing)}")


def before_insert(table: str, values: Record) -> Record:
    """Defaults and checks for a new record; answers the values to store."""
    if table == "change_request":
        values.setdefault("type", ChangeType.NORMAL.value)
        values.setdefault("state", ChangeState.NEW.value)
        values.setdefault("approval", Approval.NOT_REQUESTED.value)
        _check_change_insert(values)
    elif table == "incident":
        values.setdefault("state", IncidentState.NEW.value)
        values.setdefault("impact", "3")
        values.setdefault("urgency", "3")
        _check_incident(values, values)
    elif table == "change_task":
        values.setdefault("state", "1")  # Open (create-a-change-task.md)
    if table in ("change_request", "incident", "change_task"):
        values.setdefault("active", "true")
    return _derive(table, {}, values)


def _check_change_insert(values: Record) -> None:
    state, change_type = values["state"], values["type"]
    # A change starts at New; a standard change from a template is pre-approved and may start at Scheduled.
    allowed = {ChangeState.NEW.value}
    if change_type == ChangeType.STANDARD.value:
        allowed.add(ChangeState.SCHEDULED.value)
    if state not in allowed:
        raise RuleViolation(
            f"Invalid state transition: New -> {_label('change_request', 'state', state)} "
            f"is not allowed for a {change_type} change"
        )


def before_update(table: str, old: Record, changes: Record) -> Record:
    """Checks an update against the current record; answers the changes to store (with derived fields)."""
    merged = {**old, **changes}
    if table == "change_request":
        _check_change_update(old, merged)
    elif table == "incident":
        _check_incident(old, merged)
    return _derive(table, old, changes)


def _check_change_update(old: Record, merged: Record) -> None:
    current, target = old.get("state", ChangeState.NEW.value), merged.get("state", "")
    change_type = merged.get("type") or ChangeType.NORMAL.value
    if current == target:
        return
    try:
        allowed = allowed_change_transition(change_type, current, target)
    except ValueError:  # a state or type the change model doesn't know
        allowed = False
    if not allowed:
        raise RuleViolation(
            f"Invalid state transition: {_label('change_request', 'state', current)} -> "
            f"{_label('change_request', 'state', target)} is not allowed for a {change_type} change"
        )
    if target == ChangeState.CLOSED.value:
        _require_close_fields(merged)


def _check_incident(old: Record, merged: Record) -> None:
    target = merged.get("state", "")
    closing = {IncidentState.RESOLVED.value, IncidentState.CLOSED.value}
    if target in closing and (old is merged or old.get("state") != target):
        _require_close_fields(merged)


def _derive(table: str, old: Record, changes: Record) -> Record:
    """Fields the instance computes: incident priority, pre-approval of standard changes, close stamps."""
    merged = {**old, **changes}
    if table == "incident":
        changes.pop("priority", None)  # never settable: the priority lookup rule owns it
        priority = _PRIORITY.get((merged.get("impact", "3"), merged.get("urgency", "3")), "5")
        if priority != old.get("priority"):
            changes["priority"] = priority
    if (
        table == "change_request"
        and merged.get("type") == ChangeType.STANDARD.value
        and merged.get("state") == ChangeState.SCHEDULED.value
        and merged.get("approval") in ("", Approval.NOT_REQUESTED.value, Approval.REQUESTED.value)
    ):
        changes["approval"] = Approval.APPROVED.value
    return changes


def closing_stamps(table: str, old: Record, changes: Record, now: str) -> None:
    """resolved_at / closed_at / active follow the state, as the instance's own rules set them."""
    state = changes.get("state")
    if state is None or state == old.get("state"):
        return
    if table == "incident" and state == IncidentState.RESOLVED.value:
        changes.setdefault("resolved_at", now)
    closed = {
        "incident": {IncidentState.CLOSED.value, IncidentState.CANCELED.value},
        "change_request": {"3", "4"},
        "change_task": {"3", "4"},  # Closed, Canceled
    }
    if state in closed.get(table, set()):
        changes.setdefault("closed_at", now)
        changes["active"] = "false"


# --- the outbound Business Rule ------------------------------------------------------------------------------


def webhook_should_fire(previous: Record | None, current: Record) -> bool:
    """`approval` changes to approved, or a pre-approved standard change's `state` changes to Scheduled.

    On insert every field "changes" from empty, exactly like `changesTo()` in an after-insert rule.
    """
    before = previous or {}

    def changes_to(field: str, value: str) -> bool:
        return current.get(field) == value and before.get(field) != value

    if changes_to("approval", Approval.APPROVED.value):
        return True
    return (
        current.get("type") == ChangeType.STANDARD.value
        and current.get("approval") == Approval.APPROVED.value
        and changes_to("state", ChangeState.SCHEDULED.value)
    )


def webhook_body(record: Record, display_of: Callable[[str, str], str]) -> dict[str, str]:
    """The JSON the script sends: values as stored (references as sys_ids) plus two display names."""
    body = {name: record.get(name, "") for name in WEBHOOK_FIELDS}
    body["cmdb_ci_name"] = display_of("cmdb_ci", record.get("cmdb_ci", ""))
    body["std_change_producer_version_name"] = display_of(
        "std_change_producer_version", record.get("std_change_producer_version", "")
    )
    return body
