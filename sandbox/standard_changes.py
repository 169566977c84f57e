"""A standard change from a template, as `POST /api/sn_chg_rest/change/standard/{template_id}` makes it.

markdown/api-reference/rest-apis/change-management-api.md: the id is a Standard Change Template
[std_change_record_producer]; the new change gets the template's field values (its `sys_template`, an encoded
string of field=value pairs) and the name-value pairs passed in, except Description, Backout plan, Test plan,
Implementation plan, read-only fields and fields the change does not have, which are answered in
`__meta.ignoredFields`. The change records the template's newest `std_change_producer_version`.

The change is created in the standard model's first state, New (t_CreateAChange.md: "Request Approval" then moves
a pre-approved standard change to Scheduled), unless the caller passes `state` -2 (Scheduled), which the model
allows a standard change to start in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.tables import SYS_FIELDS, get_table, is_known_field

if TYPE_CHECKING:
    from sandbox.instance import Instance

Record = dict[str, str]

NOT_MODIFIABLE = ("description", "backout_plan", "test_plan", "implementation_plan")
READ_ONLY = (
    *SYS_FIELDS,
    "number",
    "type",
    "approval",
    "std_change_producer_version",
    "sys_class_name",
    "active",
    "opened_at",
    "closed_at",
    "conflict_status",
    "conflict_last_run",
    "outside_maintenance_schedule",
)


class TemplateNotFound(Exception):
    pass


def template_values(instance: Instance, producer: Record) -> Record:
    """The field values of a template: its sys_template's `field=value^field=value` string."""
    template = instance.lookup("sys_template", producer.get("template", "")) or {}
    values: Record = {}
    for part in template.get("template", "").split("^"):
        name, sep, value = part.partition("=")
        if sep and name and name != "EQ":
            values[name] = value
    return values


def current_version(instance: Instance, producer_id: str) -> Record | None:
    versions = [
        r for r in instance.store.rows("std_change_producer_version") if r.get("std_change_producer") == producer_id
    ]

    def number(record: Record) -> int:
        try:
            return int(record.get("version") or 0)
        except ValueError:
            return 0

    return max(versions, key=number, default=None)


def create_standard(instance: Instance, producer_id: str, given: dict[str, Any], user: str) -> tuple[Record, list[str]]:
    """(the new change, the names of the given fields that were ignored)."""
    producer = instance.lookup("std_change_record_producer", producer_id)
    if producer is None or producer.get("active") == "false":
        raise TemplateNotFound(producer_id)
    schema = get_table("change_request")
    assert schema is not None
    values: dict[str, Any] = dict(template_values(instance, producer))
    ignored = []
    for name, value in given.items():
        if name in NOT_MODIFIABLE or name in READ_ONLY or not is_known_field(schema, name):
            ignored.append(name)
        else:
            values[name] = value
    version = current_version(instance, producer_id)
    values.update(type="standard", std_change_producer_version=version["sys_id"] if version else "")
    return instance.create("change_request", values, user), ignored
