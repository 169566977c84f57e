"""A test parent for a patch wave, standing in for the change workflow: it runs the wave as its child, collects the
wave's `step_progress` reports, and cancels the child when told to - the way a canceled change will cancel its wave.
It answers what a parent can read of a canceled wave: how the child ended and the `canceled` step's summary."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from workflows.runbook.models import SIGNAL_STEP_PROGRESS, RunbookResult
    from workflows.status import StepRecord
    from workflows.wave.models import WaveRun, wave_workflow_id

SIGNAL_CANCEL_WAVE = "cancel_wave"


class ParentView(BaseModel):
    ended: str  # completed | canceled | failed
    steps: list[StepRecord] = []
    error: str = ""


@workflow.defn(name="WaveParentWorkflow")
class WaveParentWorkflow:
    def __init__(self) -> None:
        self._steps: list[StepRecord] = []
        self._cancel = False

    @workflow.signal(name=SIGNAL_STEP_PROGRESS)
    def step_progress(self, record: StepRecord) -> None:
        self._steps.append(record)

    @workflow.signal(name=SIGNAL_CANCEL_WAVE)
    def cancel_wave(self) -> None:
        self._cancel = True

    @workflow.run
    async def run(self, run: WaveRun) -> ParentView:
        child = await workflow.start_child_workflow(
            "PatchWaveWorkflow",
            run.model_copy(update={"report_to": workflow.info().workflow_id}),
            id=wave_workflow_id(run.change_number),
            result_type=RunbookResult,
        )
        await workflow.wait_condition(lambda: self._cancel or child.done())
        if not child.done():
            child.cancel()  # what a parent's own cancellation does to the child it awaits
        try:
            await child
        except ChildWorkflowError as error:
            ended = "canceled" if is_cancelled_exception(error) else "failed"
            return ParentView(ended=ended, steps=self._steps, error=str(error.cause))
        return ParentView(ended="completed", steps=self._steps)
