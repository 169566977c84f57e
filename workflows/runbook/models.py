"""The runbook workflow's contract: its input and result, its status, and the step and registry activities' payloads."""

from __future__ import annotations

from pydantic import BaseModel

from config.runbooks import Runbook, Step
from workflows.status import StepProgress, StepRecord

SIGNAL_STEP_PROGRESS = "step_progress"


def runbook_workflow_id(number: str) -> str:
    return f"runbook-{number}"


class RunbookRun(BaseModel):
    """Input of RunbookWorkflow (and of any registered runbook workflow)."""

    runbook: Runbook
    variables: dict[str, str] = {}
    change_number: str = ""
    change_sys_id: str = ""  # empty for flow runs: no ticket to write to
    report_to: str = ""  # workflow ID that receives `step_progress` signals


class RunbookResult(BaseModel):
    runbook: str
    succeeded: bool
    steps: list[StepRecord] = []
    failed_step: str = ""
    error: str = ""
    output: dict[str, str] = {}
    # A runbook that knows better than "all steps passed" (a patch wave) sets these; the change closes with them.
    close_code: str = ""  # successful | successful_issues; empty = successful
    summary: str = ""  # replaces the step list in close_notes


class RunbookStatus(StepProgress):
    runbook: str
    result: RunbookResult | None = None


# -- activity inputs/outputs (workflows call activities by name; they never import activities/) ---------------------
class ResolveInput(BaseModel):
    template: str = ""
    category: str = ""


class RunbookChoice(BaseModel):
    runbook: Runbook | None = None


class StepInput(BaseModel):
    step: Step
    variables: dict[str, str] = {}


class StepOutput(BaseModel):
    output: str = ""
