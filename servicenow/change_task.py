"""change_task: the work items of a change, their states and the record as changeloop reads it.

From markdown/it-service-management/change-management/create-a-change-task.md: a task belongs to its change
(`change_request`), has a type (planning, implementation, testing, review) and moves Pending / Open -> In progress ->
Closed ("requires close code and close notes") or Canceled. The close codes are the change's
(servicenow/change_request.py `CloseCode`): closed complete is `successful`, closed incomplete `unsuccessful`.
"""

from __future__ import annotations

from enum import StrEnum

from servicenow.records import Ref, Task, Text

TABLE = "change_task"


class ChangeTaskState(StrEnum):
    PENDING = "-5"
    OPEN = "1"
    IN_PROGRESS = "2"
    CLOSED = "3"
    CANCELED = "4"


# A task in one of these states is done: a retried close leaves it as it is.
DONE_STATES = frozenset({ChangeTaskState.CLOSED.value, ChangeTaskState.CANCELED.value})


class ChangeTaskType(StrEnum):
    PLANNING = "planning"
    IMPLEMENTATION = "implementation"
    TESTING = "testing"
    REVIEW = "review"


class ChangeTask(Task):
    change_request: Ref = ""
    change_task_type: Text = ""
    planned_start_date: Text = ""
    planned_end_date: Text = ""
    closed_at: Text = ""

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES
