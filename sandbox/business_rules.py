"""The instance's own logic before a write on change_request and incident: defaults, the change model, data
policies, the computed incident priority, and the stamps the instance sets when a record closes.

A refusal raises `RuleViolation`; the Table API answers 403 and writes nothing. The change model itself is
sandbox/change_model.py; what happens after a write (approvals, outbound Business Rules) is sandbox/approvals.py
and sandbox/outbound_rules.py.
"""

from __future__ import annotations

from sandbox.change_model import (
    APPROVAL_STAGES,
    Approval,
    ChangeState,
    ChangeType,
    IncidentState,
    state_label,
    transition,
)
from sandbox.process_settings import ProcessSettings

Record = dict[str, str]

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
    """A business rule, data policy or ACL refused the write (403 "Operation Failed")."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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
        values.setdefault("on_hold", "false")
        values.setdefault("conflict_status", "Not Run")
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
            f"Invalid state transition: New -> {state_label(state)} is not allowed for a {change_type} change"
        )


def before_update(
    table: str, old: Record, changes: Record, settings: ProcessSettings, *, by_flow: bool = False
) -> Record:
    """Checks an update against the current record; answers the changes to store (with derived fields).

    `by_flow`: the write is the instance's own approval flow (sandbox/approvals.py), which alone may make the
    moves the model reserves for it.
    """
    merged = {**old, **changes}
    if table == "change_request":
        _check_change_update(old, merged, changes, settings, by_flow)
    elif table == "incident":
        _check_incident(old, merged)
    return _derive(table, old, changes)


def _check_change_update(
    old: Record, merged: Record, changes: Record, settings: ProcessSettings, by_flow: bool
) -> None:
    current = old.get("state") or ChangeState.NEW.value
    target = merged.get("state") or current
    change_type = merged.get("type") or ChangeType.NORMAL.value
    if old.get("type") and merged.get("type") != old.get("type") and current != ChangeState.NEW.value:
        # c_ChangeStateModel.md "Modify change request type": only while the change is New.
        raise RuleViolation(f"The type of a change can only be changed in New (the change is {state_label(current)})")
    if current == target:
        return
    move = f"{state_label(current)} -> {state_label(target)}"
    held = old.get("on_hold") == "true" and merged.get("on_hold") == "true"
    if held and target != ChangeState.CANCELED.value:
        raise RuleViolation(f"Invalid state transition: {move}: the change is on hold, it can only be canceled")
    arrow = transition(change_type, current, target)
    if arrow is None:
        raise RuleViolation(f"Invalid state transition: {move} is not allowed for a {change_type} change")
    if arrow.by_approval and not by_flow:
        # The model's transition condition: the stage's approvals must be approved, and then the approval flow
        # moves the change itself. Nobody walks a change through Assess/Authorize with a PATCH.
        raise RuleViolation(
            f"Invalid state transition: {move} is not allowed for a {change_type} change: the approval flow makes "
            f"this move when the change's approvals are approved (approval is {merged.get('approval') or 'empty'})"
        )
    if target == ChangeState.CLOSED.value and settings.close_fields_data_policy:
        _require_close_fields(merged)
    if arrow.requests_approval:
        changes["approval"] = Approval.REQUESTED.value
    elif target == ChangeState.NEW.value and current in APPROVAL_STAGES and not by_flow:
        changes["approval"] = Approval.NOT_REQUESTED.value  # Revert to New restarts the approvals
    if target == ChangeState.CANCELED.value and merged.get("on_hold") == "true":
        changes["on_hold"] = "false"  # t_PlaceAChangeRequestOnHold.md: canceled is never still on hold


def _check_incident(old: Record, merged: Record) -> None:
    target = merged.get("state", "")
    closing = {IncidentState.RESOLVED.value, IncidentState.CLOSED.value}
    if target in closing and (old is merged or old.get("state") != target):
        _require_close_fields(merged)


def _derive(table: str, old: Record, changes: Record) -> Record:
    """Fields the instance computes: incident priority, pre-approval of standard changes."""
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


def closing_stamps(table: str, old: Record, changes: Record, now: str, user_id: str = "") -> None:
    """resolved_at / resolved_by / closed_at / active follow the state, as the instance's own rules set them."""
    state = changes.get("state")
    if state is None or state == old.get("state"):
        return
    if table == "incident" and state == IncidentState.RESOLVED.value:
        changes.setdefault("resolved_at", now)
        if not changes.get("resolved_by") and not old.get("resolved_by"):
            changes["resolved_by"] = user_id
    closed = {
        "incident": {IncidentState.CLOSED.value, IncidentState.CANCELED.value},
        "change_request": {ChangeState.CLOSED.value, ChangeState.CANCELED.value},
        "change_task": {"3", "4"},  # Closed, Canceled
    }
    if state in closed.get(table, set()):
        changes.setdefault("closed_at", now)
        changes["active"] = "false"
