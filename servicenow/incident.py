"""incident: its states and the record as changeloop reads it."""

from __future__ import annotations

from enum import StrEnum

from servicenow.records import Task, Text


class IncidentState(StrEnum):
    NEW = "1"
    IN_PROGRESS = "2"
    ON_HOLD = "3"
    RESOLVED = "6"
    CLOSED = "7"
    CANCELED = "8"


class Incident(Task):
    impact: Text = ""
    urgency: Text = ""
    priority: Text = ""
