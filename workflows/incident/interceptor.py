"""`IncidentInterceptor`: every workflow the worker runs gets the incident path, without repeating it.

A workflow inbound interceptor wraps `execute_workflow`: when the workflow raises a failure (not a cancellation,
not continue-as-new, which are no failures), it opens the incident through `incident_path.report_failure` and
re-raises. An ApplicationError is re-raised with the incident number appended to its message, so `temporal workflow
describe`, the shim's status and the UI name it; other failures are re-raised unchanged (the `incident` query
answers for them). Registered in worker.py for the worker and the replayer alike: replay must see the same commands.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from workflows.incident.reporting import report_failure


class IncidentInterceptor(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _OpenIncidentOnFailure


class _OpenIncidentOnFailure(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        try:
            return await self.next.execute_workflow(input)
        except FailureError as error:
            try:
                incident = await report_failure(error)
            except workflow.NondeterminismError:
                raise
            except Exception as problem:  # the workflow's own failure is what must surface, not the report's
                workflow.logger.warning("could not open the incident for this failure: %s", problem)
                raise error from error.__cause__
            if incident is None or not incident.number or not isinstance(error, ApplicationError):
                raise
            raise _naming(error, incident.number) from error.__cause__


def _naming(error: ApplicationError, number: str) -> ApplicationError:
    """The same failure (type, details, retry semantics), its message naming the incident."""
    return ApplicationError(
        f"{error.message} (incident {number})",
        *error.details,
        type=error.type,
        non_retryable=error.non_retryable,
        next_retry_delay=error.next_retry_delay,
        category=error.category,
    )
