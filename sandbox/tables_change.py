"""Tables of the change process: approvals, groups, schedules, conflicts, templates, Business Rules, properties.

Registered into sandbox/tables.py's dictionary when that module loads. Field names are the instance's; where
the sandbox keeps a subset, the docstring of the module that uses the table says which.
"""

from __future__ import annotations

from sandbox.tables import Table, register

_APPROVAL_STATES = {
    "not requested": "Not Yet Requested",
    "requested": "Requested",
    "approved": "Approved",
    "rejected": "Rejected",
    "cancelled": "Cancelled",
    "not_required": "No Longer Required",
}

# Group membership: who is in the CAB, who is in a change's assignment group.
register(
    Table(
        name="sys_user_grmember",
        fields=("user", "group"),
        references={"user": "sys_user", "group": "sys_user_group"},
        display_field="sys_id",
    )
)

# One user's approval of one record (markdown/it-service-management/change-management/create-approval-definitions.md).
register(
    Table(
        name="sysapproval_approver",
        fields=("sysapproval", "source_table", "document_id", "approver", "group", "state", "comments", "due_date"),
        references={"sysapproval": "change_request", "approver": "sys_user", "group": "sysapproval_group"},
        journals=("comments",),
        choices={"state": _APPROVAL_STATES},
        display_field="sys_id",
    )
)

# A group's approval of one record: the user approvals of its members point at it through `group`.
register(
    Table(
        name="sysapproval_group",
        fields=("parent", "assignment_group", "approval"),
        references={"parent": "change_request", "assignment_group": "sys_user_group"},
        choices={"approval": _APPROVAL_STATES},
        display_field="sys_id",
    )
)

# Schedules (markdown/platform-administration/time-configuration/r_ScheduleFields.md, r_ScheduleEntryFields.md,
# and t_CreateBlkoutMaintSched.md: cmn_schedule_blackout extends cmn_schedule_condition extends cmn_schedule).
_SCHEDULE_FIELDS = ("name", "type", "time_zone", "description", "sys_class_name")
_SCHEDULE_TYPES = {"blackout": "Blackout", "maintenance": "Maintenance", "excluded": "Excluded"}
register(Table(name="cmn_schedule", fields=_SCHEDULE_FIELDS, choices={"type": _SCHEDULE_TYPES}))
for _name, _parent in (
    ("cmn_schedule_condition", "cmn_schedule"),
    ("cmn_schedule_blackout", "cmn_schedule_condition"),
    ("cmn_schedule_maintenance", "cmn_schedule_condition"),
):
    # `condition`: an encoded query over cmdb_ci naming the CIs the schedule applies to (empty: every CI).
    register(
        Table(
            name=_name,
            parent=_parent,
            fields=(*_SCHEDULE_FIELDS, "condition", "applies_to"),
            choices={"type": _SCHEDULE_TYPES},
        )
    )
register(
    Table(
        name="cmn_schedule_span",
        fields=(
            "schedule",
            "name",
            "type",
            "show_as",
            "start_date_time",
            "end_date_time",
            "all_day",
            "repeat_type",
            "repeat_count",
            "days_of_week",
            "monthly_type",
            "yearly_type",
            "float_week",
            "float_day",
            "repeat_until",
        ),
        references={"schedule": "cmn_schedule"},
        choices={
            "repeat_type": {
                "": "Does not repeat",
                "daily": "Daily",
                "weekdays": "Every Weekday (Mon-Fri)",
                "weekends": "Every Weekend (Sat, Sun)",
                "weekly": "Weekly",
            }
        },
    )
)

# What conflict detection found (markdown/it-service-management/change-management/t_RunManualConflictDetection.md).
register(
    Table(
        name="conflict",
        fields=(
            "change",
            "configuration_item",
            "related_configuration_item",
            "conflicting_change",
            "schedule",
            "type",
            "last_checked",
        ),
        references={
            "change": "change_request",
            "configuration_item": "cmdb_ci",
            "related_configuration_item": "cmdb_ci",
            "conflicting_change": "change_request",
            "schedule": "cmn_schedule",
        },
        choices={
            "type": {
                "blackout": "Blackout",
                "not_in_maintenance_window": "Not In Maintenance Window",
                "ci_already_scheduled": "CI Already Scheduled",
            }
        },
        display_field="sys_id",
    )
)

# Standard change templates: the catalog item (std_change_record_producer, whose sys_id the Change Management API
# takes), the record template with the field values (sys_template.template, an encoded query string), and the
# version a change records in std_change_producer_version (defined in sandbox/tables.py).
register(
    Table(
        name="std_change_record_producer",
        fields=("name", "short_description", "description", "template", "active"),
        references={"template": "sys_template"},
    )
)
register(Table(name="sys_template", fields=("name", "table", "template", "short_description", "active")))

# What the update set installs: Business Rules, system properties, the outbound REST message.
register(
    Table(
        name="sys_script",
        fields=(
            "name",
            "collection",
            "when",
            "order",
            "action_insert",
            "action_update",
            "action_delete",
            "action_query",
            "active",
            "advanced",
            "condition",
            "script",
            "description",
        ),
    )
)
register(Table(name="sys_properties", fields=("name", "value", "type", "description", "read_roles")))
register(Table(name="sys_rest_message", fields=("name", "rest_endpoint", "description", "authentication_type")))
register(
    Table(
        name="sys_rest_message_fn",
        fields=("rest_message", "function_name", "http_method", "rest_endpoint"),
        references={"rest_message": "sys_rest_message"},
        display_field="function_name",
    )
)
