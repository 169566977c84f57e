"""FlowRunWorkflow (ID `flow-<flow>-<key>`): a registry runbook started through `POST /api/flows/{flow}/run`.

Runs the runbook as a child (no ticket to write to), then, when the caller gave a callback URL, posts the result
there. The callback is an activity with retries, so a receiver that is down for a while still gets its answer.
A destructive runbook's gate is held by the child; this workflow takes the gate's messages and relays them
(workflows/gate/relay.py), so callers keep addressing `flow-<flow>-<key>`.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.failures import failure_message
    from workflows.flow.models import CallbackInput, FlowName, FlowRun
    from workflows.gate.models import GateState, GateStatus
    from workflows.gate.relay import GateRelay, GateRelayHandlers
    from workflows.incident.models import FailureReport
    from workflows.incident.reporting import step_report
    from workflows.runbook.models import SIGNAL_STEP_PROGRESS, RunbookPlan, RunbookResult, RunbookRun, RunbookStatus
    from workflows.runbook.workflow import pinned
    from workflows.status import QUERY_STATUS, Progress, StepOutcome, StepRecord


@workflow.defn(name="FlowRunWorkflow")
class FlowRunWorkflow(GateRelayHandlers):
    @workflow.init
    def __init__(self, run: FlowRun) -> None:
        self._status = RunbookStatus(runbook=run.flow)
        self._run = run
        self._book: RunbookPlan | None = None
        self._relay = GateRelay(on_change=self._mirror_gate)

    def _mirror_gate(self, gate: GateState) -> None:
        self._status.gate = gate

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> RunbookStatus:
        return self._status

    @workflow.signal(name=SIGNAL_STEP_PROGRESS)
    def step_progress(self, record: StepRecord) -> None:
        self._status.record_step(record)

    def failure_report(self, error: BaseException) -> FailureReport | None:
        """For the incident path: the runbook's production flag, the failed step, the host the run was given."""
        failed = next((s for s in self._status.steps if s.outcome == StepOutcome.FAILED), None)
        host = self._run.inputs.get("host", "")
        production = self._book.production if self._book else None
        return step_report(failed, error, production=production, ci_names=[host] if host else [])

    @workflow.run
    async def run(self, run: FlowRun) -> RunbookResult:
        # Every `decide` gets its answer before the run ends (not in a `finally`: an evicted run must not await).
        try:
            result = await self._run_flow(run)
        except ApplicationError:
            self._relay.close("the flow run has ended")
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        self._relay.close("the flow run has ended")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _run_flow(self, run: FlowRun) -> RunbookResult:
        runbook = await calls.RESOLVE_FLOW(FlowName(flow=run.flow))
        if runbook.runbook is None:
            self._relay.close(f"unknown flow {run.flow!r}")
            raise ApplicationError(f"unknown flow {run.flow!r}", type="UnknownFlow", non_retryable=True)
        book = self._book = runbook.runbook
        self._status.progress = Progress(total=len(book.steps))
        book = await pinned(book)
        if book.destructive:
            self._status.gate = self._relay.gate
        else:
            self._relay.close(
                f"runbook {book.name!r} is not destructive: it has no approval gate", GateStatus.NOT_REQUIRED
            )
        try:
            child = await workflow.start_child_workflow(
                "RunbookWorkflow" if book.workflow == "steps" else book.workflow,
                RunbookRun(
                    runbook=book.name,
                    digest=book.digest,
                    variables=book.params | run.inputs,
                    report_to=workflow.info().workflow_id,
                ),
                id=f"{workflow.info().workflow_id}-runbook",
                search_attributes=workflow.info().typed_search_attributes,  # the flow's own (Runbook, ...)
                result_type=RunbookResult,
                execution_timeout=book.timeout,
            )
            self._relay.attach(child)
            result = await child
        except ChildWorkflowError as error:
            failed = next((s for s in self._status.steps if s.outcome == StepOutcome.FAILED), None)
            result = RunbookResult(
                runbook=book.name,
                succeeded=False,
                steps=self._status.steps,
                failed_step=failed.name if failed else self._status.step,
                error=failed.detail if failed else failure_message(error.cause or error),
            )
        self._status.result = result
        unapproved = result.gate is not None and result.gate.status in (GateStatus.REJECTED, GateStatus.TIMED_OUT)
        if result.gate is not None:
            self._mirror_gate(result.gate)
        if run.callback_url:
            payload = {"executionId": workflow.info().workflow_id, "flow": run.flow} | result.model_dump(mode="json")
            await calls.POST_CALLBACK(CallbackInput(url=run.callback_url, payload=payload))
        if not result.succeeded and not unapproved:  # rejected or not approved in time: an answer, not a failure
            raise ApplicationError(
                f"flow {run.flow!r} failed at step {result.failed_step!r}: {result.error}",
                result.model_dump(mode="json"),
                type="RunbookFailed",
                non_retryable=True,
            )
        return result
