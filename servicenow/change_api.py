"""The Change Management API (`/api/sn_chg_rest/...`, the `sn_chg_rest` plugin): what changeloop uses of it.

Source: markdown/api-reference/rest-apis/change-management-api.md. The calls here:
- GET   change/standard/template          the standard change templates (std_change_record_producer)
- POST  change/standard/{template_id}     a standard change from a template (name-value pairs in the body)
- GET   change/{sys_id}                   one change
- PATCH change/{sys_id}                   update a change (state moves obey the change model)
- GET   change/{sys_id}/nextstates        the states the change may move to, with each transition's conditions
- POST  change/{sys_id}/conflict          start conflict checking (answers the checking process's sys_id)
- GET   change/{sys_id}/conflict          the last conflict check: status, last_run, job_status, conflicts

The calls go through `ServiceNowClient.request`, so auth, the 401 re-authentication, the 429 wait and the error
mapping are the Table API's. What differs is the answer: every field comes as `{"display_value", "value"}` with
typed values (`"state": {"value": -2.0}`, booleans as JSON booleans, dates with `display_value_internal`).
`ApiRecord` turns them back into the Table API's strings (`"-2"`, `"true"`), so the rest of changeloop reads one
shape whichever API a record came from.

An instance without the plugin answers 400 "Requested URI does not represent any resource" (or 404 behind some
proxies) on every path: `presence()` tells the three cases apart (present, absent, present but refused to this
user). The API's own role rule is stricter than the Table API's: GET needs change_manager, itil, sn_change_read or
admin; PATCH/POST change_manager, itil or admin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from servicenow.client import ServiceNowClient
from servicenow.errors import BadRequest, Forbidden, NotFound
from servicenow.query import Query

BASE_PATH = "/api/sn_chg_rest"
NOT_INSTALLED = "Requested URI does not represent any resource"
TEMPLATE_PAGE = 500  # the endpoint's default sysparm_limit

# Integer fields of change_request: a typed answer may carry them as numbers (-2.0) or as "-2.0"; the Table API
# writes "-2". Other fields keep their text whatever it looks like (a version "1.0" stays "1.0").
INTEGER_FIELDS = frozenset(
    {"state", "impact", "urgency", "priority", "risk", "sys_mod_count", "reassignment_count", "escalation", "order"}
)
_INTEGRAL = re.compile(r"^-?\d+\.0+$")


def plain(raw: Any, field: str = "") -> str:
    """One typed value of this API as the Table API's string: 'true'/'false', '-2' for -2.0, '' for null."""
    if isinstance(raw, dict):
        raw = raw.get("value")
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        return str(int(raw)) if raw.is_integer() else repr(raw)
    text = str(raw)
    if field in INTEGER_FIELDS and _INTEGRAL.match(text):
        return text.split(".", 1)[0]
    return text


def _shown(raw: Any) -> str:
    if isinstance(raw, dict):
        shown = raw.get("display_value")
        return "" if shown is None else str(shown)
    return plain(raw)


class ApiRecord(BaseModel):
    """A record as this API answers it, with every value normalised to the Table API's strings."""

    values: dict[str, str] = {}
    display: dict[str, str] = {}
    ignored_fields: list[str] = []  # `__meta.ignoredFields`: name-value pairs the create did not apply

    @classmethod
    def parse(cls, result: Mapping[str, Any]) -> ApiRecord:
        values: dict[str, str] = {}
        display: dict[str, str] = {}
        for name, raw in result.items():
            if name == "__meta":
                continue
            values[name] = plain(raw, name)
            display[name] = _shown(raw)
        meta = result.get("__meta")
        ignored = (meta.get("ignoredFields") or []) if isinstance(meta, dict) else []
        return cls(values=values, display=display, ignored_fields=[str(i) for i in ignored])

    def value(self, field: str) -> str:
        return self.values.get(field, "")

    def shown(self, field: str) -> str:
        return self.display.get(field, "") or self.value(field)

    def as_display_all(self) -> dict[str, dict[str, str]]:
        """The record as the Table API answers with sysparm_display_value=all: what servicenow/records.py reads."""
        return {name: {"value": value, "display_value": self.shown(name)} for name, value in self.values.items()}


class StandardTemplate(BaseModel):
    """A standard change template (std_change_record_producer): its sys_id is what POST change/standard takes."""

    sys_id: str
    name: str
    short_description: str = ""
    active: bool = True

    @classmethod
    def of(cls, record: ApiRecord) -> StandardTemplate:
        return cls(
            sys_id=record.value("sys_id"),
            name=record.value("name") or record.shown("name"),
            short_description=record.value("short_description"),
            active=record.value("active") != "false",
        )


class Condition(BaseModel):
    name: str = ""
    description: str | None = None
    passed: bool = False


class StateTransition(BaseModel):
    sys_id: str = ""
    display_value: str = ""
    from_state: str = ""
    to_state: str = ""
    transition_available: bool = False
    automatic_transition: bool = False
    conditions: list[Condition] = []


class NextStates(BaseModel):
    """GET change/{sys_id}/nextstates: the states the change may be put in now (its current state included)."""

    available_states: list[str] = []
    state_label: dict[str, str] = {}
    transitions: list[StateTransition] = []

    @classmethod
    def parse(cls, result: Mapping[str, Any]) -> NextStates:
        transitions: list[StateTransition] = []
        for group in result.get("state_transitions") or []:
            for item in group if isinstance(group, list) else [group]:
                conditions = [
                    Condition(
                        name=str((c.get("condition") or {}).get("name") or ""),
                        description=(c.get("condition") or {}).get("description"),
                        passed=bool(c.get("passed")),
                    )
                    for c in item.get("conditions") or []
                ]
                transitions.append(
                    StateTransition(
                        sys_id=str(item.get("sys_id") or ""),
                        display_value=str(item.get("display_value") or ""),
                        from_state=plain(item.get("from_state"), "state"),
                        to_state=plain(item.get("to_state"), "state"),
                        transition_available=bool(item.get("transition_available")),
                        automatic_transition=bool(item.get("automatic_transition")),
                        conditions=conditions,
                    )
                )
        labels = {plain(k, "state"): str(v) for k, v in (result.get("state_label") or {}).items()}
        available = [plain(s, "state") for s in result.get("available_states") or []]
        return cls(available_states=available, state_label=labels, transitions=transitions)

    def can_move_to(self, state: str) -> bool:
        """True when a transition to `state` is available now (the API lists it, and one of its transitions is)."""
        return state in self.available_states and any(
            t.to_state == state and t.transition_available for t in self.transitions
        )

    def blocking_conditions(self, state: str) -> list[str]:
        """Why no transition to `state` is available: the names of the conditions that did not pass."""
        return sorted({c.name for t in self.transitions if t.to_state == state for c in t.conditions if not c.passed})


class ConflictStatus(BaseModel):
    """GET change/{sys_id}/conflict. `status` reads "Conflict" after any run, conflicts found or not (the docs'
    note): the conflicts list says whether there are any."""

    status: str = ""
    last_run: str = ""
    record_count: str = ""
    job_status: str = ""
    conflicts: list[ApiRecord] = Field(default_factory=list)

    @property
    def ran(self) -> bool:
        return bool(self.last_run)


class Presence(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"  # the plugin is not installed (or the API is disabled)
    FORBIDDEN = "forbidden"  # installed, but this user's roles do not open it


def _one(result: Any) -> Mapping[str, Any]:
    """A single record: the documented samples show both `result: {...}` and `result: [{...}]`."""
    if isinstance(result, list):
        if len(result) != 1:
            raise BadRequest("Unexpected Change Management API answer", f"expected one record, got {len(result)}")
        result = result[0]
    if not isinstance(result, dict):
        raise BadRequest("Unexpected Change Management API answer", f"expected a record, got {type(result).__name__}")
    return result


def not_installed(error: Exception) -> bool:
    """The answer of an instance without the plugin: 400 "Requested URI does not represent any resource", or 404."""
    if isinstance(error, NotFound):
        return True
    if isinstance(error, BadRequest):
        return NOT_INSTALLED.lower() in f"{error.message} {error.detail}".lower()
    return False


class ChangeApi:
    """The Change Management API of one instance, over a ServiceNowClient (its auth, retries and errors)."""

    def __init__(self, client: ServiceNowClient, *, version: str | None = None) -> None:
        self.client = client
        self.base = f"{BASE_PATH}/{version}" if version else BASE_PATH

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        response = await self.client.request("GET", f"{self.base}{path}", params=params)
        return response.json()["result"]

    async def presence(self) -> Presence:
        """Whether the instance has the API, asked with the cheapest call (one template)."""
        try:
            await self._get("/change/standard/template", {"sysparm_limit": "1"})
        except (BadRequest, NotFound) as exc:
            if not_installed(exc):
                return Presence.ABSENT
            raise
        except Forbidden:
            return Presence.FORBIDDEN
        return Presence.PRESENT

    async def available(self) -> bool:
        return await self.presence() == Presence.PRESENT

    async def templates(self, query: Query | None = None) -> list[StandardTemplate]:
        """Every template matching `query`, page by page (offset + limit, as the endpoint documents)."""
        found: list[StandardTemplate] = []
        offset = 0
        while True:
            params = {"sysparm_limit": str(TEMPLATE_PAGE), "sysparm_offset": str(offset)}
            if query is not None and query.encode():
                params["sysparm_query"] = query.encode()
            response = await self.client.request("GET", f"{self.base}/change/standard/template", params=params)
            rows = response.json()["result"] or []
            found += [StandardTemplate.of(ApiRecord.parse(row)) for row in rows]
            total = response.headers.get("X-Total-Count", "")
            offset += TEMPLATE_PAGE
            # Rows hidden by ACLs make a page short: trust the count when there is one, an empty page otherwise.
            more = offset < int(total) if total.isdigit() else bool(rows)
            if not more:
                return found

    async def find_template(self, name: str) -> StandardTemplate | None:
        """The active template named `name` (exact), or None."""
        matches = await self.templates(Query().eq("name", name).eq("active", "true"))
        return next((t for t in matches if t.name == name), None)

    async def create_standard(self, template_id: str, fields: Mapping[str, str]) -> ApiRecord:
        """A standard change from the template; `fields` override the template's values (`ignored_fields` names
        those the API would not apply: description, the plans, read-only fields, fields the change lacks)."""
        response = await self.client.request("POST", f"{self.base}/change/standard/{template_id}", json=dict(fields))
        return ApiRecord.parse(_one(response.json()["result"]))

    async def get_change(self, sys_id: str) -> ApiRecord:
        return ApiRecord.parse(_one(await self._get(f"/change/{sys_id}")))

    async def update_change(self, sys_id: str, fields: Mapping[str, str]) -> ApiRecord:
        response = await self.client.request("PATCH", f"{self.base}/change/{sys_id}", json=dict(fields))
        return ApiRecord.parse(_one(response.json()["result"]))

    async def next_states(self, sys_id: str) -> NextStates:
        return NextStates.parse(_one(await self._get(f"/change/{sys_id}/nextstates")))

    async def start_conflict_check(self, sys_id: str) -> str:
        """Starts conflict checking; answers the sys_id of the checking process."""
        response = await self.client.request("POST", f"{self.base}/change/{sys_id}/conflict")
        return plain(response.json()["result"])

    async def conflict_status(self, sys_id: str) -> ConflictStatus:
        result = _one(await self._get(f"/change/{sys_id}/conflict"))
        return ConflictStatus(
            status=plain(result.get("status")),
            last_run=plain(result.get("last_run")),
            record_count=plain(result.get("record_count")),
            job_status=plain(result.get("job_status")),
            conflicts=[ApiRecord.parse(c) for c in result.get("conflicts") or []],
        )
