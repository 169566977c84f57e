"""ServiceNow state maps as data (DESIGN.md §5). Values are the strings the Table API carries."""

from __future__ import annotations

from enum import StrEnum


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


class IncidentState(StrEnum):
    NEW = "1"
    IN_PROGRESS = "2"
    ON_HOLD = "3"
    RESOLVED = "6"
    CLOSED = "7"
    CANCELED = "8"


class InstallStatus(StrEnum):
    INSTALLED = "1"
    ON_ORDER = "2"
    IN_MAINTENANCE = "3"
    PENDING_INSTALL = "4"
    PENDING_REPAIR = "5"
    IN_STOCK = "6"
    RETIRED = "7"
    ABSENT = "100"


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


# "1 - most critical" ... "4 - not critical" (the field is spelled busines_criticality in the CMDB).
CRITICALITY_LEVELS = ("1 - most critical", "2 - somewhat critical", "3 - less critical", "4 - not critical")
