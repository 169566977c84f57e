"""Incident activities: the worker's incident policy, the CMDB look-up of what a failure touched, the create that is
safe to retry, the resolve, and the Slack note.

The create is the one non-idempotent call (a POST): it first looks for an open incident with the failed workflow's
ID as `correlation_id`, so an attempt retried after a timeout whose write had landed finds that record instead of
opening a second one.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.errors import servicenow_errors
from activities.incident.text import description, scrub, short_description, slack_text
from activities.incident.triage import CI_ROUTING_FIELDS, Router
from activities.lookups import find_first
from activities.slack import post_to_slack
from config.reconcile import CriticalityRule, RoutingConfig
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.cmdb import ConfigurationItem
from servicenow.incident import IncidentState
from servicenow.query import Query
from workflows import calls
from workflows.incident.models import (
    CORRELATION_DISPLAY,
    Impact,
    ImpactedCi,
    ImpactInput,
    IncidentPolicy,
    IncidentRef,
    OpenIncidentInput,
    PolicyInput,
    ResolveRecordInput,
    SlackInput,
)

CI_FIELDS = [*CI_ROUTING_FIELDS, "sys_class_name"]
INCIDENT_FIELDS = ["sys_id", "number", "state", "impact", "urgency", "assignment_group"]
OPEN_STATES = [IncidentState.NEW.value, IncidentState.IN_PROGRESS.value, IncidentState.ON_HOLD.value]
DONE_STATES = {IncidentState.RESOLVED.value, IncidentState.CLOSED.value, IncidentState.CANCELED.value}
# The relationship from an application to the servers it runs on (parent = application, child = server).
RUNS_ON = "Runs on::Runs"
APPLICATION_CLASS = "cmdb_ci_appl"


def routing_config(settings: Settings) -> RoutingConfig:
    """The criticality table with the operator's overrides (`CHANGELOOP_INCIDENT_CRITICALITY`, "impact/urgency")."""
    table = dict(RoutingConfig().criticality)
    for level, pair in settings.incident_criticality.items():
        impact, _, urgency = pair.partition("/")
        table[level.strip()[:1]] = CriticalityRule(impact=impact.strip(), urgency=(urgency or impact).strip())
    return RoutingConfig(criticality=table, default_group=settings.incident_default_group)


def _rank(ci: ConfigurationItem) -> tuple[int, int]:
    """Most critical first; among equals an application before a server (it names the team that owns the service)."""
    digit = ci.busines_criticality.strip()[:1]
    return (int(digit) if digit.isdigit() else 9, 0 if ci.sys_class_name == APPLICATION_CLASS else 1)


class IncidentActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.settings = settings

    @activity.defn(name=calls.INCIDENT_POLICY.name)
    async def incident_policy(self, request: PolicyInput) -> IncidentPolicy:
        s = self.settings
        production = s.incident_default_production if request.production is None else request.production
        return IncidentPolicy(
            open=production,
            reason="" if production else f"{request.workflow_type or 'the workflow'} is not a production workflow",
            resolve_wait=s.incident_resolve_wait,
            create_timeout=s.incident_create_timeout,
            log_lines=s.incident_log_lines,
        )

    # -- what the failure touched --------------------------------------------------------------------------------
    @activity.defn(name=calls.INCIDENT_IMPACT.name)
    async def incident_impact(self, request: ImpactInput) -> Impact:
        async with servicenow_errors():
            change_sys_id, change_ci = await self._change(request)
            targets = await self._cis([*request.ci_sys_ids, *([change_ci] if change_ci else [])], request.ci_names)
            apps = await self._applications(targets)
            impact = await self._route(targets, apps)
        impact.change_sys_id = change_sys_id
        return impact

    async def _change(self, request: ImpactInput) -> tuple[str, str]:
        """The change's sys_id and cmdb_ci, when the report named the change by number only."""
        if request.change_sys_id or not request.change_number:
            return request.change_sys_id, ""
        found = await self.sn.first(
            "change_request",
            Query().eq("number", request.change_number),
            fields=["sys_id", "cmdb_ci"],
            exclude_reference_link=True,
        )
        return (str(found["sys_id"]), str(found.get("cmdb_ci", ""))) if found else ("", "")

    async def _cis(self, sys_ids: list[str], names: list[str]) -> list[ConfigurationItem]:
        found: dict[str, ConfigurationItem] = {}
        for field, values in (("sys_id", sys_ids), ("name", names)):
            values = sorted({v for v in values if v})
            if not values:
                continue
            try:
                query = Query().in_(field, values)
            except ValueError:  # a value that would change the query's structure names no CI anyway
                continue
            for record in await self.sn.list("cmdb_ci", query, fields=CI_FIELDS, exclude_reference_link=True):
                ci = ConfigurationItem.model_validate(record)
                found.setdefault(ci.sys_id, ci)
        return list(found.values())

    async def _applications(self, targets: list[ConfigurationItem]) -> dict[str, tuple[ConfigurationItem, str]]:
        """The applications the targets run (cmdb_rel_ci parent = application, child = target, Runs on::Runs)."""
        ids = [ci.sys_id for ci in targets if ci.sys_class_name != APPLICATION_CLASS]
        rel_type = await self.sn.first("cmdb_rel_type", Query().eq("name", RUNS_ON), fields=["sys_id"])
        if not ids or rel_type is None:
            return {}
        rels = await self.sn.list(
            "cmdb_rel_ci",
            Query().in_("child", ids).eq("type", str(rel_type["sys_id"])),
            fields=["parent", "child"],
            exclude_reference_link=True,
        )
        names = {ci.sys_id: ci.name for ci in targets}
        of = {str(r["parent"]): names.get(str(r["child"]), "") for r in rels}
        parents = await self._cis(sorted(of), [])
        return {app.sys_id: (app, of[app.sys_id]) for app in parents if app.sys_id not in names}

    async def _route(self, targets: list[ConfigurationItem], apps: dict[str, tuple[ConfigurationItem, str]]) -> Impact:
        router = Router(self.sn, routing_config(self.settings))
        cis = [
            ImpactedCi(
                sys_id=c.sys_id,
                name=c.name,
                sys_class_name=c.sys_class_name,
                criticality=c.busines_criticality,
                relation="target",
            )
            for c in targets
        ]
        cis += [
            ImpactedCi(
                sys_id=a.sys_id,
                name=a.name,
                sys_class_name=a.sys_class_name,
                criticality=a.busines_criticality,
                relation=f"application of {host}",
            )
            for a, host in apps.values()
        ]
        candidates = [*targets, *(a for a, _ in apps.values())]
        if not candidates:
            routing = await router.route(ConfigurationItem())
            primary = None
        else:
            primary = min(candidates, key=_rank)
            routing = await router.route(primary)
        group_name = ""
        if routing.assignment_group:
            group = await self.sn.get("sys_user_group", routing.assignment_group, fields=["name"])
            group_name = str(group.get("name", ""))
        return Impact(
            cis=cis,
            cmdb_ci=targets[0].sys_id if targets else (primary.sys_id if primary else ""),
            routed_by=primary.name if primary else "",
            assignment_group=routing.assignment_group,
            assignment_group_name=group_name,
            group_source=routing.group_source,
            impact=routing.impact,
            urgency=routing.urgency,
            criticality=routing.criticality,
        )

    # -- the incident record -------------------------------------------------------------------------------------
    @activity.defn(name=calls.OPEN_INCIDENT.name)
    async def open_incident_record(self, request: OpenIncidentInput) -> IncidentRef:
        failed = request.request
        async with servicenow_errors():
            # An open incident for this failure the integration user may not read stops the create (HiddenRecord).
            existing = await find_first(
                self.sn,
                "incident",
                Query()
                .eq("correlation_id", failed.failed_workflow_id)
                .in_("state", OPEN_STATES)
                .order_by("sys_created_on"),
                fields=INCIDENT_FIELDS,
                exclude_reference_link=True,
            )
            if existing is not None:
                return self._ref(existing, request, created=False)
            record = await self.sn.create("incident", self._body(request), fields=INCIDENT_FIELDS)
        return self._ref(record, request, created=True)

    def _body(self, request: OpenIncidentInput) -> dict[str, str]:
        failed, impact = request.request, request.impact
        url = self.settings.execution_url(failed.failed_workflow_id, failed.failed_run_id or None)
        secrets = self.settings.secret_values()
        body = {
            "short_description": scrub(short_description(failed), secrets),
            "description": scrub(description(failed, impact, url, request.log_lines), secrets),
            "impact": impact.impact,
            "urgency": impact.urgency,  # never priority: the instance computes it from these two
            "correlation_id": failed.failed_workflow_id,
            "correlation_display": CORRELATION_DISPLAY,
        }
        if impact.cmdb_ci:
            body["cmdb_ci"] = impact.cmdb_ci
        if impact.assignment_group:
            body["assignment_group"] = impact.assignment_group
        return body

    def _ref(self, record: dict[str, Any], request: OpenIncidentInput, *, created: bool) -> IncidentRef:
        sys_id = str(record.get("sys_id", ""))
        return IncidentRef(
            number=str(record.get("number", "")),
            sys_id=sys_id,
            url=self.sn.record_link("incident", sys_id),
            workflow_id=activity.info().workflow_id or "",
            created=created,
            assignment_group=request.impact.assignment_group_name,
            impact=str(record.get("impact", request.impact.impact)),
            urgency=str(record.get("urgency", request.impact.urgency)),
        )

    @activity.defn(name=calls.RESOLVE_INCIDENT.name)
    async def resolve_incident_record(self, request: ResolveRecordInput) -> str:
        """Resolved (6) with close_code and close_notes; an incident already resolved, closed or canceled in
        ServiceNow (a human got there first) is left as it is."""
        async with servicenow_errors():
            current = await self.sn.get("incident", request.sys_id, fields=["state"])
            state = str(current.get("state", ""))
            if state in DONE_STATES:
                return state
            notes = scrub(request.close_notes, self.settings.secret_values())
            body = {"state": IncidentState.RESOLVED.value, "close_code": request.close_code, "close_notes": notes}
            await self.sn.update("incident", request.sys_id, body, fields=["state"])
        return IncidentState.RESOLVED.value

    # -- Slack ---------------------------------------------------------------------------------------------------
    @activity.defn(name=calls.NOTIFY_SLACK.name)
    async def notify_slack(self, request: SlackInput) -> str:
        url = self.settings.execution_url(request.failed_workflow_id, request.failed_run_id or None)
        text = slack_text(request.incident, request.failed_workflow_id, request.workflow_type, request.step, url)
        sent = await post_to_slack(self.settings, scrub(text, self.settings.secret_values()))
        return "sent" if sent else "not configured"
