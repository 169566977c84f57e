"""What the emulated instance knows about each table: fields, references, journals, choices, numbering.

Schema-light on purpose: records are JSON blobs, this module only says which names a table accepts and how to
render them. A real instance's dictionary is far richer; we keep exactly what DESIGN.md §4/§5 and the seed touch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.change_model import CRITICALITY_LEVELS

SYS_FIELDS = ("sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count")

# Task fields every task table (change_request, incident) inherits on a real instance.
_TASK_FIELDS = (
    "number",
    "short_description",
    "description",
    "state",
    "priority",
    "impact",
    "urgency",
    "cmdb_ci",
    "assignment_group",
    "assigned_to",
    "close_notes",
    "work_notes",
    "comments",
    "correlation_id",
    "correlation_display",
    "opened_at",
    "opened_by",  # the caller on insert: the dictionary default is the current user (sandbox/instance.py)
    "closed_at",
    "active",
)

_IMPACT = {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"}
_PRIORITY = {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low", "5": "5 - Planning"}


@dataclass(frozen=True)
class Table:
    name: str
    fields: tuple[str, ...]
    parent: str | None = None
    references: dict[str, str] = field(default_factory=dict)
    journals: tuple[str, ...] = ()
    choices: dict[str, dict[str, str]] = field(default_factory=dict)
    # Integer choice fields compare and sort as numbers (state "-5" < "3"), everything else as strings.
    numeric: tuple[str, ...] = ()
    number_prefix: str | None = None
    number_start: int = 1
    display_field: str = "name"


_TABLES: dict[str, Table] = {}


def _add(table: Table) -> None:
    _TABLES[table.name] = table


_add(
    Table(
        name="change_request",
        fields=(
            *_TASK_FIELDS,
            "type",
            "approval",
            "category",
            "std_change_producer_version",
            "start_date",
            "end_date",
            "close_code",
            "risk",
            "requested_by",
            # Hold, conflict detection and plan fields (change-management-api.md, change_request parameters).
            "on_hold",
            "on_hold_reason",
            "conflict_status",
            "conflict_last_run",
            "outside_maintenance_schedule",
            "implementation_plan",
            "backout_plan",
            "test_plan",
        ),
        references={
            "cmdb_ci": "cmdb_ci",
            "assignment_group": "sys_user_group",
            "assigned_to": "sys_user",
            "requested_by": "sys_user",
            "std_change_producer_version": "std_change_producer_version",
            "opened_by": "sys_user",
        },
        journals=("work_notes", "comments"),
        choices={
            "state": {
                "-5": "New",
                "-4": "Assess",
                "-3": "Authorize",
                "-2": "Scheduled",
                "-1": "Implement",
                "0": "Review",
                "3": "Closed",
                "4": "Canceled",
            },
            "type": {"normal": "Normal", "standard": "Standard", "emergency": "Emergency"},
            "approval": {
                "not requested": "Not Yet Requested",
                "requested": "Requested",
                "approved": "Approved",
                "rejected": "Rejected",
            },
            "close_code": {
                "successful": "Successful",
                "successful_issues": "Successful with issues",
                "unsuccessful": "Unsuccessful",
            },
            "risk": {"1": "Very High", "2": "High", "3": "Moderate", "4": "Low"},
            "conflict_status": {"Not Run": "Not Run", "Conflict": "Conflict", "No Conflict": "No Conflict"},
            "impact": _IMPACT,
            "urgency": _IMPACT,
            "priority": _PRIORITY,
        },
        numeric=("state", "impact", "urgency", "priority", "risk"),
        number_prefix="CHG",
        number_start=30001,
        display_field="number",
    )
)

_add(
    Table(
        name="incident",
        fields=(*_TASK_FIELDS, "caller_id", "close_code", "resolved_at", "resolved_by", "category", "subcategory"),
        references={
            "cmdb_ci": "cmdb_ci",
            "assignment_group": "sys_user_group",
            "assigned_to": "sys_user",
            "caller_id": "sys_user",
            "opened_by": "sys_user",
            "resolved_by": "sys_user",
        },
        journals=("work_notes", "comments"),
        choices={
            "state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"},
            "impact": _IMPACT,
            "urgency": _IMPACT,
            "priority": _PRIORITY,
        },
        numeric=("state", "impact", "urgency", "priority"),
        number_prefix="INC",
        number_start=10001,
        display_field="number",
    )
)

_CI_CHOICES = {
    "install_status": {
        "1": "Installed",
        "2": "On Order",
        "3": "In Maintenance",
        "4": "Pending Install",
        "5": "Pending Repair",
        "6": "In Stock",
        "7": "Retired",
        "100": "Absent",
    },
    "operational_status": {
        "1": "Operational",
        "2": "Non-Operational",
        "3": "Repair in Progress",
        "4": "DR Standby",
        "5": "Ready",
        "6": "Retired",
    },
    "busines_criticality": {level: level for level in CRITICALITY_LEVELS},
}
_CI_REFERENCES = {
    "support_group": "sys_user_group",
    "managed_by_group": "sys_user_group",
    "owned_by": "sys_user",
    "location": "cmn_location",
    "maintenance_schedule": "cmn_schedule",
}
_CI_FIELDS = (
    "name",
    "sys_class_name",
    "install_status",
    "operational_status",
    "busines_criticality",
    "support_group",
    "managed_by_group",
    "owned_by",
    "ip_address",
    "fqdn",
    "serial_number",
    "object_id",
    "discovery_source",
    "location",
    "short_description",
    "correlation_id",
    "u_review_needed",
    "u_site",
    "maintenance_schedule",  # configuring-maintenance-schedules-best-practices.md: a cmn_schedule of type maintenance
)
_CI_NUMERIC = ("install_status", "operational_status")


def _ci_class(name: str, parent: str | None, extra: tuple[str, ...] = ()) -> Table:
    return Table(
        name=name,
        parent=parent,
        fields=(*_CI_FIELDS, *extra),
        references=_CI_REFERENCES,
        choices=_CI_CHOICES,
        numeric=_CI_NUMERIC,
    )


_add(_ci_class("cmdb_ci", None))
_add(_ci_class("cmdb_ci_appl", "cmdb_ci", ("version",)))
_add(_ci_class("cmdb_ci_server", "cmdb_ci", ("os", "os_version", "cpu_count", "ram")))
_add(_ci_class("cmdb_ci_linux_server", "cmdb_ci_server", ("os", "os_version", "cpu_count", "ram", "kernel_release")))

_add(
    Table(
        name="cmdb_rel_ci",
        fields=("parent", "child", "type"),
        references={"parent": "cmdb_ci", "child": "cmdb_ci", "type": "cmdb_rel_type"},
        display_field="sys_id",
    )
)
_add(Table(name="cmdb_rel_type", fields=("name", "parent_descriptor", "child_descriptor")))
_add(
    Table(
        name="sys_user",
        fields=("user_name", "name", "first_name", "last_name", "email", "active", "title", "location"),
        references={"location": "cmn_location"},
    )
)
_add(
    Table(
        name="sys_user_group",
        fields=("name", "description", "email", "manager", "active"),
        references={"manager": "sys_user"},
    )
)
_add(
    Table(
        name="sys_journal_field",
        fields=("element", "element_id", "name", "value"),
        display_field="value",
    )
)
_add(
    Table(
        name="std_change_producer_version",
        fields=("name", "version", "std_change_producer", "template_value", "short_description", "category"),
        references={"std_change_producer": "std_change_record_producer"},
    )
)
_add(Table(name="cmn_location", fields=("name", "city", "country", "street")))

# change_task: the work items of a change (markdown/it-service-management/change-management/create-a-change-task.md).
# States under the change state model: Pending, Open, In progress, Closed ("requires close code and close notes",
# a UI policy as on change_request), Canceled; values as in state-model-activate-tasks.md (-5, 1, 2, 3, 4).
_add(
    Table(
        name="change_task",
        fields=(
            *_TASK_FIELDS,
            "change_request",
            "change_task_type",
            "close_code",
            "on_hold",
            "on_hold_reason",
            "planned_start_date",
            "planned_end_date",
        ),
        references={
            "change_request": "change_request",
            "cmdb_ci": "cmdb_ci",
            "assignment_group": "sys_user_group",
            "assigned_to": "sys_user",
            "opened_by": "sys_user",
        },
        journals=("work_notes", "comments"),
        choices={
            "state": {"-5": "Pending", "1": "Open", "2": "In Progress", "3": "Closed", "4": "Canceled"},
            "change_task_type": {
                "planning": "Planning",
                "implementation": "Implementation",
                "testing": "Testing",
                "review": "Review",
            },
            "close_code": {
                "successful": "Successful",
                "successful_issues": "Successful with issues",
                "unsuccessful": "Unsuccessful",
            },
            "impact": _IMPACT,
            "urgency": _IMPACT,
            "priority": _PRIORITY,
        },
        numeric=("state", "impact", "urgency", "priority"),
        number_prefix="CTASK",
        number_start=10001,
        display_field="number",
    )
)

# Attachment metadata (markdown/api-reference/rest-apis/c_AttachmentAPI.md); the bytes live in the store's blob table.
_add(
    Table(
        name="sys_attachment",
        fields=(
            "file_name",
            "table_name",
            "table_sys_id",
            "content_type",
            "size_bytes",
            "size_compressed",
            "compressed",
            "hash",
            "average_image_color",
            "image_height",
            "image_width",
            "sys_tags",
        ),
        numeric=("size_bytes", "size_compressed"),
        display_field="file_name",
    )
)

# Roles and who has them, projected read-only from the sandbox's access control (sandbox/acl.py).
_add(Table(name="sys_user_role", fields=("name", "description"), display_field="name"))
_add(
    Table(
        name="sys_user_has_role",
        fields=("user", "role", "state", "inherited"),
        references={"user": "sys_user", "role": "sys_user_role"},
        display_field="sys_id",
    )
)


def register(table: Table) -> None:
    """For modules that add tables of their own (sandbox/tables_change.py)."""
    _add(table)


def get_table(name: str) -> Table | None:
    return _TABLES.get(name)


def table_names() -> list[str]:
    return list(_TABLES)


def ancestors(name: str) -> list[str]:
    """The table itself then each parent class up to the root (cmdb_ci_linux_server → … → cmdb_ci)."""
    chain: list[str] = []
    current: str | None = name
    while current is not None:
        chain.append(current)
        current = _TABLES[current].parent
    return chain


def root_of(name: str) -> str:
    return ancestors(name)[-1]


def descendants(name: str) -> set[str]:
    """A table and every class extending it: querying cmdb_ci_server must include linux servers."""
    return {t for t in _TABLES if name in ancestors(t)}


def is_known_field(table: Table, name: str) -> bool:
    # Custom `u_` fields are accepted everywhere: we pretend the admin created them.
    return name in SYS_FIELDS or name in table.fields or name.startswith("u_")


# The change process's tables (approvals, schedules, templates, Business Rules, properties) live in their own module.
from sandbox import tables_change  # noqa: E402, F401
