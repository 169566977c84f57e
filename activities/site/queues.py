"""Which site a CI is at, and the task queue of that site's worker.

Sources, first match wins: CHANGELOOP_SITE_MAP (CI name -> site), then the CI's CMDB field named by
CHANGELOOP_SITE_FIELD (`location`, `u_site`; a reference field counts by its display value). Neither configured:
every host operation stays on the central task queue, as before site workers existed.

Hooks for every host-facing activity (steps, the patch wave's host operator, inventory scans):
- `site_task_queue(settings, site)`: the queue to pass as `task_queue=` (empty: the central queue);
- `route_ci(settings, name, record)`: for a loader that already read the CI record (add `settings.site_field` to
  its fields), the route to carry with the CI through history;
- the `resolve_site` activity: for a workflow that has only the CI's name.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.errors import servicenow_errors
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from servicenow.records import display, value
from workflows import calls
from workflows.site.models import SiteQuery, SiteRoute, site_queue, site_slug


def routing_configured(settings: Settings) -> bool:
    return bool(settings.site_map or settings.site_field)


def site_task_queue(settings: Settings, site: str | None) -> str:
    """`<task queue>-<site slug>`; empty when there is no site or site routing is not configured."""
    if not site or not routing_configured(settings) or not site_slug(site):
        return ""
    return site_queue(settings.task_queue, site)


def route_ci(settings: Settings, name: str, record: dict[str, Any] | None = None) -> SiteRoute:
    site = settings.site_map.get(name, "")
    if not site and settings.site_field and record is not None:
        # read with display_value=all: a reference (location) counts by its name
        site = display(record, settings.site_field) or value(record, settings.site_field)
    return SiteRoute(site=site, task_queue=site_task_queue(settings, site))


class SiteActivities:
    """Runs on the central worker: it reads the CMDB, site workers need no ServiceNow credentials."""

    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.settings = settings

    @activity.defn(name=calls.RESOLVE_SITE.name)
    async def resolve_site(self, query: SiteQuery) -> SiteRoute:
        if query.ci_name in self.settings.site_map or not self.settings.site_field:
            return route_ci(self.settings, query.ci_name)
        lookup = Query().eq("sys_id", query.ci_sys_id) if query.ci_sys_id else Query().eq("name", query.ci_name)
        async with servicenow_errors():
            record = await self.sn.first(
                "cmdb_ci", lookup.order_by("sys_id"), fields=["name", self.settings.site_field], display_value="all"
            )
        # An unknown CI has no site: its steps stay central, where they ran before site routing existed.
        return route_ci(self.settings, query.ci_name, record or {})
