"""change_request: its states and change models, approvals, close codes, and the record as changeloop reads it.

Values are the strings the Table API carries. The change model here is changeloop's reading of the instance's
(docs/architecture.md): which forward moves a change makes; the instance decides, and refuses a move with a 403.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from servicenow.records import Display, Ref, Task, Text


class ChangeState(StrEnum):
    NEW = "-5"
    ASSESS = "-4"
    AUTHORIZE = "-3"
    SCHEDULED = "-2"
    IMPLEMENT = "-1"
    REVIEW = "0"
    CLOSED = "3"
    CANCELED = "4"


class ChangeType(StrEnum):
    NORMAL = "normal"
    STANDARD = "standard"
    EMERGENCY = "emergency"


class Approval(StrEnum):
    NOT_REQUESTED = "not requested"
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"


class CloseCode(StrEnum):
    SUCCESSFUL = "successful"
    SUCCESSFUL_ISSUES = "successful_issues"
    UNSUCCESSFUL = "unsuccessful"


_CHANGE_PATHS: dict[ChangeType, list[ChangeState]] = {
    ChangeType.NORMAL: [
        ChangeState.NEW,
        ChangeState.ASSESS,
        ChangeState.AUTHORIZE,
        ChangeState.SCHEDULED,
        ChangeState.IMPLEMENT,
        ChangeState.REVIEW,
        ChangeState.CLOSED,
    ],
    ChangeType.STANDARD: [
        ChangeState.NEW,
        ChangeState.SCHEDULED,
        ChangeState.IMPLEMENT,
        ChangeState.REVIEW,
        ChangeState.CLOSED,
    ],
    ChangeType.EMERGENCY: [
        ChangeState.NEW,
        ChangeState.AUTHORIZE,
        ChangeState.SCHEDULED,
        ChangeState.IMPLEMENT,
        ChangeState.REVIEW,
        ChangeState.CLOSED,
    ],
}

# Canceled is reachable from any state before Review.
_CANCELABLE = {
    ChangeState.NEW,
    ChangeState.ASSESS,
    ChangeState.AUTHORIZE,
    ChangeState.SCHEDULED,
    ChangeState.IMPLEMENT,
}


def change_path(change_type: ChangeType | str) -> list[ChangeState]:
    """The forward states of a change model, in order."""
    return list(_CHANGE_PATHS[ChangeType(change_type)])


def allowed_change_transition(
    change_type: ChangeType | str, current: ChangeState | str, target: ChangeState | str
) -> bool:
    """True when the change model lets a change of this type move from `current` to `target`."""
    current, target = ChangeState(current), ChangeState(target)
    if current == target:
        return True
    if target == ChangeState.CANCELED:
        return current in _CANCELABLE
    path = _CHANGE_PATHS[ChangeType(change_type)]
    if current not in path or target not in path:
        return False
    return path.index(target) == path.index(current) + 1


def transitions_between(
    change_type: ChangeType | str, current: ChangeState | str, target: ChangeState | str
) -> list[ChangeState]:
    """The steps from `current` to `target` along the change model (excluding current), or [] if unreachable."""
    path = _CHANGE_PATHS[ChangeType(change_type)]
    current, target = ChangeState(current), ChangeState(target)
    if current not in path or target not in path or path.index(target) < path.index(current):
        return []
    return path[path.index(current) + 1 : path.index(target) + 1]


class ChangeRequest(Task):
    """A change_request read with `sysparm_display_value=all`: stored values, plus the display names changeloop needs
    (the template's name picks the runbook, the CI's name is the runbook's `{host}`)."""

    type: Text = ""
    approval: Text = ""
    category: Text = ""
    std_change_producer_version: Ref = ""
    template: Display = Field(default="", validation_alias="std_change_producer_version")
    cmdb_ci_name: Display = Field(default="", validation_alias="cmdb_ci")
    start_date: Text = ""
    end_date: Text = ""
    on_hold: Text = ""  # "true" | "false"
    on_hold_reason: Text = ""
