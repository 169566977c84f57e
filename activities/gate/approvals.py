"""The approval gate's activities: its settings, a shim decision's signature, and ServiceNow's own approvals.

They run in the worker because each needs something workflow code must not hold: the settings, the decision key
(workflows/gate/signing.py), the clock a signature's age is judged by, and the integration user's ServiceNow client.
Every answer is recorded in history, so a replay never re-reads ServiceNow or the key.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from temporalio import activity

from activities.errors import servicenow_errors
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from servicenow.records import value
from workflows import calls
from workflows.gate.models import (
    ApprovalFinding,
    ApprovalQuery,
    ApproverAnswer,
    ApproverQuery,
    Decision,
    GatePolicy,
    Verification,
    VerifyInput,
)
from workflows.gate.signing import signature_valid

DECIDED_STATES = (Decision.APPROVED.value, Decision.REJECTED.value)


class GateActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.settings = settings

    @activity.defn(name=calls.GATE_POLICY.name)
    async def gate_policy(self) -> GatePolicy:
        return GatePolicy(
            temporal_authorizes_decisions=self.settings.temporal_authorizes_decisions,
            poll_interval=self.settings.approval_poll_interval,
        )

    @activity.defn(name=calls.VERIFY_DECISION.name)
    async def verify_decision(self, request: VerifyInput) -> Verification:
        """The shim's signature holds, names this execution (or the one that started it), and was fresh on arrival.
        Arrival is the workflow's own clock when the decision first reached it; issuance is the shim's."""
        key = self.settings.decision_key.get_secret_value() if self.settings.decision_key else ""
        decision = request.decision
        if not key:
            return Verification(valid=False, reason="this worker has no CHANGELOOP_DECISION_KEY to check it with")
        if not signature_valid(key, decision):
            return Verification(valid=False, reason="the signature does not match the decision")
        if decision.execution_id not in request.executions:
            return Verification(valid=False, reason=f"it was signed for {decision.execution_id!r}, not this execution")
        if decision.issued_at is None:
            return Verification(valid=False, reason="it carries no time of issue")
        issued = decision.issued_at if decision.issued_at.tzinfo else decision.issued_at.replace(tzinfo=UTC)
        received = request.received_at if request.received_at.tzinfo else request.received_at.replace(tzinfo=UTC)
        age = received - issued
        if abs(age) > self.settings.decision_max_age:
            return Verification(
                valid=False, reason=f"it was issued {age} before it arrived (at most {self.settings.decision_max_age})"
            )
        return Verification(valid=True)

    @activity.defn(name=calls.CHECK_APPROVER.name)
    async def check_approver(self, request: ApproverQuery) -> ApproverAnswer:
        if request.approver in request.approvers:
            return ApproverAnswer(listed=True, how="named in approvers")
        if request.approver_group:
            async with servicenow_errors():
                members = await self._group_members(request.approver_group)
            if request.approver in members:
                return ApproverAnswer(listed=True, how=f"member of {request.approver_group}")
        return ApproverAnswer(listed=False)

    @activity.defn(name=calls.CHECK_APPROVALS.name)
    async def check_servicenow_approvals(self, request: ApprovalQuery) -> ApprovalFinding:
        """The change's decided `sysapproval_approver` records, judged against the runbook's approvers: the latest
        decision by a listed approver counts (a rejection of an earlier round does not veto a later approval, and a
        later rejection undoes an approval); records by anyone else are named, and do not count."""
        async with servicenow_errors():
            query = Query().eq("sysapproval", request.change_sys_id).in_("state", DECIDED_STATES)
            records = await self.sn.list(
                "sysapproval_approver",
                query.order_by("sys_updated_on"),
                fields=["sys_id", "state", "approver", "sys_updated_on"],
                exclude_reference_link=True,
            )
            names = await self._user_names([value(r, "approver") for r in records])
            listed = set(request.approvers)
            if request.approver_group:
                listed |= await self._group_members(request.approver_group)
        finding = ApprovalFinding()
        outsiders: list[str] = []
        for record in records:
            user = names.get(value(record, "approver"), "")
            if user not in listed:
                outsiders.append(user or value(record, "approver"))
                continue
            finding = ApprovalFinding(
                decision=Decision(str(record.get("state"))),
                approver=user,
                record=str(record.get("sys_id", "")),
                decided_on=str(record.get("sys_updated_on", "")),
            )
        finding.outsiders = sorted(set(outsiders))
        return finding

    async def _group_members(self, group: str) -> set[str]:
        found = await self.sn.first("sys_user_group", Query().eq("name", group), fields=["sys_id"])
        if found is None:
            activity.logger.warning("approver group %r does not exist in ServiceNow: it has no members", group)
            return set()
        rows = await self.sn.list(
            "sys_user_grmember", Query().eq("group", found["sys_id"]), fields=["user"], exclude_reference_link=True
        )
        return set((await self._user_names([value(r, "user") for r in rows])).values())

    async def _user_names(self, sys_ids: list[str]) -> dict[str, str]:
        """sys_user sys_id -> user_name (active users only: a deactivated account approves nothing)."""
        wanted = sorted({s for s in sys_ids if s})
        if not wanted:
            return {}
        users: list[dict[str, Any]] = await self.sn.list(
            "sys_user", Query().in_("sys_id", wanted), fields=["sys_id", "user_name", "active"]
        )
        return {str(u["sys_id"]): str(u.get("user_name", "")) for u in users if str(u.get("active", "true")) != "false"}
