"""How a failure reads: its root cause, its type, and the words people see (ticket notes, incidents, status).

Temporal wraps an activity's error (`ActivityError` -> `ApplicationError` -> ...) and a child's (`ChildWorkflowError`
-> ...); people want the innermost message, not "Activity task failed". One place unwraps them for the workflows,
the incident path and the shim's status answer.
"""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError


def root_cause(error: BaseException) -> BaseException:
    """The end of the cause chain (`FailureError.cause`, which is `__cause__`)."""
    while isinstance(error.__cause__, BaseException):
        error = error.__cause__
    return error


def error_type(error: BaseException) -> str:
    return error.type if isinstance(error, ApplicationError) and error.type else type(error).__name__


def failure_message(error: BaseException) -> str:
    """The innermost message of an activity failure: the activity's own words, not the 'Activity task failed'
    wrapper (and without the error type, which is for machines)."""
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    return error.message if isinstance(error, ApplicationError) else str(error)


def describe(error: BaseException) -> str:
    """The failure and, when it does not already say it, its root cause: 'runbook failed at step x (cause: ...)'."""
    root = root_cause(error)
    return str(error) if root is error or str(root) in str(error) else f"{error} (cause: {root})"
