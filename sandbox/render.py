"""Turning a stored record into what the Table API answers, for each `sysparm_display_value` mode.

The shapes are the instance's, field by field:
- value mode (`false`): strings; a reference is `{"link","value"}`, or the bare sys_id with
  `sysparm_exclude_reference_link=true`; an empty reference is ""; a journal field reads "".
- `true`: choice labels ("Implement"), reference display values (`{"display_value","link"}` or a bare string
  without links), the journal as its history text, newest first.
- `all`: every field is `{"display_value","value"}`, references add "link".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sandbox.tables import SYS_FIELDS, Table, get_table, is_known_field

Record = dict[str, str]
DisplayMode = Literal["false", "true", "all"]


@dataclass(frozen=True)
class RenderOptions:
    display_value: DisplayMode = "false"
    exclude_reference_link: bool = False
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Resolver:
    """What rendering needs from the store: referenced records and journal history."""

    base_url: str
    lookup: Callable[[str, str], Record | None]
    journal: Callable[[str, str, str], str]  # (table, sys_id, element) -> history text

    def link(self, table: str, sys_id: str) -> str:
        return f"{self.base_url}/api/now/table/{table}/{sys_id}"

    def display_of(self, table: str, sys_id: str) -> str:
        target = self.lookup(table, sys_id)
        schema = get_table(table)
        if target is None or schema is None:
            return ""
        return target.get(schema.display_field, "")


def default_fields(table: Table, record: Record) -> list[str]:
    custom = [name for name in record if name.startswith("u_") and name not in table.fields]
    return [*SYS_FIELDS, *table.fields, *custom]


def render_record(table: Table, record: Record, options: RenderOptions, resolver: Resolver) -> dict[str, Any]:
    names = list(options.fields) if options.fields else default_fields(table, record)
    out: dict[str, Any] = {}
    for name in names:
        value = _render_path(table, record, name, options, resolver)
        if value is not None:
            out[name] = value
    return out


def _render_path(table: Table, record: Record, path: str, options: RenderOptions, resolver: Resolver) -> Any | None:
    """None for a field the table doesn't have: the instance leaves unknown `sysparm_fields` out."""
    if "." not in path:
        return render_value(table, record, path, options, resolver) if is_known_field(table, path) else None
    via, rest = path.split(".", 1)
    ref_table = get_table(table.references.get(via, ""))
    if ref_table is None or "." in rest or not is_known_field(ref_table, rest):
        return None
    target_id = record.get(via, "")
    target = resolver.lookup(ref_table.name, target_id) if target_id else None
    return render_value(ref_table, target or {}, rest, options, resolver)


def render_value(table: Table, record: Record, name: str, options: RenderOptions, resolver: Resolver) -> Any:
    raw = record.get(name, "")
    mode = options.display_value
    if name in table.journals:
        history = resolver.journal(table.name, record.get("sys_id", ""), name) if record else ""
        return {"display_value": history, "value": ""} if mode == "all" else (history if mode == "true" else "")
    if name in table.references:
        return _render_reference(table.references[name], raw, options, resolver)
    label = table.choices.get(name, {}).get(raw, raw)
    if mode == "true":
        return label
    if mode == "all":
        return {"display_value": label, "value": raw}
    return raw


def _render_reference(ref_table: str, sys_id: str, options: RenderOptions, resolver: Resolver) -> Any:
    mode = options.display_value
    if not sys_id:
        return {"display_value": "", "value": ""} if mode == "all" else ""
    with_link = not options.exclude_reference_link
    link = resolver.link(ref_table, sys_id)
    if mode == "false":
        return {"link": link, "value": sys_id} if with_link else sys_id
    display = resolver.display_of(ref_table, sys_id)
    if mode == "true":
        return {"display_value": display, "link": link} if with_link else display
    out = {"display_value": display, "value": sys_id}
    if with_link:
        out["link"] = link
    return out
