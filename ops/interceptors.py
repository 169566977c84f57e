"""One worker interceptor for what every workflow and activity shares: log context and outcome counters.

- Activities: structlog context variables (workflow ID, run ID, workflow type, activity, attempt, task queue and
  the change number) are bound for the activity's whole run, so every log line an activity writes - and the
  `activity.failed` line written here - carries them without any per-call code. Every activity's result and failure
  (message, details, causes) passes the scrubber (ops/scrub.py) here, before the SDK sends it to history: step
  output, status details, results and failure messages never carry a configured secret.
- Workflows: changes started / closed by outcome and hosts patched / rolled back are counted from what the
  workflow returns or raises, through the replay-safe workflow metric meter.

The change number is read from the workflow ID (`change-CHG…`, `runbook-CHG…`, `wave-CHG…`, `patch-CHG…-<ci>`,
`incident-for-<one of those>`). IDs are deterministic by contract (docs/architecture.md, "Contract") and already readable in history,
so unlike a header this adds nothing in clear when history is encrypted.
"""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from ops import metrics
from ops.scrub import SCRUBBER, clean_failure

_CHANGE_IN_ID = re.compile(r"^(?:incident-for-)*(?:change|runbook|wave|patch)-([A-Z]+[0-9]+)(?:-|$)")
log = structlog.get_logger("changeloop.activity")


def change_number_of(workflow_id: str | None) -> str:
    match = _CHANGE_IN_ID.match(workflow_id or "")
    return match.group(1) if match else ""


class ChangeloopInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityContext(next)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _WorkflowOutcomes


class _ActivityContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        context = {
            "workflow_id": info.workflow_id,
            "run_id": info.workflow_run_id,
            "workflow_type": info.workflow_type,
            "activity": info.activity_type,
            "attempt": info.attempt,
            "task_queue": info.task_queue,
        }
        if number := change_number_of(info.workflow_id):
            context["change_number"] = number
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(**context):
            try:
                result = await self.next.execute_activity(input)
            except Exception as error:
                # One line per failed attempt, with the context above; the error text passes the scrubber.
                log.warning(
                    "activity.failed",
                    error=str(error)[:500],
                    error_type=getattr(error, "type", None) or type(error).__name__,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
                clean = clean_failure(error)
                if clean is None:
                    raise
                raise clean from clean.__cause__
            return SCRUBBER.value(result)


def _count(name: str, attributes: dict[str, str] | None = None) -> None:
    workflow.metric_meter().create_counter(name, metrics.COUNTERS[name][1]).add(1, attributes)


def _change_failure_outcome(error: BaseException) -> str:
    if isinstance(error, CancelledError):
        return "canceled"
    if isinstance(error, ApplicationError) and error.details and isinstance(error.details[0], dict):
        return str(error.details[0].get("outcome") or "failed")
    return "failed"


class _WorkflowOutcomes(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        kind = workflow.info().workflow_type
        if kind == "ChangeRequestWorkflow":
            _count(metrics.CHANGES_STARTED)
        try:
            result = await self.next.execute_workflow(input)
        except (ApplicationError, CancelledError) as error:
            if kind == "ChangeRequestWorkflow":
                _count(metrics.CHANGES_CLOSED, {"outcome": _change_failure_outcome(error)})
            raise
        self._count_result(result)
        return result

    @staticmethod
    def _count_result(result: Any) -> None:
        # By the result's shape, not the workflow's name: whichever workflow returns a ChangeResult or a
        # HostReport is counted, so a renamed or new workflow type does not silently stop counting.
        outcome = getattr(getattr(result, "outcome", None), "value", None)
        if outcome is None:
            return
        kind = type(result).__name__
        if kind == "ChangeResult":
            _count(metrics.CHANGES_CLOSED, {"outcome": outcome})
        elif kind == "HostReport":
            counter = {
                "patched": metrics.HOSTS_PATCHED,
                "rolled_back": metrics.HOSTS_ROLLED_BACK,
                "failed": metrics.HOSTS_FAILED,
            }.get(outcome)
            if counter:
                _count(counter)
