"""What travels through Temporal on the incident path: the failure report, the incident workflow's input, its
messages and status, and the activities' inputs and answers.

A failed workflow describes its own failure (a `FailureReport`); `OpenIncidentWorkflow` turns that into one
ServiceNow incident routed by the CMDB. Nothing here carries a credential: the description is composed (and
scrubbed) inside an activity in the worker.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

# -- names shared by starters and workflows ----------------------------------------------------------------------------
INCIDENT_WORKFLOW = "OpenIncidentWorkflow"
SIGNAL_RESOLVE = "resolve"  # signal and update share the name: `temporal workflow signal|update --name resolve`
UPDATE_RESOLVE = "resolve"
SIGNAL_INCIDENT_OPENED = "incident_opened"  # incident workflow -> failed workflow: the number, for its status
SIGNAL_REPORT_TO = "report_to"  # a second report of the same failure asks the running incident workflow for it
QUERY_INCIDENT = "incident"  # on a failed workflow: the incident its failure opened
CORRELATION_DISPLAY = "changeloop"

# Error types of a refused `resolve` update.
RESOLVE_NO_RESOLVER = "EmptyResolver"
RESOLVE_WRONG_INCIDENT = "WrongIncident"
RESOLVE_NOT_OPEN = "IncidentNotOpen"

# workflow.patched id: failures before this code existed replay without an incident.
INCIDENT_PATCH = "incident-on-failure"
# workflow.patched id: incidents opened before it carry no attachment.
INCIDENT_OUTPUT_PATCH = "incident-output-attached"


def incident_workflow_id(failed_workflow_id: str) -> str:
    return f"incident-for-{failed_workflow_id}"


# -- the failure, as the failed workflow reports it --------------------------------------------------------------------
class FailureReport(BaseModel):
    """What failed and what it touched. A workflow may build its own (a `failure_report(error)` method); the
    interceptor builds a generic one from the error chain and the search attributes otherwise."""

    production: bool | None = None  # None: the worker's configured default decides
    step: str = ""
    activity: str = ""
    error_message: str = ""
    error_type: str = ""
    attempts: int = 0  # 0 = unknown
    log_lines: list[str] = []
    # The failing step's output (scrubbed and capped by the step): attached to the incident as a file.
    output: str = ""
    change_number: str = ""
    change_sys_id: str = ""
    ci_sys_ids: list[str] = []  # the change's cmdb_ci, ...
    ci_names: list[str] = []  # ... and the runbook's target hosts, by name


class IncidentRequest(FailureReport):
    """Input of OpenIncidentWorkflow."""

    failed_workflow_id: str
    failed_run_id: str = ""
    workflow_type: str = ""
    report_to: str = ""  # workflow ID that gets `incident_opened` (the failed workflow)


# -- status and messages -----------------------------------------------------------------------------------------------
class IncidentRef(BaseModel):
    """The incident a failure opened; what the failed workflow, the change ticket and Slack learn."""

    number: str = ""  # "" = no incident (not production)
    sys_id: str = ""
    url: str = ""
    workflow_id: str = ""
    created: bool = False  # False: an open incident for this failure already existed
    assignment_group: str = ""  # display name
    impact: str = ""
    urgency: str = ""


class IncidentPhase(StrEnum):
    OPENING = "opening"
    OPEN = "open"  # waiting for `resolve`
    RESOLVING = "resolving"
    RESOLVED = "resolved"
    NOT_OPENED = "not_opened"  # not a production workflow
    WAIT_EXPIRED = "wait_expired"  # nobody resolved it through changeloop in time; the incident stays open


class ResolveIncident(BaseModel):
    """Payload of the `resolve` signal and update."""

    resolved_by: str
    number: str = ""  # when given, must be this workflow's incident (a guard against a mistyped correlation)
    close_code: str = "Solved (Permanently)"
    close_notes: str = ""
    fixed_by: str = ""  # the execution (workflow ID) or change that fixed it


class IncidentStatus(BaseModel):
    """Answer of the `status` query on OpenIncidentWorkflow."""

    failed_workflow_id: str
    phase: IncidentPhase = IncidentPhase.OPENING
    incident: IncidentRef | None = None
    reason: str = ""  # why not opened / why the wait ended
    slack: str = ""  # sent | not configured | failed: <why>
    attachment: str = ""  # the failing step's output on the incident: "<file name> (<bytes> bytes)", or why not
    opened_at: datetime | None = None
    resolve_by: datetime | None = None  # when the workflow stops waiting
    resolved_at: datetime | None = None
    resolution: ResolveIncident | None = None
    close_notes: str = ""


# -- activity inputs and answers ---------------------------------------------------------------------------------------
class PolicyInput(BaseModel):
    workflow_type: str
    production: bool | None = None


class IncidentPolicy(BaseModel):
    """The worker's incident configuration, read once per incident and recorded in history."""

    open: bool
    reason: str = ""
    resolve_wait: timedelta = timedelta(days=30)
    create_timeout: timedelta = timedelta(seconds=10)
    log_lines: int = Field(default=20, ge=1)


class ImpactInput(BaseModel):
    ci_sys_ids: list[str] = []
    ci_names: list[str] = []
    change_number: str = ""
    change_sys_id: str = ""


class ImpactedCi(BaseModel):
    sys_id: str
    name: str
    sys_class_name: str = ""
    criticality: str = ""
    relation: str = ""  # "target" | "application of <name>"


class Impact(BaseModel):
    """The impacted CIs and the routing of the most critical one."""

    cis: list[ImpactedCi] = []
    cmdb_ci: str = ""  # sys_id written to the incident: the CI the failed work acted on
    routed_by: str = ""  # name of the CI whose criticality and group decided
    assignment_group: str = ""  # sys_id
    assignment_group_name: str = ""
    group_source: str = ""
    impact: str = "3"
    urgency: str = "3"
    criticality: str = ""
    change_sys_id: str = ""


class OpenIncidentInput(BaseModel):
    request: IncidentRequest
    impact: Impact
    log_lines: int = 20


class ResolveRecordInput(BaseModel):
    sys_id: str
    close_code: str
    close_notes: str


class SlackInput(BaseModel):
    incident: IncidentRef
    failed_workflow_id: str
    workflow_type: str = ""
    step: str = ""
    failed_run_id: str = ""
