"""The instance's record operations: what a Table API write does beyond storing JSON.

Inbound values are coerced to strings, unknown fields dropped, references given by display value resolved,
sys fields and numbers stamped, journal fields turned into `sys_journal_field` rows, business rules applied,
and after the write the instance's own after-rules run: the approval flow (sandbox/approvals.py) and the
outbound Business Rules that are installed (sandbox/outbound_rules.py).

`flow=True` marks a write made by the instance itself (the approval flow, installing records): it skips the
ACLs, may make the moves the change model reserves for the approval flow, and may set hidden marks (keys
starting with "_", never rendered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox import approvals, business_rules, outbound_rules, task_rules
from sandbox.outbound import WebhookEmitter
from sandbox.process_settings import ProcessSettings
from sandbox.query import parse
from sandbox.render import Resolver
from sandbox.store import Record, Store, now_string
from sandbox.tables import SYS_FIELDS, Table, get_table, is_known_field


@dataclass(frozen=True)
class WriteResult:
    record: Record
    changed: bool


def _as_string(value: Any) -> str:
    """The Table API accepts JSON numbers, booleans and `{"value": …}` objects and stores strings."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return _as_string(value.get("value", ""))
    return str(value)


class Instance:
    def __init__(
        self, store: Store, emitter: WebhookEmitter | None = None, settings: ProcessSettings | None = None
    ) -> None:
        self.store = store
        self.emitter = emitter or WebhookEmitter()
        self.settings = settings or ProcessSettings()
        # Approvers a test named for a change's stages: change sys_id -> {"assess"|"authorize": [user_name, ...]}.
        self.approver_overrides: dict[str, dict[str, list[str]]] = {}
        # (shim URL, webhook token, incident token) last configured: reinstalled after a reset of the records.
        self.rule_target: tuple[str, str, str] | None = None

    # --- reads -------------------------------------------------------------------------------------------------

    def lookup(self, table: str, sys_id: str) -> Record | None:
        return self.store.get(table, sys_id)

    def display_of(self, table: str, sys_id: str) -> str:
        schema, record = get_table(table), self.store.get(table, sys_id) if sys_id else None
        return record.get(schema.display_field, "") if record and schema else ""

    def journal_text(self, table: str, sys_id: str, element: str) -> str:
        """The activity history of one journal field, newest first, as display_value mode shows it."""
        label = {"work_notes": "Work notes", "comments": "Additional comments"}.get(element, element)
        entries = [
            r for r in self.store.rows("sys_journal_field") if r["element_id"] == sys_id and r["element"] == element
        ]
        return "".join(
            f"{e['sys_created_on']} - {e['sys_created_by']} ({label})\n{e['value']}\n\n" for e in reversed(entries)
        )

    def find(self, table: str, field: str, value: str) -> Record | None:
        """The first record whose `field` equals `value` (a natural-key look-up), or None."""
        with self.store.lock:
            return next((r for r in self.store.rows(table) if r.get(field) == value), None)

    def resolver(self, base_url: str) -> Resolver:
        return Resolver(base_url=base_url.rstrip("/"), lookup=self.lookup, journal=self.journal_text)

    def select(self, table: str, encoded_query: str) -> list[Record]:
        schema = get_table(table)
        assert schema is not None
        with self.store.lock:
            return parse(schema, encoded_query).apply(self.store.rows(table), self.lookup)

    # --- writes ------------------------------------------------------------------------------------------------

    def _accept(self, schema: Table, body: dict[str, Any], flow: bool = False) -> tuple[Record, Record]:
        """(field values, journal entries) from a request body; the instance ignores fields it doesn't have."""
        values: Record = {}
        journals: Record = {}
        for name, raw in body.items():
            if flow and name.startswith("_"):
                values[name] = _as_string(raw)
                continue
            if name in SYS_FIELDS or name == "sys_class_name" or not is_known_field(schema, name):
                continue
            value = _as_string(raw)
            if name in schema.journals:
                if value.strip():
                    journals[name] = value
            elif name in schema.references:
                values[name] = self._reference_id(schema.references[name], value)
            else:
                values[name] = value
        return values, journals

    def _reference_id(self, table: str, value: str) -> str:
        """A reference may be written as a sys_id or as the target's display value (the instance resolves it)."""
        if not value or self.store.get(table, value) is not None:
            return value
        schema = get_table(table)
        if schema is not None:
            for record in self.store.rows(table):
                if record.get(schema.display_field) == value:
                    return record["sys_id"]
        return value

    def _user_sys_id(self, user_name: str) -> str:
        return next((r["sys_id"] for r in self.store.rows("sys_user") if r.get("user_name") == user_name), "")

    def _journal(self, table: str, sys_id: str, entries: Record, user: str, now: str) -> None:
        for element, value in entries.items():
            row = {"element": element, "element_id": sys_id, "name": table, "value": value}
            self.store.insert("sys_journal_field", {**row, **_stamps(user, now)})

    def create(
        self,
        table: str,
        body: dict[str, Any],
        user: str,
        *,
        rules: bool = True,
        sys_id: str | None = None,
        flow: bool = False,
    ) -> Record:
        """Insert one record; `rules=False` and a fixed `sys_id` are for the seed (no defaults, no after-rules)."""
        schema = get_table(table)
        assert schema is not None
        with self.store.lock:
            values, journals = self._accept(schema, body, flow)
            if rules:
                if not flow:
                    approvals.check_acl(self, table, None, user)
                approvals.defaults(table, values)
                values = business_rules.before_insert(table, values)
            now = now_string()
            record: Record = {name: "" for name in schema.fields if name not in schema.journals}
            record.update(values)
            record.update(_stamps(user, now))
            if sys_id:
                record["sys_id"] = sys_id
            if schema.number_prefix and not record.get("number"):
                record["number"] = self.store.next_number(table, schema.number_prefix, schema.number_start)
            if "opened_at" in schema.fields and not record["opened_at"]:
                record["opened_at"] = now
            if "opened_by" in schema.fields and not record["opened_by"]:
                # The dictionary default of task.opened_by is the current user (javascript:gs.getUserID()).
                record["opened_by"] = self._user_sys_id(user)
            if "sys_class_name" in schema.fields:
                record["sys_class_name"] = table
            if rules:
                business_rules.closing_stamps(table, {}, record, now, self._user_sys_id(user))
            self.store.insert(table, record)
            self._journal(table, record["sys_id"], journals, user, now)
        if rules:
            self._after_write(table, None, record, journals)
        return record

    def update(
        self, table: str, sys_id: str, body: dict[str, Any], user: str, *, flow: bool = False
    ) -> WriteResult | None:
        schema = get_table(table)
        assert schema is not None
        with self.store.lock:
            old = self.store.get(table, sys_id)
            if old is None:
                return None
            values, journals = self._accept(schema, body, flow)
            if not flow:
                approvals.check_acl(self, table, old, user)
                values = approvals.writable(table, values, user)
            requested = business_rules.before_update(table, old, values, self.settings, by_flow=flow)
            changes = {k: v for k, v in requested.items() if old.get(k, "") != v}
            if not changes and not journals:
                return WriteResult(old, changed=False)  # the instance skips an update that changes nothing
            now = now_string()
            business_rules.closing_stamps(table, old, changes, now, self._user_sys_id(user))
            record = {**old, **changes}
            record.update(
                sys_updated_on=now, sys_updated_by=user, sys_mod_count=str(int(old.get("sys_mod_count", "0")) + 1)
            )
            self.store.update(sys_id, record)
            self._journal(self.store.class_of(sys_id) or table, sys_id, journals, user, now)
        self._after_write(table, old, record, journals)
        return WriteResult(record, changed=True)

    def delete(self, table: str, sys_id: str) -> bool:
        with self.store.lock:
            if self.store.get(table, sys_id) is None:
                return False
            self.store.delete(sys_id)
            return True

    def _after_write(self, table: str, previous: Record | None, current: Record, journals: Record) -> None:
        """After-rules in order: the outbound Business Rules (order 100), the approval flow, the change's tasks."""
        outbound_rules.after_write(self, table, previous, current, journals)
        approvals.after_write(self, table, previous, current)
        task_rules.after_write(self, table, previous, current)


def _stamps(user: str, now: str) -> Record:
    return {
        "sys_created_on": now,
        "sys_created_by": user,
        "sys_updated_on": now,
        "sys_updated_by": user,
        "sys_mod_count": "0",
    }
