"""`changeloop doctor`, the instance: the integration user, its access, the tables and fields, the update set and the
shim its rules point at, the Change Management API, the rate limit.

How write permission is proven without writing a record: the integration user's roles, read from
`sys_user_has_role` (an instance lists contained roles there too, as inherited grants), against the roles
ServiceNow documents for each table's ACLs (markdown/it-service-management/change-management/
installed-with-cm-itsm-roles.md, create-a-change-task.md: itil, or the application's read/write role; admin
passes every ACL), which is also what the sandbox enforces (sandbox/acl.py). A test write would leave a record
behind and fire the instance's Business Rules, changeloop's own among them; a role is what an admin grants, so it
is also what the fix names. Custom ACLs beyond the documented ones are not seen: a live read of change_request is
the one request made as the integration user beyond authenticating (it also carries the rate-limit headers).

The installation is read from `sys_user_has_role`, `sys_db_object`, `sys_dictionary`, `sys_script`,
`sys_properties` and `sys_rest_message(_fn)`. A least-privilege integration user may not read those on a real
instance: `--admin-user` reads them as an admin (nothing is written either way); without it, a table the
integration user may not read makes its check `unknown`, never a guess. Property values are never printed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from config.registry import Registry
from config.settings import Settings
from servicenow.auth import BasicAuth
from servicenow.change_api import ChangeApi, Presence
from servicenow.client import ServiceNowClient
from servicenow.errors import (
    BadRequest,
    Forbidden,
    NotAuthenticated,
    NotFound,
    RateLimited,
    ServiceNowError,
    TransportError,
)
from servicenow.query import Query
from starter.doctor_report import Report

CHECK_TIMEOUT = 10.0  # seconds for any one call: the doctor reports a hang, it does not sit it out
SHIM_HEALTH_RETRIES = 2  # a 503 is asked again (1 s apart) before the shim is called unhealthy
IMPORT_FIX = "import and commit deploy/servicenow/changeloop_update_set.xml (deploy/servicenow/README.md)"

# --- what the update set installs (deploy/servicenow/README.md; tests/doctor holds these to the shipped XML) -------


@dataclass(frozen=True)
class RuleSpec:
    name: str
    table: str
    blocking: bool
    consequence: str  # what happens without it


RULES = (
    RuleSpec(
        "changeloop: send approved change",
        "change_request",
        True,
        "approved changes wait for the next scheduled poll instead of starting at once",
    ),
    RuleSpec(
        "changeloop: send approval decision",
        "sysapproval_approver",
        True,
        "ServiceNow approvals never reach a waiting approval gate",
    ),
    RuleSpec(
        "changeloop: send change event",
        "change_request",
        True,
        "a cancel, a hold or a new planned window reaches changeloop only when it next reads the ticket",
    ),
    RuleSpec(
        "changeloop: send resolved incident",
        "incident",
        False,
        "resolving changeloop's incident in ServiceNow does not close its workflow",
    ),
)
REST_MESSAGE, REST_METHOD = "changeloop shim", "post"
SHIM_URL = "x_changeloop.shim_url"
PROPERTIES = {SHIM_URL: True, "x_changeloop.webhook_token": True, "x_changeloop.incident_token": False}  # -> blocking

# --- roles and the ACLs that check them ---------------------------------------------------------------------------

ADMIN = "admin"
# installed-with-cm-itsm-roles.md, "Contains roles": covers an answer that lists direct grants only.
CONTAINS: dict[str, tuple[str, ...]] = {
    "sn_change_admin": ("sn_change_write",),
    "sn_change_write": ("sn_change_read",),
    "sn_change_read": ("sn_cmdb_user", "cmdb_read"),
    "sn_incident_write": ("sn_incident_read",),
    "sn_incident_read": ("cmdb_read",),
    "change_manager": ("itil",),
}
# deploy/servicenow/README.md, "The integration user": roles it must not have.
TOO_POWERFUL = ("admin", "security_admin", "change_manager", "approval_admin")
# change-management-api.md: "PATCH/POST: change_manager, itil, or admin".
CHANGE_API_WRITERS = ("itil", "change_manager", ADMIN)


@dataclass(frozen=True)
class Access:
    """What changeloop does with one table, and the roles whose ACLs allow it (any one of them)."""

    subject: str
    read: tuple[str, ...]
    write: tuple[str, ...]  # empty: changeloop only reads it
    grant: str  # the least role that opens what is needed (a write role contains its read role)
    blocking_read: bool
    blocking_write: bool
    why: str


_CHANGE_R, _CHANGE_W = ("itil", "sn_change_read"), ("itil", "sn_change_write")
_CMDB_R = ("itil", "sn_cmdb_user", "sn_cmdb_editor", "cmdb_read")
ACCESS = (
    Access("change_request", _CHANGE_R, _CHANGE_W, "sn_change_write", True, True, "changes move and get notes"),
    # No shipped workflow writes change tasks yet.
    Access("change_task", _CHANGE_R, _CHANGE_W, "sn_change_write", False, False, "no shipped workflow uses them yet"),
    Access(
        "incident",
        ("itil", "sn_incident_read"),
        ("itil", "sn_incident_write"),
        "sn_incident_write",
        True,
        True,
        "a failed change opens an incident",
    ),
    # Only reconciliation writes CIs: a change runs without it.
    Access(
        "cmdb_ci",
        _CMDB_R,
        ("itil", "sn_cmdb_editor"),
        "sn_cmdb_editor",
        True,
        False,
        "reconciliation updates CIs with it",
    ),
    Access("cmdb_rel_ci", _CMDB_R, (), "cmdb_read", True, False, "patch waves follow CI relationships"),
    Access("sysapproval_approver", _CHANGE_R, (), "sn_change_read", True, False, "gates read ServiceNow approvals"),
    Access("sys_journal_field", _CHANGE_R, (), "sn_change_read", True, False, "work notes are read before a rewrite"),
    # The Attachment API checks the parent record's ACLs (c_AttachmentAPI.md); changeloop attaches to changes.
    Access("attachments", _CHANGE_R, _CHANGE_W, "sn_change_write", False, False, "needed to attach files to changes"),
)

# --- the tables and fields changeloop reads and writes (docs/architecture.md, "Contract") --------------------------

FIELDS: dict[str, tuple[str, ...]] = {
    "change_request": (
        "number",
        "state",
        "type",
        "approval",
        "category",
        "cmdb_ci",
        "std_change_producer_version",
        "work_notes",
        "close_code",
        "close_notes",
        "correlation_id",
        "correlation_display",
        "start_date",
        "end_date",
        "on_hold",
    ),
    "incident": (
        "number",
        "state",
        "short_description",
        "description",
        "cmdb_ci",
        "impact",
        "urgency",
        "assignment_group",
        "correlation_id",
        "correlation_display",
        "close_code",
        "close_notes",
    ),
    "change_task": ("change_request", "state", "work_notes"),
    "cmdb_ci": ("name", "sys_class_name", "install_status", "busines_criticality", "support_group", "managed_by_group"),
    "cmdb_rel_ci": ("parent", "child", "type"),
    "sysapproval_approver": ("sysapproval", "approver", "state"),
    "sys_journal_field": ("element", "element_id", "value"),
}


@dataclass(frozen=True)
class AdminLogin:
    """Who reads the installation when the integration user may not (`--admin-user`)."""

    username: str
    password: SecretStr


class Unreadable(Exception):
    """The reading user may not read this table: refused, or every matching row hidden by its ACLs."""

    def __init__(self, table: str, how: str) -> None:
        super().__init__(f"{table}: {how}")
        self.table = table


def expand(roles: Iterable[str]) -> frozenset[str]:
    found: set[str] = set()
    pending = list(roles)
    while pending:
        role = pending.pop()
        if role and role not in found:
            found.add(role)
            pending.extend(CONTAINS.get(role, ()))
    return frozenset(found)


def _value(raw: Any) -> str:
    if isinstance(raw, dict):
        return str(raw.get("value") or "")
    return "" if raw is None else str(raw)


def _shown(raw: Any) -> str:
    if isinstance(raw, dict):
        return str(raw.get("display_value") or "")
    return "" if raw is None else str(raw)


@dataclass
class InstanceChecks:
    settings: Settings
    report: Report
    registry: Registry | None = None
    admin: AdminLogin | None = None
    user: str | None = None  # the integration user's user_name (default: the configured username)
    transport: httpx.AsyncBaseTransport | None = None
    rate_headers: dict[str, str] = field(default_factory=dict)
    roles: frozenset[str] | None = None
    shim_url: str | None = None

    @property
    def username(self) -> str:
        return self.user or self.settings.servicenow_username or ""

    @property
    def reader(self) -> str:
        return self.admin.username if self.admin else self.username or "the integration user"

    def _reread(self, table: str) -> str:
        if self.admin:
            return f"{self.admin.username} may not read {table}: run the doctor with an admin account"
        return f"rerun with --admin-user (the integration user may not read {table}, as it should not)"

    async def run(self) -> None:
        url = self.settings.servicenow_url
        options: dict[str, Any] = {"timeout": CHECK_TIMEOUT, "max_retries": 0, "transport": self.transport}
        try:
            sn = ServiceNowClient.from_settings(self.settings, max_retry_after=0.0, **options)
        except ValueError as exc:
            self.report.problem("servicenow.auth", f"no ServiceNow credentials for {url}", str(exc))
            self._skip("no credentials")
            return
        async with sn:
            if not await self.check_auth(sn):
                self._skip("the integration user did not authenticate")
                return
            inspector = sn
            if self.admin:
                auth = BasicAuth(self.admin.username, self.admin.password.get_secret_value())
                inspector = ServiceNowClient(url, auth, **options)
            try:
                await self.check_roles(inspector)
                await self.check_dictionary(inspector)
                await self.check_change_api(sn)
                self.check_rate_limit()
                await self.check_update_set(inspector)
                await self.check_shim()
            finally:
                if inspector is not sn:
                    await inspector.aclose()

    def _skip(self, why: str) -> None:
        for check_id in (
            "servicenow.access",
            "servicenow.dictionary",
            "servicenow.change_api",
            "servicenow.rate_limit",
            "update_set",
            "shim.reachable",
        ):
            self.report.skipped(check_id, f"{check_id}: skipped ({why})")

    async def _rows(
        self, sn: ServiceNowClient, table: str, query: Query, fields: list[str], **kwargs: Any
    ) -> list[dict[str, Any]]:
        """The rows, or Unreadable when the reader may not see them (X-Total-Count counts hidden rows too)."""
        try:
            rows = await sn.list(table, query, fields=fields, **kwargs)
            if not rows and await sn.count(table, query) > 0:
                raise Unreadable(table, "every matching row is hidden by its ACLs")
            return rows
        except (Forbidden, NotFound) as exc:
            raise Unreadable(table, exc.message) from exc

    # -- the integration user --------------------------------------------------------------------------------------

    async def check_auth(self, sn: ServiceNowClient) -> bool:
        """The integration user authenticates (basic or OAuth, as configured), with one read of change_request."""
        how = "OAuth" if self.settings.servicenow_client_id else "basic auth"
        who = self.username or f"OAuth client {self.settings.servicenow_client_id}"
        url = self.settings.servicenow_url
        params = {"sysparm_limit": "1", "sysparm_fields": "sys_id"}
        try:
            response = await sn.request("GET", "/api/now/table/change_request", params=params)
        except NotAuthenticated as exc:
            fix = (
                "check CHANGELOOP_SERVICENOW_CLIENT_ID / _CLIENT_SECRET (and the OAuth application's user)"
                if self.settings.servicenow_client_id
                else "check CHANGELOOP_SERVICENOW_USERNAME / _PASSWORD"
            )
            self.report.problem("servicenow.auth", f"{who} does not authenticate at {url} ({how}: {exc.message})", fix)
            return False
        except TransportError as exc:
            self.report.problem(
                "servicenow.auth",
                f"ServiceNow at {url} does not answer ({exc.detail})",
                "check CHANGELOOP_SERVICENOW_URL and the network path from here",
            )
            return False
        except RateLimited as exc:
            self.rate_headers = {"Retry-After": str(math.ceil(exc.retry_after))}
            self.report.ok("servicenow.auth", f"{who} authenticates at {url} with {how} (and is rate limited now)")
            return True
        except (BadRequest, Forbidden, NotFound):  # authenticated; whether it may read is the access checks' question
            self.report.ok("servicenow.auth", f"{who} authenticates at {url} with {how}")
            return True
        except ServiceNowError as exc:  # 5xx: the instance failed, nothing is known of the user
            summary = f"ServiceNow at {url} answered {exc.status_code} ({exc.message})"
            self.report.problem("servicenow.auth", summary, "the instance failed: check its status, then run again")
            return False
        self.rate_headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit")}
        self.report.ok("servicenow.auth", f"{who} authenticates at {url} with {how}")
        return True

    async def check_roles(self, inspector: ServiceNowClient) -> None:
        user = self.username
        if not user:
            self.report.unknown(
                "servicenow.access",
                "the integration user's roles are unknown (OAuth client credentials: no user name configured)",
                "rerun with --user <the OAuth application's user>",
            )
            return
        try:
            users = await self._rows(inspector, "sys_user", Query().eq("user_name", user), ["sys_id", "active"])
            if not users:
                self.report.problem(
                    "servicenow.access",
                    f"there is no user {user!r} (or {self.reader} may not read it)",
                    "create the integration user (deploy/servicenow/README.md, section 4)",
                )
                return
            grants = await self._rows(
                inspector,
                "sys_user_has_role",
                Query().eq("user", users[0]["sys_id"]).eq("state", "active"),
                ["role"],
                display_value=True,
            )
        except Unreadable as exc:
            self.report.unknown(
                "servicenow.access",
                f"{user}'s roles could not be read as {self.reader} ({exc})",
                self._reread(exc.table),
            )
            return
        if users[0].get("active") == "false":
            self.report.problem("servicenow.user_active", f"user {user} is inactive", f"set Active on {user}")
        self.roles = expand(_shown(g.get("role")) for g in grants)
        for access in ACCESS:
            self._judge(access, user, self.roles)
        powerful = sorted(self.roles & set(TOO_POWERFUL))
        if powerful:
            self.report.problem(
                "servicenow.least_privilege",
                f"{user} has {', '.join(powerful)}: it could approve or move any change",
                f"remove {', '.join(powerful)} from {user} (deploy/servicenow/README.md, section 4)",
                blocking=False,
            )
        else:
            self.report.ok(
                "servicenow.least_privilege", f"{user} has none of {', '.join(TOO_POWERFUL)}", blocking=False
            )

    def _judge(self, access: Access, user: str, roles: frozenset[str]) -> None:
        admin = ADMIN in roles
        may_read = admin or bool(roles & set(access.read))
        may_write = admin or not access.write or bool(roles & set(access.write))
        check_id = f"servicenow.access.{access.subject}"
        if may_read and may_write:
            held = sorted(roles & set(access.read + access.write)) or [ADMIN]
            verbs = "read and write" if access.write else "read"
            self.report.ok(check_id, f"{user} may {verbs} {access.subject} ({', '.join(held)})")
            return
        missing = [
            (verb, needed)
            for verb, needed, ok in (("read", access.read, may_read), ("write", access.write, may_write))
            if not ok
        ]
        blocking = (not may_read and access.blocking_read) or (not may_write and access.blocking_write)
        what = " or ".join(verb for verb, _ in missing)
        among = "; ".join(f"{verb}: {', '.join(needed)}" for verb, needed in missing)
        if len(missing) == 1:
            among = ", ".join(missing[0][1])
        consequence = "" if blocking else f"; only a warning: {access.why}"
        self.report.problem(
            check_id,
            f"{user} may not {what} {access.subject} (no role among {among}{consequence})",
            f"grant {access.grant} to {user}",
            blocking=blocking,
        )

    # -- tables and fields -------------------------------------------------------------------------------------------

    async def check_dictionary(self, inspector: ServiceNowClient) -> None:
        wanted: dict[str, dict[str, str]] = {t: dict.fromkeys(f, "") for t, f in FIELDS.items()}  # field -> setting
        for table, name, setting in (
            ("change_request", self.settings.execution_url_field, "CHANGELOOP_EXECUTION_URL_FIELD"),
            ("cmdb_ci", self.settings.site_field, "CHANGELOOP_SITE_FIELD"),
        ):
            if name:
                wanted[table][name] = setting
        try:
            chains = await self._table_chains(inspector, list(wanted))
            tables = sorted({t for chain in chains.values() for t in chain})
            columns = sorted({f for fields in wanted.values() for f in fields})
            query = Query().in_("name", tables).in_("element", columns)
            entries = await self._rows(inspector, "sys_dictionary", query, ["name", "element"])
        except Unreadable as exc:
            self.report.unknown(
                "servicenow.dictionary",
                f"the data dictionary could not be read as {self.reader} ({exc})",
                self._reread(exc.table),
            )
            return
        defined = {(str(e["name"]), str(e["element"])) for e in entries}
        complete: list[str] = []
        for table, fields in wanted.items():
            check_id = f"servicenow.dictionary.{table}"
            if table not in chains:
                self.report.problem(
                    check_id,
                    f"table {table} does not exist on the instance",
                    "changeloop needs the Change, Incident and CMDB applications",
                )
                continue
            missing = [f for f in fields if not any((t, f) in defined for t in chains[table])]
            core = [f for f in missing if not fields[f]]
            if core:
                self.report.problem(
                    check_id,
                    f"{table} lacks {', '.join(core)}",
                    "changeloop reads or writes these fields: check the instance's release and plugins",
                )
            for name in (f for f in missing if fields[f]):
                self.report.problem(
                    f"{check_id}.{name}",
                    f"{table} has no field {name} (named by {fields[name]}); the instance ignores writes to "
                    "fields it does not have, so the value would be lost silently",
                    f"create {name} on {table}, or unset {fields[name]}",
                    blocking=False,
                )
            if not missing:
                complete.append(f"{table} ({len(fields)})")
        if complete:
            self.report.ok("servicenow.dictionary", f"the fields changeloop uses exist: {', '.join(complete)}")

    async def _table_chains(self, inspector: ServiceNowClient, tables: list[str]) -> dict[str, list[str]]:
        """table -> [the table, the table it extends, ... the root], from sys_db_object, for the tables that exist.

        A field is defined once, on the table that introduced it (task's correlation_id, cmdb_ci's name)."""
        fields = ["sys_id", "name", "super_class"]
        rows = await self._rows(inspector, "sys_db_object", Query().in_("name", tables), fields)
        if not rows:
            raise Unreadable("sys_db_object", "not even change_request is listed")
        known: dict[str, tuple[str, str]] = {}  # sys_id -> (name, super_class sys_id)
        while rows:
            known.update({str(r["sys_id"]): (str(r["name"]), _value(r.get("super_class"))) for r in rows})
            parents = sorted({parent for _, parent in known.values() if parent and parent not in known})
            rows = (
                await self._rows(inspector, "sys_db_object", Query().in_("sys_id", parents), fields) if parents else []
            )
        id_of = {name: sys_id for sys_id, (name, _) in known.items()}
        chains: dict[str, list[str]] = {}
        for table in (t for t in tables if t in id_of):
            chain: list[str] = []
            current = id_of[table]
            while current in known and len(chain) < 20:  # 20: a loop in a broken dictionary must not hang the run
                name, current = known[current]
                chain.append(name)
            chains[table] = chain
        return chains

    # -- the Change Management API and the rate limit ----------------------------------------------------------------

    async def check_change_api(self, sn: ServiceNowClient) -> None:
        mode = self.settings.change_api
        try:
            presence = await ChangeApi(sn).presence()
        except ServiceNowError as exc:
            self.report.info("servicenow.change_api", f"the Change Management API answered {exc.status_code} ({exc})")
            return
        if presence != Presence.PRESENT:
            if mode == "on":
                self.report.problem(
                    "servicenow.change_api",
                    f"the Change Management API is {presence.value} but CHANGELOOP_CHANGE_API=on",
                    "set CHANGELOOP_CHANGE_API=auto (the Table API is used where the API is absent)",
                    blocking=False,
                )
            else:
                self.report.info(
                    "servicenow.change_api",
                    f"the Change Management API is {presence.value}: changes are created through the Table API",
                )
            return
        use = "not used (CHANGELOOP_CHANGE_API=off)" if mode == "off" else "used by `changeloop change create`"
        writers = ", ".join(CHANGE_API_WRITERS)
        lacks = (
            f" (its POST and PATCH are documented for {writers}; {self.username} has none)"
            if self.roles is not None and not self.roles & set(CHANGE_API_WRITERS)
            else ""
        )
        self.report.info("servicenow.change_api", f"the Change Management API (sn_chg_rest) is present, {use}{lacks}")

    def check_rate_limit(self) -> None:
        """From the X-RateLimit-* headers of the read made as the integration user (inbound-REST-API-rate-limiting.md:
        Limit = requests per hour, Reset = the window's end in UNIX time, Rule = the rule's sys_id)."""
        user = self.username or "the integration user"
        headers = {k.lower(): v for k, v in self.rate_headers.items()}
        if "retry-after" in headers:
            self.report.problem(
                "servicenow.rate_limit",
                f"{user} is rate limited right now (retry after {headers['retry-after']} s)",
                "raise the rate limit rule for the integration user (System Web Services > REST > Rate Limiting)",
                blocking=False,
            )
            return
        limit = headers.get("x-ratelimit-limit", "")
        if not limit.isdigit():
            self.report.info("servicenow.rate_limit", f"no rate limit rule applies to {user} (no X-RateLimit headers)")
            return
        reset = headers.get("x-ratelimit-reset", "")
        resets = datetime.fromtimestamp(int(reset), UTC).strftime("%H:%M:%S UTC") if reset.isdigit() else "?"
        interval = self.registry.poll.interval if self.registry else timedelta(minutes=5)
        poll = math.ceil(timedelta(hours=1) / max(interval, timedelta(seconds=1)))
        summary = (
            f"{user} may make {limit} requests per hour (rule {headers.get('x-ratelimit-rule', '?')}, window resets "
            f"{resets}); the scheduled poll alone uses at least {poll} of them"
        )
        if poll * 2 > int(limit):
            fix = "raise the rule's limit, or lengthen poll.interval in the runbook registry"
            self.report.problem("servicenow.rate_limit", summary, fix, blocking=False)
        else:
            self.report.info("servicenow.rate_limit", summary)

    # -- the update set and the shim it points at --------------------------------------------------------------------

    async def check_update_set(self, inspector: ServiceNowClient) -> None:
        try:
            rules = Query().in_("name", [r.name for r in RULES])
            scripts = await self._rows(inspector, "sys_script", rules, ["name", "collection", "active"])
            names = Query().in_("name", list(PROPERTIES))
            properties = await self._rows(inspector, "sys_properties", names, ["name", "value"])
            messages = await self._rows(inspector, "sys_rest_message", Query().eq("name", REST_MESSAGE), ["sys_id"])
            methods: list[dict[str, Any]] = []
            if messages:
                of_message = Query().in_("rest_message", [str(m["sys_id"]) for m in messages])
                methods = await self._rows(
                    inspector, "sys_rest_message_fn", of_message.eq("function_name", REST_METHOD), ["sys_id"]
                )
        except Unreadable as exc:
            self.report.unknown(
                "update_set",
                f"the update set's records could not be read as {self.reader} ({exc})",
                self._reread(exc.table),
            )
            return
        for rule in RULES:
            check_id = f"update_set.rule.{rule.name.removeprefix('changeloop: ').replace(' ', '_')}"
            mine = [s for s in scripts if s.get("name") == rule.name and s.get("collection") == rule.table]
            if not mine:
                elsewhere = sorted({str(s.get("collection")) for s in scripts if s.get("name") == rule.name})
                where = f" (there is one on {', '.join(elsewhere)})" if elsewhere else ""
                summary = f"Business Rule '{rule.name}' on {rule.table} is missing{where}: {rule.consequence}"
                self.report.problem(check_id, summary, IMPORT_FIX, blocking=rule.blocking)
            elif not any(s.get("active") == "true" for s in mine):
                summary = f"Business Rule '{rule.name}' on {rule.table} is inactive: {rule.consequence}"
                fix = f"set Active on '{rule.name}' (System Definition > Business Rules)"
                self.report.problem(check_id, summary, fix, blocking=rule.blocking)
            else:
                self.report.ok(
                    check_id, f"Business Rule '{rule.name}' on {rule.table} is active", blocking=rule.blocking
                )
        if methods:
            self.report.ok(
                "update_set.rest_message", f"REST message '{REST_MESSAGE}' and its '{REST_METHOD}' method exist"
            )
        else:
            what = f"REST message '{REST_MESSAGE}'" + (f" has no '{REST_METHOD}' method" if messages else " is missing")
            self.report.problem("update_set.rest_message", f"{what}: the Business Rules send through it", IMPORT_FIX)
        values = {str(p.get("name")): str(p.get("value") or "").strip() for p in properties}
        for name, blocking in PROPERTIES.items():
            check_id = f"update_set.property.{name}"
            if name not in values:
                self.report.problem(check_id, f"system property {name} is missing", IMPORT_FIX, blocking=blocking)
            elif not values[name]:
                what = "the shim's base URL" if name == SHIM_URL else "the bearer token of its shim principal"
                self.report.problem(
                    check_id,
                    f"system property {name} is empty: the rules that use it send nothing",
                    f"set it to {what} (deploy/servicenow/README.md, section 2)",
                    blocking=blocking,
                )
            elif name == SHIM_URL:
                self.shim_url = values[name].rstrip("/")
                self.report.ok(check_id, f"system property {name} is {self.shim_url}", blocking=blocking)
            else:
                self.report.ok(check_id, f"system property {name} is set (value not shown)", blocking=blocking)

    async def check_shim(self) -> None:
        if not self.shim_url:
            self.report.skipped("shim.reachable", "shim /healthz: skipped (x_changeloop.shim_url is not known)")
            return
        fix = (
            "start the shim (`changeloop shim`) or correct x_changeloop.shim_url; the instance (or its MID Server) "
            "must reach it as well"
        )
        try:
            async with httpx.AsyncClient(timeout=CHECK_TIMEOUT, transport=self.transport) as http:
                answer = await http.get(f"{self.shim_url}/healthz")
                for _ in range(SHIM_HEALTH_RETRIES):
                    if answer.status_code != 503:
                        break
                    # 503: the shim's own Temporal check (2 s) missed once; a busy frontend is no broken shim.
                    await asyncio.sleep(1)
                    answer = await http.get(f"{self.shim_url}/healthz")
        except httpx.HTTPError as exc:
            summary = f"the shim at {self.shim_url} does not answer /healthz from here ({type(exc).__name__})"
            self.report.problem("shim.reachable", summary, fix)
            return
        if answer.status_code == 200:
            self.report.ok("shim.reachable", f"the shim at {self.shim_url} answers /healthz (from here)")
        else:
            summary = f"the shim at {self.shim_url} answers /healthz with {answer.status_code}"
            self.report.problem("shim.reachable", summary, "its /healthz fails while it cannot reach Temporal: " + fix)
