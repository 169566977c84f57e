"""The one failure path of every production workflow: describe the failure, start `incident-for-<id>`, learn the
incident number. Called by the workflow interceptor for any workflow that fails, and by a workflow that wants the
number before it fails (the change names it in its close notes).

Who reports: the top-level workflow of a failure chain only. A child (a runbook under a change, a host under a
wave) fails into its parent, which reports it - or handles it and does not fail at all. The incident workflow never
reports itself. A workflow that knows better than the error chain defines `failure_report(error) -> FailureReport |
None` (None: nothing to report, e.g. already reported); the others get `generic_report`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from workflows import search_attributes as sa
    from workflows.failures import describe, error_type, root_cause
    from workflows.incident.models import (
        INCIDENT_PATCH,
        INCIDENT_WORKFLOW,
        QUERY_INCIDENT,
        SIGNAL_INCIDENT_OPENED,
        SIGNAL_REPORT_TO,
        FailureReport,
        IncidentRef,
        IncidentRequest,
        incident_workflow_id,
    )
    from workflows.runbook.models import StepPlan
    from workflows.status import StepRecord

# How long a failing workflow waits for its incident number before failing without it (the incident workflow
# carries on regardless and still notes the number on the change).
NUMBER_WAIT = timedelta(minutes=5)


def generic_report(error: BaseException) -> FailureReport:
    """What the error chain and the search attributes tell about any failed workflow."""
    activity = ""
    link: BaseException | None = error
    while link is not None:
        if isinstance(link, ActivityError) and not activity:
            activity = link.activity_type
        link = getattr(link, "cause", None)
    root = root_cause(error)
    attributes = workflow.info().typed_search_attributes
    return FailureReport(
        activity=activity,
        error_message=describe(error),
        error_type=error_type(root),
        log_lines=str(root).splitlines(),
        change_number=attributes.get(sa.CHANGE_NUMBER) or "",
        ci_names=list(attributes.get(sa.CMDB_CI) or []),
    )


def step_report(record: StepRecord | None, fallback: BaseException, **fields: object) -> FailureReport:
    """A runbook step's failure: the step record carries the activity's message, type and attempt count; the
    runbook's failure (`fallback`, or the child's failure it wraps) carries the step's output."""
    if record is None:
        return generic_report(fallback).model_copy(update=fields)
    return FailureReport(
        step=record.name,
        activity=record.activity or "run_step",
        error_message=record.detail,
        error_type=record.error_type,
        attempts=record.attempts,
        log_lines=record.detail.splitlines(),
        output=failed_output(fallback),
    ).model_copy(update=fields)


def failed_output(error: BaseException) -> str:
    """The failing step's output a runbook put in its failure's details (RunbookResult.failed_output), found along
    the cause chain (a change sees it through its child's failure); '' when none carries one."""
    link: BaseException | None = error
    while link is not None:
        details = link.details if isinstance(link, ApplicationError) else ()
        if details and isinstance(details[0], dict) and isinstance(details[0].get("failed_output"), str):
            return str(details[0]["failed_output"])
        link = getattr(link, "cause", None)
    return ""


def step_attempts(error: ActivityError, step: StepPlan) -> int:
    """How many times the step ran: the activity says so in its details, else the retry state implies it."""
    cause = error.cause
    details = cause.details if isinstance(cause, ApplicationError) else ()
    if details and isinstance(details[0], dict) and isinstance(details[0].get("attempt"), int):
        return int(details[0]["attempt"])
    if error.retry_state in (RetryState.MAXIMUM_ATTEMPTS_REACHED, RetryState.TIMEOUT):
        return step.retries + 1
    return 0


async def report_failure(error: BaseException) -> IncidentRef | None:
    """Open the incident for this workflow's failure, unless someone else reports it; the interceptor's entry."""
    info = workflow.info()
    if info.workflow_type == INCIDENT_WORKFLOW or info.parent is not None or is_cancelled_exception(error):
        return None
    hook = getattr(workflow.instance(), "failure_report", None)
    report = hook(error) if callable(hook) else generic_report(error)
    if report is None or report.production is False:
        return None
    return await open_incident(report)


async def open_incident(report: FailureReport) -> IncidentRef | None:
    """Start (or join) `incident-for-<this workflow>` and wait for its number. None when this run predates the
    incident path (replay of an old history) or the workflow is not production; a ref without a number when the
    incident is still being opened after NUMBER_WAIT."""
    if report.production is False or not workflow.patched(INCIDENT_PATCH):
        return None
    info = workflow.info()
    answers: list[IncidentRef] = []

    def opened(incident: IncidentRef) -> None:
        answers.append(incident)

    workflow.set_signal_handler(SIGNAL_INCIDENT_OPENED, opened)
    incident_id = incident_workflow_id(info.workflow_id)
    request = IncidentRequest(
        **report.model_dump(),
        failed_workflow_id=info.workflow_id,
        failed_run_id=info.run_id,
        workflow_type=info.workflow_type,
        report_to=info.workflow_id,
    )
    try:
        await workflow.start_child_workflow(
            INCIDENT_WORKFLOW,
            request,
            id=incident_id,
            search_attributes=sa.of_change(report.change_number, report.ci_names),
            # The incident outlives the failure: it waits days for `resolve` after this workflow has closed.
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )
    except WorkflowAlreadyStartedError:
        # This failure was reported already (an earlier run, or a reset): ask that incident workflow for its number.
        try:
            await workflow.get_external_workflow_handle(incident_id).signal(SIGNAL_REPORT_TO, info.workflow_id)
        except Exception as error:  # it closed in between: its incident exists, only the number is missing here
            workflow.logger.warning("could not ask %s for its incident: %s", incident_id, error)
            return IncidentRef(workflow_id=incident_id)
    try:
        await workflow.wait_condition(lambda: bool(answers), timeout=NUMBER_WAIT)
    except TimeoutError:
        return IncidentRef(workflow_id=incident_id)
    incident = answers[0]
    workflow.set_query_handler(QUERY_INCIDENT, lambda: incident)
    return incident
