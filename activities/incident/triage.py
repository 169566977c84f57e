"""Who owns a CI and how urgent its trouble is: the CMDB's routing for incidents.

`routing_for(sn, ci)` answers the assignment group (the CI's `support_group`, else `managed_by_group`, else the
configured default group) and impact/urgency from the CI's `busines_criticality` through a mapping table
(`RoutingConfig.criticality`, keyed by the level's digit). The default table:

| busines_criticality   | impact | urgency | priority the instance computes |
|-----------------------|--------|---------|--------------------------------|
| 1 - most critical     | 1      | 1       | 1 - Critical                   |
| 2 - somewhat critical | 2      | 2       | 3 - Moderate                   |
| 3 - less critical     | 2      | 3       | 4 - Low                        |
| 4 - not critical      | 3      | 3       | 5 - Planning                   |
| (none found)          | 3      | 3       | 5 - Planning                   |

Servers rarely carry a criticality of their own; with `inherit_from_parents` a CI without one takes the most critical
level among the CIs that depend on it (`cmdb_rel_ci` rows where it is the child: the application that "Runs on" it).
Priority is never written: the instance computes it from impact × urgency.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from config.reconcile import CriticalityRule, RoutingConfig
from servicenow.client import ServiceNowClient
from servicenow.cmdb import ConfigurationItem
from servicenow.query import Query

CI_ROUTING_FIELDS = ["sys_id", "name", "busines_criticality", "support_group", "managed_by_group"]


class Routing(BaseModel):
    assignment_group: str  # sys_id; "" only when even the default group does not exist
    group_source: Literal["support_group", "managed_by_group", "default", "none"]
    impact: str
    urgency: str
    criticality: str = ""  # the level used, e.g. "1 - most critical"
    criticality_source: Literal["ci", "parent", "none"] = "none"


def rule_for(level: str, config: RoutingConfig) -> CriticalityRule:
    """The mapping table's row for a criticality level ("2 - somewhat critical" → row "2")."""
    digit = level.strip()[:1]
    return config.criticality.get(digit, config.unknown)


class Router:
    """Routing with the default group's sys_id looked up once per router (one per batch of incidents)."""

    def __init__(self, sn: ServiceNowClient, config: RoutingConfig | None = None) -> None:
        self.sn = sn
        self.config = config or RoutingConfig()
        self._default_group: str | None = None
        self._parents: dict[str, str] = {}  # CI sys_id -> most critical parent level, filled by prefetch

    async def prefetch(self, sys_ids: list[str], chunk: int = 100) -> None:
        """Parent criticality of many CIs in a few queries (`route` then asks nothing more for them)."""
        if not self.config.inherit_from_parents:
            return
        wanted = sorted(set(sys_ids) - set(self._parents))
        for start in range(0, len(wanted), chunk):
            part = wanted[start : start + chunk]
            rels = await self.sn.list(
                "cmdb_rel_ci", Query().in_("child", part), fields=["parent", "child"], exclude_reference_link=True
            )
            parents = sorted({str(r.get("parent", "")) for r in rels} - {""})
            levels: dict[str, str] = {}
            for first in range(0, len(parents), chunk):
                query = Query().in_("sys_id", parents[first : first + chunk])
                for ci in await self.sn.list("cmdb_ci", query, fields=["sys_id", "busines_criticality"]):
                    levels[str(ci["sys_id"])] = str(ci.get("busines_criticality", ""))
            for sys_id in part:
                found = sorted(levels.get(str(r.get("parent")), "") for r in rels if r.get("child") == sys_id)
                self._parents[sys_id] = next((level for level in found if level), "")

    async def default_group(self) -> str:
        if self._default_group is None:
            found = await self.sn.first(
                "sys_user_group", Query().eq("name", self.config.default_group), fields=["sys_id"]
            )
            self._default_group = str(found["sys_id"]) if found else ""
        return self._default_group

    async def parent_criticality(self, sys_id: str) -> str:
        """The most critical level among the CIs that depend on this one ("" when none has one)."""
        if sys_id in self._parents:
            return self._parents[sys_id]
        rels = await self.sn.list(
            "cmdb_rel_ci", Query().eq("child", sys_id), fields=["parent"], exclude_reference_link=True
        )
        parents = sorted({str(r.get("parent", "")) for r in rels} - {""})
        if not parents:
            return ""
        found = await self.sn.list("cmdb_ci", Query().in_("sys_id", parents), fields=["busines_criticality"])
        levels = sorted(str(f.get("busines_criticality", "")) for f in found if f.get("busines_criticality"))
        return levels[0] if levels else ""  # "1 - …" sorts before "4 - …"

    async def route(self, ci: ConfigurationItem | str) -> Routing:
        if isinstance(ci, str):
            record = await self.sn.get("cmdb_ci", ci, fields=CI_ROUTING_FIELDS, exclude_reference_link=True)
            ci = ConfigurationItem.model_validate(record)
        level, level_source = ci.busines_criticality, "ci" if ci.busines_criticality else "none"
        if not level and self.config.inherit_from_parents and ci.sys_id:
            level = await self.parent_criticality(ci.sys_id)
            level_source = "parent" if level else "none"
        rule = rule_for(level, self.config) if level else self.config.unknown
        if ci.support_group:
            group, group_source = ci.support_group, "support_group"
        elif ci.managed_by_group:
            group, group_source = ci.managed_by_group, "managed_by_group"
        else:
            group = await self.default_group()
            group_source = "default" if group else "none"
        return Routing(
            assignment_group=group,
            group_source=group_source,
            impact=rule.impact,
            urgency=rule.urgency,
            criticality=level,
            criticality_source=level_source,
        )


async def routing_for(
    sn: ServiceNowClient, ci: ConfigurationItem | str, config: RoutingConfig | None = None
) -> Routing:
    """Route one CI (a record already read, or its sys_id). For many CIs, reuse one `Router`."""
    return await Router(sn, config).route(ci)
