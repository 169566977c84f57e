"""Pydantic models that travel through Temporal (inputs, results, signals, updates, queries).

These are the workflow-side contract: the shim, the CLI and the `temporal` CLI send these shapes. They carry
ticket data and IDs only - never a credential.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """'90s', '30m', '1h', '2d', '250ms' as well as what pydantic takes (seconds, ISO 8601)."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

# -- names shared by starters and workflows ------------------------------------------------------------------------
SIGNAL_APPROVE = "approve"
SIGNAL_REJECT = "reject"
UPDATE_DECIDE = "decide"
QUERY_STATUS = "status"
SIGNAL_STEP_PROGRESS = "step_progress"

# Error types of a refused `decide` update.
GATE_EMPTY_APPROVER = "EmptyApprover"
GATE_UNKNOWN_APPROVER = "NotAnApprover"
GATE_NOT_OPEN = "GateNotOpen"


def change_workflow_id(number: str) -> str:
    return f"change-{number}"


def runbook_workflow_id(number: str) -> str:
    return f"runbook-{number}"


def flow_workflow_id(flow: str, key: str) -> str:
    return f"flow-{flow}-{key}"


# -- runbooks ------------------------------------------------------------------------------------------------------
class HttpCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    json_body: dict[str, object] | None = Field(default=None, alias="json")
    headers: dict[str, str] = {}
    expect_status: list[int] = [200, 201, 202, 204]


class Step(BaseModel):
    """One runbook step: an argv command (never a shell string) or an HTTP call. `{name}` placeholders are filled
    from the run's variables (host, change, params), each value checked against a safe pattern first."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    command: list[str] | None = None
    http: HttpCall | None = None
    timeout: Duration = timedelta(minutes=5)
    # How soon a lost worker is noticed while this step runs (the step heartbeats every 2 s).
    heartbeat_timeout: Duration = timedelta(seconds=30)
    retries: int = Field(default=2, ge=0, le=20)

    @field_validator("command")
    @classmethod
    def _argv_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("command must be a non-empty argv list")
        return value

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if (self.command is None) == (self.http is None):
            raise ValueError(f"step {self.name!r} needs exactly one of 'command' or 'http'")
        return self


class Runbook(BaseModel):
    """A registry entry, resolved: what a change or a flow run executes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    workflow: str = "steps"  # "steps" = RunbookWorkflow over `steps`; otherwise a registered workflow type
    destructive: bool = False
    production: bool = True
    timeout: Duration = timedelta(hours=1)
    approval_timeout: Duration = timedelta(hours=24)
    approvers: list[str] = []  # empty = anyone may approve
    params: dict[str, str] = {}
    inputs: list[str] = []  # required named inputs for /api/flows/{flow}/run
    optional_inputs: list[str] = []
    steps: list[Step] = []
    note_batch_size: int = Field(default=5, ge=1)
    note_batch_seconds: float = Field(default=10.0, ge=0)


# -- tickets -------------------------------------------------------------------------------------------------------
class ChangeTicket(BaseModel):
    """What a change workflow needs to know about its change_request, read from ServiceNow by an activity."""

    sys_id: str
    number: str
    state: str
    type: str = "standard"
    approval: str = ""
    category: str = ""
    template: str = ""  # std_change_producer_version display name
    cmdb_ci: str = ""  # sys_id
    cmdb_ci_name: str = ""
    short_description: str = ""


class ChangeInput(BaseModel):
    number: str
    source: Literal["webhook", "poll", "cli", "api"] = "webhook"


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class ApprovalInput(BaseModel):
    """Payload of the `approve` / `reject` signals."""

    approver: str
    comments: str = ""


class DecideInput(BaseModel):
    """Payload of the `decide` update: validated before it is accepted."""

    approver: str
    decision: Decision
    comments: str = ""


class GateStatus(StrEnum):
    NOT_REQUIRED = "not_required"
    PENDING = "pending"  # the gate will open once the runbook is known
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


class GateState(BaseModel):
    status: GateStatus = GateStatus.PENDING
    approver: str = ""
    comments: str = ""
    opened_at: datetime | None = None
    decided_at: datetime | None = None
    deadline: datetime | None = None


class StepOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StepRecord(BaseModel):
    name: str
    outcome: StepOutcome
    started_at: datetime
    ended_at: datetime | None = None
    detail: str = ""
    # Of a failed step, for the incident it opens: the activity's error type and how many attempts it made (0 unknown).
    activity: str = ""
    error_type: str = ""
    attempts: int = 0


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


class ChangeOutcome(StrEnum):
    SUCCESSFUL = "successful"
    UNSUCCESSFUL = "unsuccessful"
    NO_RUNBOOK = "no_runbook"
    REJECTED = "rejected"
    APPROVAL_TIMED_OUT = "approval_timed_out"


class ChangeResult(BaseModel):
    number: str
    outcome: ChangeOutcome
    close_code: str = ""
    close_notes: str = ""
    runbook: str = ""
    steps: list[StepRecord] = []
    failed_step: str = ""
    error: str = ""
    incident: str = ""  # the incident a failure opened (number)


class Progress(BaseModel):
    done: int = 0
    total: int = 0


class StepProgress(BaseModel):
    """What every status query says about steps: the current one, counters, and the steps done with their times."""

    step: str = ""
    progress: Progress = Progress()
    steps: list[StepRecord] = []

    def record_step(self, record: StepRecord) -> None:
        self.steps.append(record)
        self.step = record.name
        if record.outcome == StepOutcome.SUCCEEDED:
            self.progress.done += 1


class ChangeStatus(StepProgress):
    """Answer of the `status` query on a change workflow."""

    number: str
    phase: str  # loading | resolving | starting | awaiting_approval | running | closing | done
    runbook: str = ""
    ticket_state: str = ""
    gate: GateState = GateState()
    result: ChangeResult | None = None


class RunbookStatus(StepProgress):
    runbook: str
    result: RunbookResult | None = None


class FlowRun(BaseModel):
    """Input of FlowRunWorkflow: a runbook started through `POST /api/flows/{flow}/run`."""

    flow: str
    inputs: dict[str, str] = {}
    callback_url: str = ""


class PollInput(BaseModel):
    types: list[str] = ["standard"]
    page_size: int = 200


class PollResult(BaseModel):
    found: int
    started: list[str] = []
    already_known: list[str] = []


# -- activity inputs/outputs (workflows call activities by name; they never import activities/) ---------------------
class ResolveInput(BaseModel):
    template: str = ""
    category: str = ""


class FlowName(BaseModel):
    flow: str


class RunbookChoice(BaseModel):
    runbook: Runbook | None = None


class BeginInput(BaseModel):
    ticket: ChangeTicket
    runbook: str


class BeginResult(BaseModel):
    state: str
    execution_url: str  # built in the worker from CHANGELOOP_UI_URL, which workflows cannot read


class NoteInput(BaseModel):
    table: str = "change_request"
    sys_id: str
    text: str


class CloseInput(BaseModel):
    ticket: ChangeTicket
    close_code: str
    close_notes: str


class StepInput(BaseModel):
    step: Step
    variables: dict[str, str] = {}


class StepOutput(BaseModel):
    output: str = ""


class CallbackInput(BaseModel):
    url: str
    payload: dict[str, object]


class PollQuery(BaseModel):
    types: list[str] = ["standard"]
    page_size: int = 200


class StartChangesInput(BaseModel):
    numbers: list[str]
    source: Literal["webhook", "poll", "cli", "api"] = "poll"


class Act:
    """Activity names, the only thing workflows know of activities/."""

    LOAD_CHANGE = "load_change"
    RESOLVE_RUNBOOK = "resolve_runbook"
    RESOLVE_FLOW = "resolve_flow"
    BEGIN_IMPLEMENTATION = "begin_implementation"
    ADD_WORK_NOTE = "add_work_note"
    CLOSE_CHANGE = "close_change"
    RUN_STEP = "run_step"
    POST_CALLBACK = "post_callback"
    FIND_APPROVED_CHANGES = "find_approved_changes"
    START_CHANGE_WORKFLOWS = "start_change_workflows"
