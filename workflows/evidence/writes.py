"""Evidence writes as workflows make them: change tasks and attachments that never fail the work they describe.

A ServiceNow refusal that no retry fixes (an ACL, the instance's size limit) ends the write, not the change: the
work already happened, and the ticket's notes still tell it. The refusal is logged and the caller records it in its
status. A cancel request is not swallowed: it is the caller's to handle (workflows/cancellation.py), and the caller
repeats the write in its cleanup, where each write finds its own earlier one (the activities look their natural key
up first).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.cancellation import canceled_by_request
    from workflows.evidence.models import AttachInput, CloseTaskInput, OpenTaskInput, TaskOutcome, TaskRef
    from workflows.failures import failure_message


async def open_task(request: OpenTaskInput) -> TaskRef | None:
    """The task of `request.key`, found or created; None when ServiceNow refused it."""
    try:
        return await calls.OPEN_CHANGE_TASK(request)
    except ActivityError as error:
        if canceled_by_request(error):
            raise
        workflow.logger.warning("change task %s not opened: %s", request.key, failure_message(error))
        return None


async def close_task(sys_id: str, outcome: TaskOutcome, notes: str) -> TaskRef | None:
    """Closed with `outcome` (a task already closed or canceled is left as it is); None when refused."""
    try:
        return await calls.CLOSE_CHANGE_TASK(CloseTaskInput(sys_id=sys_id, outcome=outcome, close_notes=notes))
    except ActivityError as error:
        if canceled_by_request(error):
            raise
        workflow.logger.warning("change task %s not closed: %s", sys_id, failure_message(error))
        return None


async def attach(request: AttachInput) -> str:
    """Attach `request.text` once; what happened, for a status: "<name> (<n> bytes)", "... already attached" or
    "<name> not attached: <why>"."""
    try:
        result = await calls.ATTACH_FILE(request)
    except ActivityError as error:
        if canceled_by_request(error):
            raise
        message = failure_message(error)
        workflow.logger.warning("%s not attached: %s", request.file_name, message)
        return f"{request.file_name} not attached: {message}"
    if not result.uploaded:
        return f"{result.file_name} ({result.size_bytes} bytes, already attached)"
    return f"{result.file_name} ({result.size_bytes} bytes{', cut to the cap' if result.truncated else ''})"
