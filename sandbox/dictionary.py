"""The data dictionary: `sys_db_object` (the tables) and `sys_dictionary` (the tables and their fields), readable
through the Table API the way an admin's tool asks an instance whether a table or a field exists.

From markdown/platform-administration/table-administration-and-data-management/ c_DataDictionaryTables.md,
c_SystemDictionary.md and r_DictionaryEntryForm.md:
- Tables [sys_db_object] has a record per table: `name`, `label`, `super_class` (the table it extends);
- Dictionary Entries [sys_dictionary] "defines every table and field": each row is either a table (Type
  Collection, no column name) or a column, on the table that defines it (`name` = table, `element` = column).
  A column defined on a parent applies to the tables extending it and is listed on the parent only: incident's
  `number` is a row of task (the docs show "dictionary entries for the Incident table and the Task table, which
  it extends"), a server's `name` a row of cmdb_ci;
- an admin creates a column by adding a dictionary entry; a column made in the global scope is named `u_...`.

The base system here is the sandbox's schema (sandbox/tables.py), projected into both tables before they are read,
with fixed sys_ids: a projected row that is deleted comes back, as base-system fields cannot be removed. `task`,
whose records the sandbox does not serve, is the parent of change_request, incident and change_task and carries
the task fields. Rows an admin inserts (custom columns) are stored like any record.

Known gap: the Table API still accepts a write to any `u_` field (sandbox/tables.py `is_known_field`), whether or
not its dictionary entry exists; only this dictionary says whether the admin created it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from sandbox.seed import seed_sys_id
from sandbox.tables import _TASK_FIELDS, SYS_FIELDS, Table, get_table, register, table_names

if TYPE_CHECKING:
    from sandbox.instance import Instance

Record = dict[str, str]

TABLES = "sys_db_object"
DICTIONARY = "sys_dictionary"
TASK = "task"
_TASK_TABLES = ("change_request", "incident", "change_task")
_DATE_FIELDS = {
    "sys_created_on",
    "sys_updated_on",
    "opened_at",
    "closed_at",
    "resolved_at",
    "start_date",
    "end_date",
    "planned_start_date",
    "planned_end_date",
    "conflict_last_run",
    "last_checked",
    "due_date",
    "start_date_time",
    "end_date_time",
    "repeat_until",
}

register(
    Table(
        name=TABLES,
        fields=("name", "label", "super_class", "sys_class_name"),
        references={"super_class": TABLES},
    )
)
register(
    Table(
        name=DICTIONARY,
        fields=(
            "name",
            "element",
            "column_label",
            "internal_type",
            "reference",
            "max_length",
            "active",
            "mandatory",
            "read_only",
        ),
        display_field="column_label",
    )
)


def _label(name: str) -> str:
    return name.replace("_", " ").strip().title()


def _parent(name: str) -> str | None:
    schema = get_table(name)
    if schema is None:
        return None
    if schema.parent:
        return schema.parent
    return TASK if name in _TASK_TABLES else None


def _own_fields(name: str) -> list[str]:
    """The columns a table defines itself (not those it inherits)."""
    if name == TASK:
        return [*SYS_FIELDS, "sys_class_name", *_TASK_FIELDS]
    schema = get_table(name)
    assert schema is not None
    parent = _parent(name)
    inherited = set(_own_fields(parent)) | set(_inherited(parent)) if parent else set()
    own = [] if parent else list(SYS_FIELDS)
    return own + [f for f in dict.fromkeys(schema.fields) if f not in inherited and f not in own]


def _inherited(name: str | None) -> list[str]:
    fields: list[str] = []
    while name is not None:
        name = _parent(name)
        if name is not None:
            fields += _own_fields(name)
    return fields


def _type(schema: Table | None, field: str) -> tuple[str, str]:
    """(internal_type, reference table) of a column."""
    if schema is not None and field in schema.references:
        return "reference", schema.references[field]
    if schema is not None and field in schema.journals:
        return "journal_input", ""
    if field in _DATE_FIELDS:
        return "glide_date_time", ""
    if field == "sys_id":
        return "GUID", ""
    if field == "sys_mod_count" or (schema is not None and field in schema.numeric):
        return "integer", ""
    return "string", ""


def _tables() -> list[str]:
    return [TASK, *table_names()]


def projection() -> dict[str, dict[str, Record]]:
    """table -> sys_id -> record: the base system's tables and columns."""
    return _projection(tuple(_tables()))


@lru_cache(maxsize=2)
def _projection(tables: tuple[str, ...]) -> dict[str, dict[str, Record]]:
    objects: dict[str, Record] = {}
    entries: dict[str, Record] = {}
    for name in tables:
        parent = _parent(name)
        objects[seed_sys_id(TABLES, name)] = {
            "name": name,
            "label": _label(name),
            "super_class": seed_sys_id(TABLES, parent) if parent else "",
            "sys_class_name": TABLES,
        }
        entries[seed_sys_id(DICTIONARY, name)] = {
            "name": name,
            "element": "",
            "column_label": _label(name),
            "internal_type": "collection",
            "reference": "",
            "max_length": "40",
            "active": "true",
            "mandatory": "false",
            "read_only": "false",
        }
        schema = get_table(name) if name != TASK else get_table("change_request")
        for field in _own_fields(name):
            kind, reference = _type(schema, field)
            entries[seed_sys_id(DICTIONARY, f"{name}.{field}")] = {
                "name": name,
                "element": field,
                "column_label": _label(field),
                "internal_type": kind,
                "reference": reference,
                "max_length": "4000" if kind == "journal_input" else "32" if kind == "GUID" else "255",
                "active": "true",
                "mandatory": "false",
                "read_only": "true" if field in SYS_FIELDS else "false",
            }
    return {TABLES: objects, DICTIONARY: entries}


def sync(instance: Instance, table: str) -> None:
    """Before sys_db_object or sys_dictionary is read: every base-system row is there (missing ones are put back)."""
    if table not in (TABLES, DICTIONARY):
        return
    with instance.store.lock:
        for name, rows in projection().items():
            for sys_id, values in rows.items():
                if instance.store.get(name, sys_id) is None:
                    instance.create(name, values, "system", rules=False, sys_id=sys_id)
