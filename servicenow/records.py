"""How the Table API writes a record, read back into Python: the one place that parses values and display values.

Every value is a string. A reference field is `{"link","value"}` unless `sysparm_exclude_reference_link=true`;
with `sysparm_display_value=all` every field is `{"display_value","value"}`. `value()` and `display()` read a
field whatever the caller asked for, and `Ref` / `Text` do the same inside the record models of each table.
Unknown fields are kept (`extra="allow"`): instances carry custom `u_` fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def value(record: dict[str, Any], field: str) -> str:
    """The stored value of `field` (a reference's sys_id), whatever display mode the record was read with."""
    return _value(record.get(field))


def display(record: dict[str, Any], field: str) -> str:
    """The display value of `field` when the record was read with display values, else its stored value."""
    raw = record.get(field)
    if isinstance(raw, dict):
        return str(raw.get("display_value", ""))
    return "" if raw is None else str(raw)


def _value(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, dict):  # {"link","value"} or {"display_value","value"}
        return str(raw.get("value", ""))
    return str(raw)


def _display(raw: Any) -> str:
    if isinstance(raw, dict):
        return str(raw.get("display_value", ""))
    return "" if raw is None else str(raw)


Text = Annotated[str, BeforeValidator(_value)]  # a field's stored value (a reference's sys_id)
Ref = Text
Display = Annotated[str, BeforeValidator(_display)]  # a field's display value (read with display_value=all)


class Record(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    sys_id: Text = ""
    sys_created_on: Text = ""
    sys_updated_on: Text = ""


class Task(Record):
    """Fields every task table (change_request, incident, change_task) inherits."""

    number: Text = ""
    short_description: Text = ""
    description: Text = ""
    state: Text = ""
    cmdb_ci: Ref = ""
    assignment_group: Ref = ""
    close_code: Text = ""
    close_notes: Text = ""
    correlation_id: Text = ""
    correlation_display: Text = ""
