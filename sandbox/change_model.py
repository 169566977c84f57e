"""The instance's own change models and choice values, written from ServiceNow's documentation.

Never imported from the product: an emulator that shared changeloop's state machine would pass every test
whatever that machine got wrong.

Sources (ServiceNow docs, markdown/it-service-management/change-management/):
- c_ChangeStateModel.md: the state values (New -5 … Canceled 4); "Revert to New" from Assess (normal) and
  Authorize (emergency, normal), which cancels pending approvals; a rejected normal or emergency change is set
  back to New; no cancel from Review or Closed.
- normal-standard-emergency-states.md: the three models' state sequences and which states can be canceled.
- t_CreateAChange.md: "Request Approval" moves a normal change to Assess, an emergency change to Authorize and a
  pre-approved standard change to Scheduled.
- change-types.md, t_UpdateWorkflow.md: normal changes need two levels of approval (Assess: the assignment
  group; Authorize: the CAB), emergency changes one (Authorize: the CAB); the approval flow moves the change on.
- t_PlaceAChangeRequestOnHold.md: while on hold a change can only move to Canceled.
"""

from __future__ import annotations

from dataclasses import dataclass
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


STATE_LABELS = {
    ChangeState.NEW: "New",
    ChangeState.ASSESS: "Assess",
    ChangeState.AUTHORIZE: "Authorize",
    ChangeState.SCHEDULED: "Scheduled",
    ChangeState.IMPLEMENT: "Implement",
    ChangeState.REVIEW: "Review",
    ChangeState.CLOSED: "Closed",
    ChangeState.CANCELED: "Canceled",
}


class ChangeType(StrEnum):
    NORMAL = "normal"
    STANDARD = "standard"
    EMERGENCY = "emergency"


class Approval(StrEnum):
    """The task's `approval` field: a summary of the approval records."""

    NOT_REQUESTED = "not requested"
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"


class ApprovalState(StrEnum):
    """`sysapproval_approver.state`."""

    NOT_REQUESTED = "not requested"
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    NOT_REQUIRED = "not_required"


class IncidentState(StrEnum):
    NEW = "1"
    IN_PROGRESS = "2"
    ON_HOLD = "3"
    RESOLVED = "6"
    CLOSED = "7"
    CANCELED = "8"


# The CMDB's criticality choices (the field really is spelled `busines_criticality`).
CRITICALITY_LEVELS = ("1 - most critical", "2 - somewhat critical", "3 - less critical", "4 - not critical")


@dataclass(frozen=True)
class Transition:
    """One arrow of a change model.

    `by_approval`: the approval flow makes this move when the stage's approvals are approved; the transition's
    condition ("approval approved") refuses it to anyone who PATCHes the state. `requests_approval`: the
    "Request Approval" move, which creates the stage's approval records.
    """

    source: ChangeState
    target: ChangeState
    by_approval: bool = False
    requests_approval: bool = False

    @property
    def label(self) -> str:
        return f"{STATE_LABELS[self.source]} to {STATE_LABELS[self.target]}"


S = ChangeState
_CANCELABLE = (S.NEW, S.ASSESS, S.AUTHORIZE, S.SCHEDULED, S.IMPLEMENT)  # not from Review, Closed
_TAIL = (Transition(S.SCHEDULED, S.IMPLEMENT), Transition(S.IMPLEMENT, S.REVIEW), Transition(S.REVIEW, S.CLOSED))
_CANCEL = tuple(Transition(state, S.CANCELED) for state in _CANCELABLE)

MODELS: dict[ChangeType, tuple[Transition, ...]] = {
    ChangeType.NORMAL: (
        Transition(S.NEW, S.ASSESS, requests_approval=True),
        Transition(S.ASSESS, S.AUTHORIZE, by_approval=True),
        Transition(S.ASSESS, S.NEW),  # Revert to New (or a rejection)
        Transition(S.AUTHORIZE, S.SCHEDULED, by_approval=True),
        Transition(S.AUTHORIZE, S.NEW),
        *_TAIL,
        *_CANCEL,
    ),
    ChangeType.STANDARD: (
        Transition(S.NEW, S.SCHEDULED),  # pre-approved: Request Approval goes straight to Scheduled
        *_TAIL,
        *_CANCEL,
    ),
    ChangeType.EMERGENCY: (
        Transition(S.NEW, S.AUTHORIZE, requests_approval=True),
        Transition(S.AUTHORIZE, S.SCHEDULED, by_approval=True),
        Transition(S.AUTHORIZE, S.NEW),
        *_TAIL,
        *_CANCEL,
    ),
}

# The states in which a change waits for the approvals of a stage.
APPROVAL_STAGES = (ChangeState.ASSESS, ChangeState.AUTHORIZE)


def model_of(change_type: str) -> tuple[Transition, ...] | None:
    try:
        return MODELS[ChangeType(change_type)]
    except ValueError:
        return None


def transition(change_type: str, current: str, target: str) -> Transition | None:
    """The model's arrow from `current` to `target`, or None when the model has none."""
    for arrow in model_of(change_type) or ():
        if arrow.source == current and arrow.target == target:
            return arrow
    return None


def transitions_from(change_type: str, current: str) -> list[Transition]:
    return [arrow for arrow in model_of(change_type) or () if arrow.source == current]


def state_label(value: str) -> str:
    try:
        return STATE_LABELS[ChangeState(value)]
    except ValueError:
        return value
