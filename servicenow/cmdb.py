"""The CMDB: configuration items, their install status and criticality, and how changeloop reads a CI."""

from __future__ import annotations

from enum import StrEnum

from servicenow.records import Record, Ref, Text


class InstallStatus(StrEnum):
    INSTALLED = "1"
    ON_ORDER = "2"
    IN_MAINTENANCE = "3"
    PENDING_INSTALL = "4"
    PENDING_REPAIR = "5"
    IN_STOCK = "6"
    RETIRED = "7"
    ABSENT = "100"


# "1 - most critical" ... "4 - not critical" (the field is spelled busines_criticality in the CMDB).
CRITICALITY_LEVELS = ("1 - most critical", "2 - somewhat critical", "3 - less critical", "4 - not critical")


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
