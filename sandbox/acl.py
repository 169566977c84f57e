"""Who may see and change what: each user's roles, the table ACLs that check them, and per-user row hiding.

What the instance documents and the sandbox reproduces:
- Roles (markdown/it-service-management/change-management/installed-with-cm-itsm-roles.md): `sn_change_read` /
  `sn_change_write`, `sn_incident_read` / `sn_incident_write`, a write role containing its read role; `itil` opens the
  same tables (markdown/it-service-management/change-management/create-a-change-task.md: "itil, admin, or
  sn_change_write"); `sn_cmdb_user` / `sn_cmdb_editor` for the CMDB. `admin` passes every check ("admin overrides").
- A write the user's roles do not allow answers 403 (markdown/api-reference/rest-api-explorer/
  r_RESTAPIHTTPResponseCodes.md: "ACL failures"); a record the user may not read answers 404 "Record doesn't
  exist or ACL restricts the record retrieval".
- Row-level read ACLs are evaluated per record AFTER `sysparm_limit`/`sysparm_offset` chose the page
  (markdown/api-reference/rest-apis/c_TableAPI.md, sysparm_limit: "This limit is applied before ACL evaluation"):
  `visible()` filters a page that was already cut, so pages come back short or empty while more rows follow.

Row hiding is configured from the control panel (`PUT /sandbox/acl`) as rules {table, user, sys_ids, query}; a
rule on a table also covers the tables extending it (an ACL on cmdb_ci applies to cmdb_ci_linux_server).
Roles are configured at start (`SandboxConfig.roles`) and changed at run time (`/sandbox/roles`); they are shown
read-only through the Table API as `sys_user_role` and `sys_user_has_role`, which is how an admin's tool (or
`changeloop doctor`) reads what the integration user may do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from sandbox.instance import Instance
from sandbox.query import Lookup, Query, parse
from sandbox.seed import seed_sys_id
from sandbox.tables import ancestors, get_table

Record = dict[str, str]
Operation = Literal["read", "create", "write", "delete"]

ADMIN = "admin"

# Least privilege for the integration user: the application write roles, not `itil` (which would open every task
# table). Removing `sn_change_write` is therefore enough to stop it reading and writing change_request/change_task.
DEFAULT_ROLES: dict[str, list[str]] = {
    "admin": [ADMIN],
    "changeloop.integration": ["sn_change_write", "sn_incident_write", "sn_cmdb_editor"],
}

# Roles that contain others (installed-with-cm-itsm-roles.md, "Contains roles" column).
CONTAINS: dict[str, tuple[str, ...]] = {
    "sn_change_admin": ("sn_change_write",),
    "sn_change_write": ("sn_change_read",),
    "sn_change_read": ("sn_cmdb_user", "cmdb_read"),
    "sn_incident_write": ("sn_incident_read",),
    "sn_incident_read": ("cmdb_read",),
}

ROLE_DESCRIPTIONS: dict[str, str] = {
    ADMIN: "System administrator",
    "itil": "ITIL user: works on tasks (incident, change, problem)",
    "sn_change_admin": "Change admin",
    "sn_change_write": "Write access to the Change Management application and related records",
    "sn_change_read": "Read access to the Change Management application and related records",
    "sn_incident_write": "Write access to the Incident Management application and related records",
    "sn_incident_read": "Read access to the Incident Management application and related records",
    "sn_cmdb_editor": "CMDB editor",
    "sn_cmdb_user": "CMDB user",
    "cmdb_read": "Read access to the CMDB",
}


@dataclass(frozen=True)
class TableAcl:
    """The roles a table's read ACL and its create/write/delete ACLs accept (any one of them)."""

    read: frozenset[str]
    write: frozenset[str]


def _acl(read: Iterable[str], write: Iterable[str]) -> TableAcl:
    return TableAcl(frozenset(read), frozenset(write))


_CHANGE = _acl(("itil", "sn_change_read"), ("itil", "sn_change_write"))
_CMDB = _acl(("itil", "sn_cmdb_user", "sn_cmdb_editor", "cmdb_read"), ("itil", "sn_cmdb_editor"))

# Tables without an entry are open to every authenticated user (the sandbox does not model every ACL an instance
# ships; these are the tables changeloop reads and writes whose access an admin grants through roles).
TABLE_ACLS: dict[str, TableAcl] = {
    "change_request": _CHANGE,
    "change_task": _CHANGE,
    "incident": _acl(("itil", "sn_incident_read"), ("itil", "sn_incident_write")),
    "cmdb_ci": _CMDB,  # and every class extending it
    "cmdb_rel_ci": _CMDB,
}

# The two tables projected from this module; the Table API refuses writes to them.
ROLE_TABLES = ("sys_user_role", "sys_user_has_role")


def acl_for(table: str) -> TableAcl | None:
    """The ACL of the table or of the nearest table it extends."""
    if get_table(table) is None:
        return None
    for name in ancestors(table):
        if name in TABLE_ACLS:
            return TABLE_ACLS[name]
    return None


def expand(roles: Iterable[str]) -> frozenset[str]:
    """A user's roles with every role they contain, transitively."""
    found: set[str] = set()
    pending = list(roles)
    while pending:
        role = pending.pop()
        if role not in found:
            found.add(role)
            pending.extend(CONTAINS.get(role, ()))
    return frozenset(found)


class HideRule(BaseModel):
    """Rows of `table` (and the tables extending it) that `user` may not read.

    `sys_ids` and/or `query` (an encoded query) select the rows; a rule with neither hides every row of the table.
    `user` None applies the rule to every user; users with the admin role are never restricted."""

    table: str
    user: str | None = None
    sys_ids: list[str] = Field(default_factory=list)
    query: str = ""

    @field_validator("table")
    @classmethod
    def _known_table(cls, value: str) -> str:
        if get_table(value) is None:
            raise ValueError(f"unknown table {value!r}")
        return value


class AclConfig(BaseModel):
    rules: list[HideRule] = Field(default_factory=list)


class RoleList(BaseModel):
    roles: list[str]


@dataclass(frozen=True)
class _CompiledRule:
    rule: HideRule
    sys_ids: frozenset[str]
    query: Query | None

    def hides(self, record_class: str, record: Record, lookup: Lookup) -> bool:
        if self.rule.table not in ancestors(record_class):
            return False
        if not self.sys_ids and self.query is None:
            return True
        if record.get("sys_id", "") in self.sys_ids:
            return True
        return self.query is not None and self.query.matches(record, lookup)


def _compile(rule: HideRule) -> _CompiledRule:
    schema = get_table(rule.table)
    assert schema is not None  # validated on the way in
    query = parse(schema, rule.query) if rule.query.strip() else None
    return _CompiledRule(rule, frozenset(rule.sys_ids), query)


class AccessControl:
    """Thread-safe: the event loop and the test thread both read it."""

    def __init__(self, roles: Mapping[str, Sequence[str]] | None = None) -> None:
        self._defaults = {user: list(granted) for user, granted in (roles or DEFAULT_ROLES).items()}
        self._lock = threading.Lock()
        self._roles: dict[str, list[str]] = {}
        self._config = AclConfig()
        self._rules: list[_CompiledRule] = []
        self.reset()

    def reset(self) -> None:
        """Roles as configured at start, no hidden rows."""
        with self._lock:
            self._roles = {user: list(granted) for user, granted in self._defaults.items()}
            self._config = AclConfig()
            self._rules = []

    # --- roles -------------------------------------------------------------------------------------------------

    def roles(self) -> dict[str, list[str]]:
        with self._lock:
            return {user: list(granted) for user, granted in self._roles.items()}

    def roles_of(self, user: str) -> frozenset[str]:
        with self._lock:
            return expand(self._roles.get(user, ()))

    def set_roles(self, user: str, roles: Sequence[str]) -> list[str]:
        with self._lock:
            self._roles[user] = list(dict.fromkeys(roles))
            return list(self._roles[user])

    def grant(self, user: str, role: str) -> list[str]:
        with self._lock:
            granted = self._roles.setdefault(user, [])
            if role not in granted:
                granted.append(role)
            return list(granted)

    def revoke(self, user: str, role: str) -> list[str]:
        with self._lock:
            granted = self._roles.setdefault(user, [])
            if role in granted:
                granted.remove(role)
            return list(granted)

    def allows(self, user: str, table: str, operation: Operation) -> bool:
        """The table ACL for one operation: admin, or any one of the roles the ACL names."""
        if table in ROLE_TABLES:
            return operation == "read"  # projected from the control panel: read-only, even for admin
        roles = self.roles_of(user)
        if ADMIN in roles:
            return True
        acl = acl_for(table)
        if acl is None:
            return True
        needed = acl.read if operation == "read" else acl.write
        return bool(roles & needed)

    # --- rows --------------------------------------------------------------------------------------------------

    @property
    def config(self) -> AclConfig:
        with self._lock:
            return self._config.model_copy(deep=True)

    def configure(self, config: AclConfig) -> AclConfig:
        compiled = [_compile(rule) for rule in config.rules]
        with self._lock:
            self._config = config.model_copy(deep=True)
            self._rules = compiled
        return self.config

    def visible(
        self,
        user: str,
        table: str,
        records: Sequence[Record],
        class_of: Callable[[str], str | None],
        lookup: Lookup,
    ) -> list[Record]:
        """The records of a page `user` may read, in page order (the row-level read ACLs)."""
        if ADMIN in self.roles_of(user):
            return list(records)
        if not self.allows(user, table, "read"):
            return []
        with self._lock:
            rules = [rule for rule in self._rules if rule.rule.user in (None, user)]
        if not rules:
            return list(records)
        return [
            record
            for record in records
            if not any(rule.hides(class_of(record.get("sys_id", "")) or table, record, lookup) for rule in rules)
        ]

    def can_read(
        self, user: str, table: str, record: Record, class_of: Callable[[str], str | None], lookup: Lookup
    ) -> bool:
        return bool(self.visible(user, table, [record], class_of, lookup))

    # --- the read-only projection as sys_user_role / sys_user_has_role ----------------------------------------

    def role_records(self, user_ids: Mapping[str, str]) -> dict[str, dict[str, Record]]:
        """table -> sys_id -> record for every role and grant; `user_ids` maps user_name to sys_user sys_id."""
        roles = self.roles()
        names = set(ROLE_DESCRIPTIONS) | set(CONTAINS) | {r for granted in roles.values() for r in expand(granted)}
        role_rows = {
            seed_sys_id("sys_user_role", name): {"name": name, "description": ROLE_DESCRIPTIONS.get(name, "")}
            for name in sorted(names)
        }
        grants: dict[str, Record] = {}
        for user, granted in sorted(roles.items()):
            user_id = user_ids.get(user)
            if not user_id:
                continue
            direct = set(granted)
            for role in sorted(expand(granted)):
                grants[seed_sys_id("sys_user_has_role", f"{user}|{role}")] = {
                    "user": user_id,
                    "role": seed_sys_id("sys_user_role", role),
                    "state": "active",
                    "inherited": "false" if role in direct else "true",
                }
        return {"sys_user_role": role_rows, "sys_user_has_role": grants}


def sync_role_tables(access: AccessControl, instance: Instance) -> None:
    """Bring sys_user_role / sys_user_has_role in line with the access control (before they are read)."""
    user_ids = {r.get("user_name", ""): r["sys_id"] for r in instance.store.rows("sys_user")}
    wanted = access.role_records(user_ids)
    with instance.store.lock:
        for table, rows in wanted.items():
            stored = {r["sys_id"]: r for r in instance.store.rows(table)}
            for sys_id in stored.keys() - rows.keys():
                instance.delete(table, sys_id)
            for sys_id, values in rows.items():
                current = stored.get(sys_id)
                if current is None:
                    instance.create(table, values, "system", rules=False, sys_id=sys_id)
                elif any(current.get(k) != v for k, v in values.items()):
                    instance.store.update(sys_id, {**current, **values})
