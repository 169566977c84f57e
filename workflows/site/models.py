"""Workers by site (ServiceNow's MID-server idea): the contract between workflows and the site resolution.

Host operations for a CI run on the task queue of the CI's site, `<task queue>-<site>` (`changeloop-fra1`), served
by `changeloop worker --site fra1` inside that site's network. A workflow never computes the site itself: the
central worker resolves it (`resolve_site`, from the CMDB or the config map) and the answer is recorded in history,
so a replay or a config change mid-run cannot send the same step elsewhere.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

# RunbookWorkflow histories from before site routing carry no resolve_site activity: they replay without it.
SITE_ROUTING_PATCH = "site-routing"


class SiteQuery(BaseModel):
    ci_name: str
    ci_sys_id: str = ""


class SiteRoute(BaseModel):
    site: str = ""
    task_queue: str = ""  # empty: the central task queue (no site, or site routing not configured)


def site_slug(site: str) -> str:
    """ "Frankfurt DC1" -> "frankfurt-dc1": the CMDB's display value and `--site` name the same queue."""
    return re.sub(r"[^a-z0-9]+", "-", site.strip().lower()).strip("-")


def site_queue(task_queue: str, site: str) -> str:
    """`<task queue>-<site slug>`: the one name of a site's queue, for the site worker and for the central worker
    that routes host operations there."""
    return f"{task_queue}-{site_slug(site)}"
