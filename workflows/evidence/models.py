"""Evidence on the ticket: the payloads of the attachment and change-task activities (activities/evidence/).

Both writes are POSTs, which ServiceNow does not make idempotent, so each carries its natural key: an attachment is
one file name on one record; a change task is one `correlation_id` on one change (`task_key`). The activity looks
the key up before it writes, so a retry after a lost answer, a worker killed mid-write or a repeated close finds the
first write instead of making a second.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import BaseModel

# ServiceNow's correlation_id is a String(100): a longer key would be cut by the instance, and the look-up by the
# full key would then never find the record it wrote.
CORRELATION_ID_MAX = 100
CORRELATION_DISPLAY = "changeloop"


def task_key(workflow_id: str, name: str) -> str:
    """The natural key of one change task: `<workflow id>:<step or task name>`, at most 100 characters (a longer one
    keeps its head and ends with a digest of the whole, so two long names never share a key)."""
    key = f"{workflow_id}:{name}"
    if len(key) <= CORRELATION_ID_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: CORRELATION_ID_MAX - 17]}#{digest}"


# -- attachments ---------------------------------------------------------------------------------------------------
class AttachInput(BaseModel):
    """One text file for one record. The activity scrubs the text of the worker's secrets and caps its size
    (CHANGELOOP_ATTACHMENT_MAX_BYTES) before it uploads; a record that already has `file_name` gets nothing."""

    table: str
    sys_id: str
    file_name: str
    text: str
    content_type: str = "text/plain"


class AttachResult(BaseModel):
    sys_id: str
    file_name: str
    size_bytes: int = 0
    uploaded: bool  # False: the record had this file already (a retry or a repeated close)
    truncated: bool = False  # the text was over the cap: its head and tail were kept
    download_link: str = ""


# -- change tasks --------------------------------------------------------------------------------------------------
class OpenTaskInput(BaseModel):
    change_sys_id: str
    key: str  # task_key(...): written to correlation_id, looked up before each create
    short_description: str
    description: str = ""
    assignment_group: str = ""  # a group's name (the runbook's); empty: the CI's support group, then the change's
    cmdb_ci: str = ""  # sys_id
    ci_name: str = ""  # the CI by name (a runbook's {host}, a wave's host), when the caller has no sys_id
    task_type: str = "implementation"
    state: str = "2"  # In Progress: a task is opened when its work starts (servicenow/change_task.py)


class TaskRef(BaseModel):
    sys_id: str
    number: str
    state: str
    key: str = ""
    created: bool = False  # False: an earlier attempt (or run) had opened it
    assignment_group: str = ""  # sys_id
    url: str = ""


class TaskOutcome(StrEnum):
    COMPLETE = "complete"  # Closed, close_code successful
    COMPLETE_WITH_ISSUES = "complete_with_issues"  # Closed, close_code successful_issues
    INCOMPLETE = "incomplete"  # Closed, close_code unsuccessful
    CANCELED = "canceled"  # Canceled: the work never started


class CloseTaskInput(BaseModel):
    sys_id: str
    outcome: TaskOutcome
    close_notes: str  # the step's outcome and an excerpt of its output: scrubbed by the activity


# -- the Slack confirmation of a closed change ------------------------------------------------------------------------
# workflow.patched id: changes closed before it post nothing.
CHANGE_CLOSED_NOTICE_PATCH = "change-closed-slack"
# The close code of the confirmation of a change that was canceled (state Canceled: not implemented, no close code).
CANCELED_NOTICE = "canceled"


class ChangeClosedInput(BaseModel):
    """What the confirmation says: the worker adds the links (ServiceNow's and the Temporal UI's base URLs live in
    its settings) and posts only when CHANGELOOP_SLACK_CHANGE_CLOSED is on."""

    number: str
    sys_id: str
    close_code: str  # a change_request close code, or CANCELED_NOTICE
    runbook: str = ""
    summary: str = ""  # the first line of the close notes
    workflow_id: str
    run_id: str = ""
