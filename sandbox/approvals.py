"""The approval flow of normal and emergency changes: approval records, decisions, and the moves they make.

What the instance does, from ServiceNow's documentation (markdown/it-service-management/change-management/):
- "Request Approval" (a PATCH of New -> Assess for a normal change, New -> Authorize for an emergency change, as the
  UI action does) sets the change's approval to requested and creates `sysapproval_approver` records in state
  requested (t_CreateAChange.md: Assess approvals "are automatically generated based on the Assignment group").
- The sandbox's approval policy (change-approval-policy.md; kept simple and deterministic):
    Assess (normal): every active member of the change's assignment group, by user_name; the members of the
      "Change Advisory Board" when the change has no assignment group or the group has no members;
    Authorize (normal and emergency): the members of the "Change Advisory Board" (change-types.md: CAB
      authorization; emergency changes "go straight to the Authorization state for approval by the CAB").
  A group's approvals hang off a `sysapproval_group` record. A test may name the approvers of a change's stages
  instead (`PUT /sandbox/approvers/{change}`), or insert `sysapproval_approver` rows as admin.
- A stage is approved when every approval of it is approved ("Wait for: All responses" in
  create-approval-definitions.md; the setting `approval_wait_for: first` switches to "First response", and the
  other pending approvals become No Longer Required). The approval flow then moves the change on: a normal
  change Assess -> Authorize (creating the CAB approvals), then Authorize -> Scheduled with approval approved
  (change-types.md: two levels of approval; c_ChangeStateModel.md: "Approving these changes progress the change to
  the next appropriate state").
- One rejection rejects the change: approval rejected, state New (c_ChangeStateModel.md: "If a Normal or Emergency
  change request is rejected, the state of the change request is set to New"); the pending approvals become No
  Longer Required.
- Revert to New, or a cancel, cancels the pending approvals (c_ChangeStateModel.md). On hold, the pending
  approvals are No Longer Required, and requested again when the hold is released (t_PlaceAChangeRequestOnHold.md).
- Who may write an approval record (the instance's ACL): the approver themself (its state and comments) or admin;
  only admin may insert one. The integration user can read them but approves nobody's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.business_rules import RuleViolation
from sandbox.change_model import APPROVAL_STAGES, Approval, ApprovalState, ChangeState

if TYPE_CHECKING:
    from sandbox.instance import Instance

Record = dict[str, str]

CAB = "Change Advisory Board"
ADMIN = "admin"
STAGE_NAMES = {ChangeState.ASSESS.value: "assess", ChangeState.AUTHORIZE.value: "authorize"}
# A hidden mark (never rendered, never queryable) on approvals a hold made No Longer Required.
_HELD = "_held_by_hold"


# --- ACL and defaults --------------------------------------------------------------------------------------------


def check_acl(instance: Instance, table: str, old: Record | None, user: str) -> None:
    """sysapproval_approver: insert by admin only; update by the approver themself or admin."""
    if table != "sysapproval_approver" or user == ADMIN:
        return
    if old is None:
        raise RuleViolation("ACL Exception Insert Failed due to security constraints")
    approver = instance.lookup("sys_user", old.get("approver", "")) or {}
    if approver.get("user_name") != user:
        raise RuleViolation("ACL Exception Update Failed due to security constraints")


def writable(table: str, values: Record, user: str) -> Record:
    """Field ACLs: an approver writes the decision (state, comments) only; other fields are ignored, as the Table API
    ignores a field the caller may not write."""
    if table != "sysapproval_approver" or user == ADMIN:
        return values
    return {k: v for k, v in values.items() if k in ("state", "comments")}


def defaults(table: str, values: Record) -> None:
    """An approval inserted by hand is requested, for the change it names."""
    if table == "sysapproval_approver":
        values.setdefault("state", ApprovalState.REQUESTED.value)
        if values.get("sysapproval"):
            values.setdefault("source_table", "change_request")
            values.setdefault("document_id", values["sysapproval"])


# --- the flow ----------------------------------------------------------------------------------------------------


def after_write(instance: Instance, table: str, previous: Record | None, current: Record) -> None:
    if table == "change_request" and previous is not None:
        _change_written(instance, previous, current)
    elif table == "sysapproval_approver":
        state = current.get("state", "")
        decided = state in (ApprovalState.APPROVED, ApprovalState.REJECTED)
        if decided and (previous is None or previous.get("state") != state):
            _decided(instance, current)


def _change_written(instance: Instance, previous: Record, current: Record) -> None:
    moved = previous.get("state") != current.get("state")
    state = current.get("state", "")
    if moved and state in APPROVAL_STAGES and current.get("approval") == Approval.REQUESTED:
        start_stage(instance, current, state)
    elif moved and state in (ChangeState.NEW, ChangeState.CANCELED):
        _close_pending(instance, current["sys_id"], ApprovalState.CANCELLED)
    held, was_held = current.get("on_hold") == "true", previous.get("on_hold") == "true"
    if held and not was_held:
        for approval in _approvals(instance, current["sys_id"], ApprovalState.REQUESTED):
            _set(instance, approval, {"state": ApprovalState.NOT_REQUIRED.value, _HELD: "true"})
    elif was_held and not held and state != ChangeState.CANCELED:
        for approval in _approvals(instance, current["sys_id"], ApprovalState.NOT_REQUIRED):
            if approval.get(_HELD) == "true":
                _set(instance, approval, {"state": ApprovalState.REQUESTED.value, _HELD: ""})


def stage_approvers(instance: Instance, change: Record, stage: str) -> tuple[str, list[str]]:
    """(sys_user_group sys_id or "", approver sys_ids sorted by user_name) for one stage of one change."""
    named = instance.approver_overrides.get(change["sys_id"], {}).get(STAGE_NAMES.get(stage, ""))
    if named is not None:
        users = [instance.find("sys_user", "user_name", name) for name in named]
        return "", [u["sys_id"] for u in users if u is not None]
    cab = instance.find("sys_user_group", "name", CAB)
    group = change.get("assignment_group", "") if stage == ChangeState.ASSESS else ""
    members = _members(instance, group) if group else []
    if not members and cab is not None:
        group, members = cab["sys_id"], _members(instance, cab["sys_id"])
    return group, members


def _members(instance: Instance, group: str) -> list[str]:
    users = []
    for row in instance.store.rows("sys_user_grmember"):
        user = instance.lookup("sys_user", row.get("user", "")) if row.get("group") == group else None
        if user is not None and user.get("active", "true") != "false":
            users.append(user)
    return [u["sys_id"] for u in sorted(users, key=lambda u: u.get("user_name", ""))]


def start_stage(instance: Instance, change: Record, stage: str) -> list[Record]:
    """Create the requested approvals of one stage (and the group approval they belong to)."""
    group, approvers = stage_approvers(instance, change, stage)
    group_approval = ""
    if group:
        body = {"parent": change["sys_id"], "assignment_group": group, "approval": ApprovalState.REQUESTED.value}
        group_approval = instance.create("sysapproval_group", body, "system", flow=True)["sys_id"]
    created = []
    for approver in approvers:
        body = {
            "sysapproval": change["sys_id"],
            "source_table": "change_request",
            "document_id": change["sys_id"],
            "approver": approver,
            "group": group_approval,
            "state": ApprovalState.REQUESTED.value,
        }
        created.append(instance.create("sysapproval_approver", body, "system", flow=True))
    return created


def _decided(instance: Instance, approval: Record) -> None:
    change = instance.lookup("change_request", approval.get("sysapproval", ""))
    if change is None or not _awaiting(change):
        return  # a decision on a change that is not waiting for approval moves nothing
    if approval.get("state") == ApprovalState.REJECTED:
        _close_pending(instance, change["sys_id"], ApprovalState.NOT_REQUIRED, group_outcome=ApprovalState.REJECTED)
        body = {"approval": Approval.REJECTED.value, "state": ChangeState.NEW.value}
        instance.update("change_request", change["sys_id"], body, "system", flow=True)
        return
    pending = _approvals(instance, change["sys_id"], ApprovalState.REQUESTED)
    if pending and instance.settings.approval_wait_for == "all":
        return
    _close_pending(instance, change["sys_id"], ApprovalState.NOT_REQUIRED, group_outcome=ApprovalState.APPROVED)
    if change.get("state") == ChangeState.ASSESS:
        instance.update("change_request", change["sys_id"], {"state": ChangeState.AUTHORIZE.value}, "system", flow=True)
    else:
        body = {"state": ChangeState.SCHEDULED.value, "approval": Approval.APPROVED.value}
        instance.update("change_request", change["sys_id"], body, "system", flow=True)


def _awaiting(change: Record) -> bool:
    return (
        change.get("state") in APPROVAL_STAGES
        and change.get("approval") == Approval.REQUESTED
        and change.get("on_hold") != "true"
    )


def _approvals(instance: Instance, change_id: str, state: str) -> list[Record]:
    return [
        r
        for r in instance.store.rows("sysapproval_approver")
        if r.get("sysapproval") == change_id and r.get("state") == state
    ]


def _close_pending(instance: Instance, change_id: str, outcome: str, group_outcome: str | None = None) -> None:
    for approval in _approvals(instance, change_id, ApprovalState.REQUESTED):
        _set(instance, approval, {"state": outcome})
    for group in instance.store.rows("sysapproval_group"):
        if group.get("parent") == change_id and group.get("approval") == ApprovalState.REQUESTED:
            _set(instance, group, {"approval": group_outcome or outcome}, table="sysapproval_group")


def _set(instance: Instance, record: Record, values: Record, table: str = "sysapproval_approver") -> None:
    instance.update(table, record["sys_id"], values, "system", flow=True)
