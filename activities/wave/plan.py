"""The wave's CMDB reads: which application, how many related CIs, and one page of them at a time.

Pages are keyset pages over cmdb_rel_ci ordered by sys_id (`sys_id > cursor`), not offset pages: a wave runs
for hours while the CMDB changes, and an offset would then skip or repeat hosts. Only the page being started
travels through history; the wave carries the cursor through continue-as-new.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import servicenow_errors
from activities.site.queues import route_ci
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from servicenow.records import display, value
from workflows import calls
from workflows.wave.models import CiRef, PageInput, PlanInput, SkippedCi, WavePage, WavePlan

INSTALLED = "1"
CI_FIELDS = ["name", "sys_class_name", "install_status", "ip_address", "fqdn", "location"]


def related_cis(application_sys_id: str, relationship_types: list[str], ci_classes: list[str]) -> Query:
    """cmdb_rel_ci rows whose parent is the application (app "Runs on" server: parent = app, child = server)."""
    query = Query().eq("parent", application_sys_id)
    if relationship_types:
        query = query.in_("type.name", relationship_types)
    if ci_classes:
        query = query.in_("child.sys_class_name", ci_classes)
    return query


class WaveActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.settings = settings

    @activity.defn(name=calls.PLAN_WAVE.name)
    async def plan_wave(self, request: PlanInput) -> WavePlan:
        async with servicenow_errors():
            app_sys_id, app_name = await self._application(request)
            # One number for the progress bar and the failure budget; the CIs themselves come page by page.
            related = related_cis(app_sys_id, request.relationship_types, request.ci_classes)
            total = await self.sn.count("cmdb_rel_ci", related)
            installed = await self.sn.count("cmdb_rel_ci", related.eq("child.install_status", INSTALLED))
        return WavePlan(
            application=app_name,
            application_sys_id=app_sys_id,
            total=total,
            installed=installed,
            link_base=self.settings.execution_url(""),
        )

    async def _application(self, request: PlanInput) -> tuple[str, str]:
        if request.application:
            record = await self.sn.first("cmdb_ci", Query().eq("name", request.application), fields=["sys_id", "name"])
            if record is None:
                raise ApplicationError(
                    f"no CI named {request.application!r} in the CMDB", type="ApplicationNotFound", non_retryable=True
                )
            return value(record, "sys_id"), value(record, "name")
        if not request.change_sys_id:
            raise ApplicationError(
                "a wave needs an application: the change's CI or the `application` param",
                type="ApplicationNotFound",
                non_retryable=True,
            )
        change = await self.sn.get("change_request", request.change_sys_id, fields=["cmdb_ci"], display_value="all")
        if not value(change, "cmdb_ci"):
            raise ApplicationError(
                "the change has no configuration item: set its CI (the application) or the `application` param",
                type="ApplicationNotFound",
                non_retryable=True,
            )
        return value(change, "cmdb_ci"), display(change, "cmdb_ci")

    @activity.defn(name=calls.LOAD_WAVE_PAGE.name)
    async def load_wave_page(self, request: PageInput) -> WavePage:
        query = related_cis(request.application_sys_id, request.relationship_types, request.ci_classes)
        if request.after:
            query = query.gt("sys_id", request.after)
        site_field = self.settings.site_field
        ci_fields = CI_FIELDS + ([site_field] if site_field and site_field not in CI_FIELDS else [])
        fields = ["sys_id", "child", *(f"child.{name}" for name in ci_fields)]
        async with servicenow_errors():
            rows = await self.sn.list(
                "cmdb_rel_ci",
                query.order_by("sys_id"),
                fields=fields,
                display_value="all",
                limit=request.size,
                page_size=request.size,
            )
        page = WavePage(cursor=value(rows[-1], "sys_id") if rows else request.after, more=len(rows) == request.size)
        for row in rows:
            name = value(row, "child.name")
            status = value(row, "child.install_status")
            if status != INSTALLED:
                label = display(row, "child.install_status") or status or "unknown"
                page.skipped.append(SkippedCi(name=name, reason=f"install_status {label}, not Installed"))
                continue
            # Host operations run on the worker of the CI's site (activities/sites.py); "" = the central queue.
            route = route_ci(self.settings, name, {site_field: row.get(f"child.{site_field}")} if site_field else None)
            page.cis.append(
                CiRef(
                    sys_id=value(row, "child"),
                    name=name,
                    sys_class_name=value(row, "child.sys_class_name"),
                    ip_address=value(row, "child.ip_address"),
                    fqdn=value(row, "child.fqdn"),
                    site=display(row, "child.location"),
                    task_queue=route.task_queue,
                )
            )
        # Within a page, hosts start in name order: the canary is fleet-01, not whichever sys_id sorts first.
        page.cis.sort(key=lambda ci: ci.name)
        activity.heartbeat(page.cursor)
        return page
