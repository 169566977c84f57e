"""One worker interceptor for what every workflow and activity shares: log context and outcome counters.

- Activities: structlog context variables (workflow ID, run ID, workflow type, activity, attempt, task queue and
  the change number) are bound for the activity's whole run, so every log line an activity writes - and the
  `activity.failed` line written here - carries them without any per-call code. Every activity's result and failure
  (message, details, causes) passes the scrubber (ops/scrub.py) here, before the SDK sends it to history: step
  output, status details, results and failure messages never carry a configured secret.
- Workflows: changes started / closed by outcome and hosts patched / rolled back are counted from what the
  workflow returns or raises, through the replay-safe workflow metric meter; a change's seconds to Implement (its
  `begin_implementation` activity completed) and to its end (by outcome) are recorded as histograms there too.

The change number is read from the workflow ID (`change-CHG…`, `runbook-CHG…`, `wave-CHG…`, `patch-CHG…-<ci>`,
`incident-for-<one of those>`). IDs are deterministic by contract (docs/architecture.md, "Contract") and already readable in history,
so unlike a header this adds nothing in clear when history is encrypted.
"""

from __future__ import annotations

import asyncio
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
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
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


def _seconds(name: str, outcome: str = "") -> None:
    """Seconds since this change workflow started (its webhook or poll), on the replay-safe meter."""
    seconds = max(0.0, (workflow.now() - workflow.info().start_time).total_seconds())
    histogram = workflow.metric_meter().create_histogram_float(name, metrics.HISTOGRAMS[name][1], "s")
    histogram.record(seconds, {"outcome": outcome} if outcome else None)


IMPLEMENT_ACTIVITY = "begin_implementation"  # workflows/calls.py BEGIN_IMPLEMENTATION: Scheduled -> Implement


class _ChangeMilestones(WorkflowOutboundInterceptor):
    """A change reaches Implement when its begin_implementation activity completes."""

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        handle = super().start_activity(input)
        if input.activity == IMPLEMENT_ACTIVITY and workflow.info().workflow_type == CHANGE_WORKFLOW:
            handle.add_done_callback(_implemented)
        return handle


def _implemented(task: Any) -> None:
    if not task.cancelled() and task.exception() is None:
        _seconds(metrics.CHANGE_IMPLEMENT_SECONDS)


CHANGE_WORKFLOW = "ChangeRequestWorkflow"


def _change_failure_outcome(error: BaseException) -> str:
    if isinstance(error, (CancelledError, asyncio.CancelledError)):
        return "canceled"
    if isinstance(error, ApplicationError) and error.details and isinstance(error.details[0], dict):
        return str(error.details[0].get("outcome") or "failed")
    return "failed"


class _WorkflowOutcomes(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_ChangeMilestones(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        kind = workflow.info().workflow_type
        if kind == CHANGE_WORKFLOW:
            _count(metrics.CHANGES_STARTED)
        try:
            result = await self.next.execute_workflow(input)
        except (ApplicationError, CancelledError, asyncio.CancelledError) as error:
            if kind == CHANGE_WORKFLOW:
                outcome = _change_failure_outcome(error)
                _count(metrics.CHANGES_CLOSED, {"outcome": outcome})
                _seconds(metrics.CHANGE_CLOSE_SECONDS, outcome)
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
            _seconds(metrics.CHANGE_CLOSE_SECONDS, outcome)
        elif kind == "HostReport":
            counter = {
                "patched": metrics.HOSTS_PATCHED,
                "rolled_back": metrics.HOSTS_ROLLED_BACK,
                "failed": metrics.HOSTS_FAILED,
            }.get(outcome)
            if counter:
                _count(counter)
