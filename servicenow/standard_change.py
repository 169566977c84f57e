"""Creating a standard change from a template on a CI: through the Change Management API where the instance has
it (what ServiceNow recommends), through a Table API insert otherwise.

A standard change is pre-approved. Both paths create it in Scheduled (`state` -2), which the standard change
model allows a change from a template to start in, and the instance sets `approval` approved itself; that insert
is what the changeloop Business Rule fires on (deploy/servicenow/README.md, rule a). An instance that still put
the change in New gets the "Request Approval" move (New -> Scheduled) right after.

Bad input creates nothing: the CI and the template are looked up before anything is written, and an unknown or
ambiguous one is refused with the names the instance does have.

The Table API path does what the template's catalog item does: the template's field values (its `sys_template`'s
`field=value^...` string), `type` standard and the template's newest `std_change_producer_version`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from servicenow.change_api import ApiRecord, ChangeApi, Presence
from servicenow.change_request import Approval, ChangeState, ChangeType
from servicenow.client import ServiceNowClient
from servicenow.errors import NotFound
from servicenow.query import Query

ChangeApiMode = Literal["auto", "on", "off"]
Route = Literal["change_api", "table_api"]

_SYS_ID = re.compile(r"^[0-9a-f]{32}$")
_SN_TIME = "%Y-%m-%d %H:%M:%S"
_STATE_LABELS = {s.value: s.name.title() for s in ChangeState}
_SHOWN_TEMPLATES = 20  # how many template names a refusal lists


class CreateRefused(ValueError):
    """The request cannot make a change (unknown template or CI, bad window): nothing was created."""


class StandardChangeRequest(BaseModel):
    template: str  # the template's name, as the catalog shows it
    ci: str  # a CI name, or its sys_id
    short_description: str = ""  # default: "<template short description or name>: <ci>"
    start_date: datetime | None = None  # the planned window; naive times are UTC
    end_date: datetime | None = None


class CreatedChange(BaseModel):
    number: str
    sys_id: str
    state: str
    state_label: str
    approval: str
    route: Route
    route_reason: str
    template: str
    ci: str
    link: str
    ignored_fields: list[str] = []


def servicenow_time(moment: datetime) -> str:
    """A datetime as the Table API writes dates for a user in GMT: 'YYYY-MM-DD hh:mm:ss' in UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime(_SN_TIME)


def template_values(encoded: str) -> dict[str, str]:
    """The field values of a record template: its `field=value^field=value` string (`EQ` ends it)."""
    values: dict[str, str] = {}
    for part in encoded.split("^"):
        name, sep, value = part.partition("=")
        if part == "EQ":
            break
        if sep and name:
            values[name] = value
    return values


async def choose_route(api: ChangeApi, mode: ChangeApiMode) -> tuple[Route, str]:
    """Which API creates the change, and why (CHANGELOOP_CHANGE_API: auto asks the instance)."""
    if mode == "off":
        return "table_api", "CHANGELOOP_CHANGE_API=off"
    presence = await api.presence()
    if mode == "on":
        if presence != Presence.PRESENT:
            raise CreateRefused(
                f"CHANGELOOP_CHANGE_API=on but the Change Management API is {presence.value} on "
                f"{api.client.base_url} (set CHANGELOOP_CHANGE_API=auto to fall back to the Table API)"
            )
        return "change_api", "CHANGELOOP_CHANGE_API=on"
    if presence == Presence.PRESENT:
        return "change_api", "the instance has the Change Management API"
    why = "not installed" if presence == Presence.ABSENT else "not open to this user's roles"
    return "table_api", f"the Change Management API is {why}"


async def find_ci(client: ServiceNowClient, ci: str) -> dict[str, Any]:
    """The one CI named `ci` (or with that sys_id); CreateRefused when there is none or more than one."""
    fields = ["sys_id", "name", "sys_class_name"]
    if _SYS_ID.match(ci):
        try:
            return await client.get("cmdb_ci", ci, fields=fields)
        except NotFound:
            message = f"no configuration item with sys_id {ci} (or the integration user may not read it)"
            raise CreateRefused(message) from None
    found = await client.list("cmdb_ci", Query().eq("name", ci), fields=fields, limit=2, page_size=2)
    if not found:
        raise CreateRefused(f"unknown configuration item {ci!r}: no cmdb_ci record has that name")
    if len(found) > 1:
        classes = ", ".join(f"{r.get('sys_class_name')} {r.get('sys_id')}" for r in found)
        raise CreateRefused(f"more than one configuration item is named {ci!r} ({classes}): pass its sys_id")
    return found[0]


def _refuse_template(name: str, known: list[str]) -> CreateRefused:
    shown = ", ".join(repr(n) for n in sorted(known)[:_SHOWN_TEMPLATES]) or "none"
    more = f" and {len(known) - _SHOWN_TEMPLATES} more" if len(known) > _SHOWN_TEMPLATES else ""
    return CreateRefused(f"unknown standard change template {name!r}; the instance has: {shown}{more}")


def _fields(request: StandardChangeRequest, ci: dict[str, Any], default_description: str) -> dict[str, str]:
    if request.start_date and request.end_date and request.end_date <= request.start_date:
        raise CreateRefused("the planned end must be after the planned start")
    body = {
        "cmdb_ci": str(ci["sys_id"]),
        "short_description": request.short_description or f"{default_description}: {ci.get('name') or request.ci}",
        "state": ChangeState.SCHEDULED.value,
    }
    if request.start_date:
        body["start_date"] = servicenow_time(request.start_date)
    if request.end_date:
        body["end_date"] = servicenow_time(request.end_date)
    return body


async def _through_api(
    api: ChangeApi, request: StandardChangeRequest, ci: dict[str, Any]
) -> tuple[dict[str, str], list[str]]:
    template = await api.find_template(request.template)
    if template is None:
        raise _refuse_template(request.template, [t.name for t in await api.templates(Query().eq("active", "true"))])
    body = _fields(request, ci, template.short_description or template.name)
    record: ApiRecord = await api.create_standard(template.sys_id, body)
    if record.value("state") == ChangeState.NEW.value:
        record = await api.update_change(record.value("sys_id"), {"state": ChangeState.SCHEDULED.value})
    return record.values, record.ignored_fields


async def _through_table(
    client: ServiceNowClient, request: StandardChangeRequest, ci: dict[str, Any]
) -> dict[str, str]:
    active = Query().eq("name", request.template).eq("active", "true")
    producer = await client.first("std_change_record_producer", active, exclude_reference_link=True)
    version: dict[str, Any] | None = None
    if producer is not None:
        newest = Query().eq("std_change_producer", producer["sys_id"]).order_by_desc("version")
        version = await client.first("std_change_producer_version", newest, exclude_reference_link=True)
    else:  # an integration user that may not read the catalog item may still read the versions
        by_name = Query().eq("name", request.template).order_by_desc("version")
        version = await client.first("std_change_producer_version", by_name, exclude_reference_link=True)
    if version is None:
        names = [
            str(r.get("name", ""))
            for r in await client.list("std_change_record_producer", Query().eq("active", "true"), fields=["name"])
        ]
        raise _refuse_template(request.template, names)
    values: dict[str, str] = {}
    if producer is not None and producer.get("template"):
        try:
            stored = await client.get("sys_template", str(producer["template"]), fields=["template"])
            values = template_values(str(stored.get("template", "")))
        except NotFound:
            values = {}
    if not values:
        values = template_values(str(version.get("template_value", "")))
    description = str((producer or version).get("short_description") or request.template)
    body = {
        **values,
        **_fields(request, ci, description),
        "type": ChangeType.STANDARD.value,
        "std_change_producer_version": str(version["sys_id"]),
    }
    record = await client.create("change_request", body)
    if str(record.get("state")) == ChangeState.NEW.value:
        record = await client.update("change_request", str(record["sys_id"]), {"state": ChangeState.SCHEDULED.value})
    return {k: str(v) for k, v in record.items()}


async def create_standard_change(
    client: ServiceNowClient, request: StandardChangeRequest, mode: ChangeApiMode = "auto"
) -> CreatedChange:
    """Create the change (see the module's docstring); CreateRefused before anything is written on bad input."""
    api = ChangeApi(client)
    route, reason = await choose_route(api, mode)
    ci = await find_ci(client, request.ci)
    ignored: list[str] = []
    if route == "change_api":
        values, ignored = await _through_api(api, request, ci)
    else:
        values = await _through_table(client, request, ci)
    state = values.get("state", "")
    return CreatedChange(
        number=values.get("number", ""),
        sys_id=values.get("sys_id", ""),
        state=state,
        state_label=_STATE_LABELS.get(state, state),
        approval=values.get("approval", "") or Approval.NOT_REQUESTED.value,
        route=route,
        route_reason=reason,
        template=request.template,
        ci=str(ci.get("name") or request.ci),
        link=client.record_link("change_request", values.get("sys_id", "")),
        ignored_fields=ignored,
    )
