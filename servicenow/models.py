"""Pydantic models of the records this project touches.

The Table API returns every value as a string, and reference fields either as `{"link","value"}` or as a plain
sys_id (`sysparm_exclude_reference_link=true`). `Ref` accepts both and keeps the sys_id, so the models read the
same whatever the caller asked for. Unknown fields are kept (`extra="allow"`): instances carry custom `u_` fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _ref_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return str(value.get("value", ""))
    return str(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):  # display_value=all gives {"display_value","value"}
        return str(value.get("value", ""))
    return str(value)


Ref = Annotated[str, BeforeValidator(_ref_value)]
Text = Annotated[str, BeforeValidator(_text)]


class Record(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    sys_id: Text = ""
    sys_created_on: Text = ""
    sys_updated_on: Text = ""


class Task(Record):
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


class ChangeRequest(Task):
    type: Text = ""
    approval: Text = ""
    category: Text = ""
    std_change_producer_version: Ref = ""
    start_date: Text = ""
    end_date: Text = ""


class Incident(Task):
    impact: Text = ""
    urgency: Text = ""
    priority: Text = ""


class ConfigurationItem(Record):
    name: Text = ""
    sys_class_name: Text = ""
    install_status: Text = ""
    operational_status: Text = ""
    busines_criticality: Text = ""  # sic: the CMDB's own spelling
    support_group: Ref = ""
    managed_by_group: Ref = ""
    ip_address: Text = ""
    os: Text = ""
    fqdn: Text = ""
    location: Ref = ""


class Application(ConfigurationItem):
    """cmdb_ci_appl"""


class Server(ConfigurationItem):
    """cmdb_ci_server and cmdb_ci_linux_server"""

    os_version: Text = ""
    serial_number: Text = ""


class Relationship(Record):
    """cmdb_rel_ci: e.g. parent=application, child=server, type 'Runs on::Runs'."""

    parent: Ref = ""
    child: Ref = ""
    type: Ref = ""


class UserGroup(Record):
    """sys_user_group"""

    name: Text = ""
    email: Text = ""
    manager: Ref = ""


class JournalEntry(Record):
    """sys_journal_field: one work note or comment."""

    element: Text = ""
    element_id: Text = ""
    name: Text = ""
    value: Text = ""
    sys_created_by: Text = ""


class StandardChangeTemplate(Record):
    """std_change_producer_version"""

    name: Text = ""
