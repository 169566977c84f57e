"""The runbook workflow's contract: its input and result, its status, and the step and registry activities' payloads.

A run carries a runbook by reference: its name and the digest of the registry entry it resolved (config/runbooks.py
`runbook_digest`), never steps, commands, URLs or credentials. The worker answers what a workflow needs of the
entry (`RunbookPlan`) and looks each step up in its own registry when it runs it (activities/runbook/steps.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from config.runbooks import Duration, Runbook, runbook_digest
from workflows.change.models import ChangeTicket, Waiting
from workflows.gate.models import GateState
from workflows.status import StepProgress, StepRecord

SIGNAL_STEP_PROGRESS = "step_progress"
# Runs started before runbooks travelled by reference carried the whole entry in their input; their histories
# replay on the old path, and a new execution with an entry in its input is refused (runs nothing).
RUNBOOK_BY_REFERENCE = "runbook-by-reference"
# The error type when a run's runbook is unknown, unpinned or changed in the worker's registry (never retried).
REGISTRY_CHANGED = "RegistryChanged"
INLINE_RUNBOOK_REFUSED = "InlineRunbookRefused"
# Evidence on the ticket (issue 15): a change task per step, and the steps' output attached to the change at the end.
STEP_TASKS_PATCH = "runbook-step-tasks"
STEP_LOG_PATCH = "runbook-step-log-attached"


def runbook_workflow_id(number: str) -> str:
    return f"runbook-{number}"


class RunbookRef(BaseModel):
    """A registry entry by reference: its name and the digest the run resolved."""

    name: str
    digest: str


class StepPlan(BaseModel):
    """What a workflow needs of one step: its name and how long and how often it may try."""

    model_config = ConfigDict(extra="ignore")

    name: str
    timeout: Duration = timedelta(minutes=5)
    heartbeat_timeout: Duration = timedelta(seconds=30)
    retries: int = 2
    on_cancel: str = "kill"  # kill | finish: what a cancel request does to this step while it runs


class RunbookPlan(BaseModel):
    """A registry entry as workflows see it: no command, URL, header or environment of any step. Extra fields are
    ignored, so a recorded answer of an older worker (the whole entry) still reads as a plan."""

    model_config = ConfigDict(extra="ignore")

    name: str
    digest: str = ""
    description: str = ""
    workflow: str = "steps"  # "steps" = RunbookWorkflow; otherwise a registered workflow type
    destructive: bool = False
    production: bool = True
    timeout: Duration = timedelta(hours=1)
    approval_timeout: Duration = timedelta(hours=24)
    approvers: list[str] = []
    approver_group: str = ""
    change_types: list[str] = ["standard"]
    params: dict[str, str] = {}
    inputs: list[str] = []
    optional_inputs: list[str] = []
    steps: list[StepPlan] = []
    note_batch_size: int = 5
    note_batch_seconds: float = 10.0
    window: str = "respect"  # respect | ignore: the change's planned window and ServiceNow's schedules
    window_end: str = "finish"  # finish | roll_back: what runs when the planned end passes
    tasks: str = "none"  # per_step: a change task per step (a wave: canary, troubled hosts, summary)
    task_group: str = ""  # the tasks' assignment group (a name); empty: the CI's support group

    @property
    def tasks_per_step(self) -> bool:
        return self.tasks == "per_step"

    @classmethod
    def of(cls, runbook: Runbook) -> RunbookPlan:
        data = runbook.model_dump(mode="json", exclude={"steps"})
        steps = [StepPlan.model_validate(step.model_dump(mode="json")) for step in runbook.steps]
        return cls.model_validate(data | {"digest": runbook_digest(runbook), "steps": steps})

    @property
    def ref(self) -> RunbookRef:
        return RunbookRef(name=self.name, digest=self.digest)


def legacy_digest(entry: dict[str, Any]) -> str:
    """The digest of an entry an older version carried in a run's input, as this version's registry would compute
    it: equal to the worker's when the registry still holds the same entry ('' when it no longer validates)."""
    try:
        return runbook_digest(Runbook.model_validate(entry))
    except ValidationError:
        return ""


class RunbookRun(BaseModel):
    """Input of RunbookWorkflow (and of any registered runbook workflow): a registry entry by reference."""

    # The entry's name. A dict is the whole entry as versions before by-reference carried it: read for the replay of
    # their histories only; a new execution with one is refused and runs nothing.
    runbook: str | dict[str, Any]
    digest: str = ""
    variables: dict[str, str] = {}
    change_number: str = ""
    change_sys_id: str = ""  # empty for flow runs: no ticket to write to
    report_to: str = ""  # workflow ID that receives `step_progress` signals
    # The ticket as the starting change last read it: the run's ticket watch starts from it (and reads it again on
    # a hint or its poll), so it knows the planned window without a read of its own. Never trusted beyond a hint.
    ticket: ChangeTicket | None = None

    @property
    def name(self) -> str:
        return self.runbook if isinstance(self.runbook, str) else str(self.runbook.get("name", ""))

    @property
    def inline(self) -> bool:
        return isinstance(self.runbook, dict)

    @property
    def ref(self) -> RunbookRef:
        if isinstance(self.runbook, dict):
            return RunbookRef(name=self.name, digest=legacy_digest(self.runbook))
        return RunbookRef(name=self.runbook, digest=self.digest)

    def legacy_plan(self) -> RunbookPlan:
        """The plan of an inline entry (replay of an older history), with the digest it has in today's registry."""
        assert isinstance(self.runbook, dict)
        return RunbookPlan.model_validate(self.runbook | {"digest": self.ref.digest})


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
    gate: GateState | None = None  # a destructive runbook's approval gate; rejected or timed out: nothing ran
    # The ticket watch stopped the run before its end (workflows/change/watch.py): `canceled_in_servicenow` or
    # `window_ended`; `error` says why and what did not run.
    stopped: str = ""
    # Of a failed run: the failing step's output (scrubbed and capped by the step), for the incident's attachment.
    failed_output: str = ""


class RunbookStatus(StepProgress):
    runbook: str
    result: RunbookResult | None = None
    gate: GateState | None = None  # set once the run knows its runbook is destructive
    waiting: Waiting | None = None  # paused between steps by the ticket watch (on hold, blackout)
    log: str = ""  # the steps' output attached to the change: "<file name> (<bytes> bytes)", or why not


# -- activity inputs/outputs (workflows call activities by name; they never import activities/) ---------------------
class ResolveInput(BaseModel):
    template: str = ""
    category: str = ""


class RunbookChoice(BaseModel):
    runbook: RunbookPlan | None = None


class StepInput(BaseModel):
    """One step to run, by reference: the worker looks it up in its own registry and checks the digest again."""

    model_config = ConfigDict(extra="forbid")  # a step definition sent along is refused, never run

    runbook: str
    digest: str
    index: int
    name: str  # the step's name at `index` when the run resolved it: a renamed or moved step is refused
    variables: dict[str, str] = {}


class StepOutput(BaseModel):
    # Scrubbed and capped by the step (CHANGELOOP_STEP_OUTPUT_MAX_BYTES): the runbook keeps it for its log.
    output: str = ""
