"""The one table of activity calls: each activity's name, its result type, its timeouts and its retry policy.

Workflows call activities by name through these specs (`await calls.LOAD_CHANGE(number)`), and activities register
under the same names (`@activity.defn(name=calls.LOAD_CHANGE.name)`): a workflow module never imports activities/,
so it never pulls httpx, boto3 or subprocess into the workflow sandbox (docs/architecture.md, "Why activities are
called by name"). A call site may narrow a spec (a step's own timeout, a host's task queue) but never restates it.

Retry policies are built from the error classes activities raise: a ServiceNow error a retry cannot fix is never
retried (its class says `retryable = False`), and every other refusal that no retry can fix (an unknown change, an
unsafe value, a host that said no) is raised as a non-retryable ApplicationError where it is known.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Generic, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from servicenow import errors as servicenow_errors
    from workflows.change.models import (
        BeginInput,
        BeginResult,
        ChangeTicket,
        CloseInput,
        NoteInput,
        ScheduleFinding,
        ScheduleQuery,
        WatchPolicy,
    )
    from workflows.evidence.models import (
        AttachInput,
        AttachResult,
        ChangeClosedInput,
        CloseTaskInput,
        OpenTaskInput,
        TaskRef,
    )
    from workflows.flow.models import CallbackInput, FlowName
    from workflows.gate.models import (
        ApprovalFinding,
        ApprovalQuery,
        ApproverAnswer,
        ApproverQuery,
        GatePolicy,
        Verification,
        VerifyInput,
    )
    from workflows.incident.models import (
        Impact,
        ImpactInput,
        IncidentPolicy,
        IncidentRef,
        OpenIncidentInput,
        PolicyInput,
        ResolveRecordInput,
        SlackInput,
    )
    from workflows.poll.models import PollQuery, PollResult, StartChangesInput
    from workflows.reconcile.models import (
        ApplyRequest,
        BatchOutcome,
        ChunkRequest,
        ConfigRef,
        DeltaBatch,
        DiffReport,
        DiffRequest,
        PipelineWorker,
        PullReport,
        PullRequest,
        ReconcilePlan,
        ReconcileSummary,
        RecordChunk,
        ScanReport,
        ScanRequest,
        SiteScan,
    )
    from workflows.runbook.models import ResolveInput, RunbookChoice, RunbookPlan, RunbookRef, StepInput, StepOutput
    from workflows.site.models import SiteQuery, SiteRoute
    from workflows.wave.models import (
        HostOpInput,
        HostOpResult,
        PageInput,
        PlanInput,
        WatchInput,
        WatchResult,
        WavePage,
        WavePlan,
    )

Arg = TypeVar("Arg")
Result = TypeVar("Result")


def _never_retried(*classes: type[servicenow_errors.ServiceNowError]) -> list[str]:
    """The error types (class names, as activities/errors.py raises them) that no retry can fix."""
    return [cls.__name__ for cls in classes if not cls.retryable]


SERVICENOW_NEVER_RETRIED = _never_retried(
    servicenow_errors.BadRequest,
    servicenow_errors.NotAuthenticated,
    servicenow_errors.Forbidden,
    servicenow_errors.NotFound,
)
# ServiceNow reads and writes: retried until they succeed, at most every two minutes, so an instance that is down for
# an hour delays a change by an hour and fails nothing. A 429 waits its Retry-After (activities/errors.py).
SERVICENOW = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=SERVICENOW_NEVER_RETRIED,
)
# The scheduled poll: the next schedule tick retries anyway, so a poll gives up after a bounded effort.
POLL = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1), maximum_attempts=10)
# A caller's callback receiver: down for a while is fine (about an hour of attempts), refused is final.
CALLBACK = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5), maximum_attempts=20
)
# Temporal's own API (the wave watching its children): retried until the server answers again.
TEMPORAL = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# Slack is a courtesy copy: a few attempts, then the status says it failed.
SLACK = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1), maximum_attempts=5)


def attempts(count: int) -> RetryPolicy:
    """A runbook step's or a host operation's own retry budget (`retries` in the registry, plus the first try)."""
    return RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=count)


@dataclass(frozen=True)
class Call(Generic[Arg, Result]):
    name: str
    result: type[Result] | None
    timeout: timedelta  # start_to_close: one attempt's budget
    retry: RetryPolicy
    heartbeat: timedelta | None = None
    total: timedelta | None = None  # schedule_to_close: every attempt and the waits between them together
    # The SDK's default TRY_CANCEL; WAIT_CANCELLATION_COMPLETED waits until the cancelled activity has stopped.
    cancellation: workflow.ActivityCancellationType = workflow.ActivityCancellationType.TRY_CANCEL
    # A call sent to one worker's own queue (workflows/reconcile/): unpicked for this long means that worker is gone.
    schedule_to_start: timedelta | None = None

    def narrowed(self, **changes: Any) -> Call[Arg, Result]:
        """This call with a call site's own timeout, heartbeat or retry budget (a step's, a host's, a source's)."""
        return replace(self, **changes)

    async def __call__(self, arg: Arg, *, task_queue: str | None = None) -> Result:
        """Run the activity; `task_queue` sends it to a site worker (workflows/site/models.py), None = this queue."""
        result: Result = await workflow.execute_activity(
            self.name,
            args=[] if arg is None else [arg],
            result_type=self.result,
            task_queue=task_queue or None,
            start_to_close_timeout=self.timeout,
            schedule_to_close_timeout=self.total,
            heartbeat_timeout=self.heartbeat,
            schedule_to_start_timeout=self.schedule_to_start,
            retry_policy=self.retry,
            cancellation_type=self.cancellation,
        )
        return result


SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)

# -- change tickets (activities/change/tickets.py) ----------------------------------------------------------------------
LOAD_CHANGE: Call[str, ChangeTicket] = Call("load_change", ChangeTicket, MINUTE, SERVICENOW)
BEGIN_IMPLEMENTATION: Call[BeginInput, BeginResult] = Call("begin_implementation", BeginResult, MINUTE, SERVICENOW)
ADD_WORK_NOTE: Call[NoteInput, None] = Call("add_work_note", None, MINUTE, SERVICENOW)
CLOSE_CHANGE: Call[CloseInput, str] = Call("close_change", str, MINUTE, SERVICENOW)
# The ticket watch (workflows/change/watch.py): the ticket as it is now (by sys_id), the watch's settings, and whether
# ServiceNow's blackout and maintenance schedules let the change run now. A watch narrows READ_TICKET to a few
# attempts: an instance that is down must not stall the run (the next poll reads again).
READ_TICKET: Call[str, ChangeTicket] = Call("read_ticket", ChangeTicket, MINUTE, SERVICENOW)
WATCH_POLICY: Call[None, WatchPolicy] = Call("watch_policy", WatchPolicy, MINUTE, SERVICENOW)
CHECK_SCHEDULES: Call[ScheduleQuery, ScheduleFinding] = Call(
    "check_schedules", ScheduleFinding, 2 * MINUTE, SERVICENOW, MINUTE
)

# -- evidence on the ticket (activities/evidence/): each write looks its natural key up first, so it is retried freely --
ATTACH_FILE: Call[AttachInput, AttachResult] = Call("attach_file", AttachResult, 2 * MINUTE, SERVICENOW)
OPEN_CHANGE_TASK: Call[OpenTaskInput, TaskRef] = Call("open_change_task", TaskRef, MINUTE, SERVICENOW)
CLOSE_CHANGE_TASK: Call[CloseTaskInput, TaskRef] = Call("close_change_task", TaskRef, MINUTE, SERVICENOW)
# The Slack confirmation of a closed change (CHANGELOOP_SLACK_CHANGE_CLOSED): a courtesy, like the incident's post.
NOTIFY_CHANGE_CLOSED: Call[ChangeClosedInput, str] = Call("notify_change_closed", str, timedelta(seconds=30), SLACK)

# -- runbooks and flows (activities/runbook/, activities/flow/) -------------------------------------------------------
RESOLVE_RUNBOOK: Call[ResolveInput, RunbookChoice] = Call("resolve_runbook", RunbookChoice, MINUTE, SERVICENOW)
RESOLVE_FLOW: Call[FlowName, RunbookChoice] = Call("resolve_flow", RunbookChoice, MINUTE, SERVICENOW)
# A run's entry by reference (name + digest), as the worker's registry has it now: refused (RegistryChanged) when
# unknown or changed since the run resolved it.
RESOLVE_RUN: Call[RunbookRef, RunbookPlan] = Call("resolve_runbook_entry", RunbookPlan, MINUTE, SERVICENOW)
# Narrowed per step: the step's timeout, heartbeat and retries come from the registry.
RUN_STEP: Call[StepInput, StepOutput] = Call("run_step", StepOutput, timedelta(minutes=5), attempts(3), 30 * SECOND)
POST_CALLBACK: Call[CallbackInput, int] = Call("post_callback", int, MINUTE, CALLBACK)

# -- the approval gate (activities/gate/): the gate's settings, a shim decision's signature, ServiceNow's approvals --
GATE_POLICY: Call[None, GatePolicy] = Call("gate_policy", GatePolicy, MINUTE, SERVICENOW)
VERIFY_DECISION: Call[VerifyInput, Verification] = Call("verify_decision", Verification, MINUTE, SERVICENOW)
# A waiting gate narrows these to a few attempts: an instance that is down must not hold the gate's own deadline.
CHECK_APPROVER: Call[ApproverQuery, ApproverAnswer] = Call("check_approver", ApproverAnswer, MINUTE, SERVICENOW)
CHECK_APPROVALS: Call[ApprovalQuery, ApprovalFinding] = Call(
    "check_servicenow_approvals", ApprovalFinding, MINUTE, SERVICENOW
)

# -- the scheduled poll (activities/poll/intake.py) -------------------------------------------------------------------
FIND_APPROVED_CHANGES: Call[PollQuery, list[str]] = Call("find_approved_changes", list[str], 5 * MINUTE, POLL, MINUTE)
START_CHANGE_WORKFLOWS: Call[StartChangesInput, PollResult] = Call(
    "start_change_workflows", PollResult, 5 * MINUTE, POLL, MINUTE
)

# -- sites (activities/site/queues.py): the central worker answers which queue a CI's host operations use -----------
RESOLVE_SITE: Call[SiteQuery, SiteRoute] = Call("resolve_site", SiteRoute, MINUTE, SERVICENOW)

# -- incidents (activities/incident/records.py) ------------------------------------------------------------------------
INCIDENT_POLICY: Call[PolicyInput, IncidentPolicy] = Call("incident_policy", IncidentPolicy, MINUTE, SERVICENOW)
INCIDENT_IMPACT: Call[ImpactInput, Impact] = Call("incident_impact", Impact, MINUTE, SERVICENOW)
# Narrowed to the policy's create_timeout: shorter than the instance's worst hang, and the retry finds the record.
OPEN_INCIDENT: Call[OpenIncidentInput, IncidentRef] = Call("open_incident_record", IncidentRef, MINUTE, SERVICENOW)
RESOLVE_INCIDENT: Call[ResolveRecordInput, str] = Call("resolve_incident_record", str, MINUTE, SERVICENOW)
NOTIFY_SLACK: Call[SlackInput, str] = Call("notify_slack", str, timedelta(seconds=30), SLACK)

# -- patch waves (activities/wave/) ------------------------------------------------------------------------------------
PLAN_WAVE: Call[PlanInput, WavePlan] = Call("plan_wave", WavePlan, MINUTE, SERVICENOW)
LOAD_WAVE_PAGE: Call[PageInput, WavePage] = Call("load_wave_page", WavePage, 5 * MINUTE, SERVICENOW, MINUTE)
# Host operations are narrowed per wave (op_timeout, heartbeat_timeout, op_retries) and sent to the CI's site queue.
HOST_SNAPSHOT: Call[HostOpInput, HostOpResult] = Call(
    "host_snapshot", HostOpResult, 30 * MINUTE, attempts(4), 30 * SECOND
)
HOST_PATCH: Call[HostOpInput, HostOpResult] = replace(HOST_SNAPSHOT, name="host_patch")
HOST_HEALTH_CHECK: Call[HostOpInput, HostOpResult] = replace(HOST_SNAPSHOT, name="host_health_check")
HOST_ROLLBACK: Call[HostOpInput, HostOpResult] = replace(HOST_SNAPSHOT, name="host_rollback")
HOST_RUN_ACTION: Call[HostOpInput, HostOpResult] = replace(HOST_SNAPSHOT, name="host_run_action")
# The host workflows a wave run inherited through continue-as-new (activities/wave/children.py): answers within
# WatchInput.wait (5 min), heartbeating while it long-polls their close events.
WATCH_HOSTS: Call[WatchInput, WatchResult] = Call("watch_hosts", WatchResult, 10 * MINUTE, TEMPORAL, 30 * SECOND)

# -- reconciliation (activities/reconcile/pipeline.py): every stage of the pipeline is retried like a ServiceNow call -
# The run's config by name, as the worker reads it: sources by name, the digest every later activity checks.
RESOLVE_RECONCILE: Call[ConfigRef, ReconcilePlan] = Call(
    "reconcile_resolve_config", ReconcilePlan, MINUTE, SERVICENOW, MINUTE
)
# Narrowed per source: its timeout and attempts come from the reconcile config.
SCAN_SOURCE: Call[ScanRequest, ScanReport] = Call("reconcile_scan_source", ScanReport, 10 * MINUTE, attempts(3), MINUTE)
PULL_CMDB: Call[PullRequest, PullReport] = Call("reconcile_pull_cmdb", PullReport, 30 * MINUTE, SERVICENOW, MINUTE)
DIFF: Call[DiffRequest, DiffReport] = Call("reconcile_diff", DiffReport, 30 * MINUTE, SERVICENOW, MINUTE)
LOAD_BATCH: Call[int, DeltaBatch] = Call("reconcile_load_batch", DeltaBatch, MINUTE, SERVICENOW, MINUTE)
APPLY_BATCH: Call[ApplyRequest, BatchOutcome] = Call(
    "reconcile_apply_batch", BatchOutcome, 30 * MINUTE, SERVICENOW, MINUTE
)
CLEAN_UP: Call[None, None] = Call("reconcile_clean_up", None, MINUTE, SERVICENOW, MINUTE)
# The pipeline on one worker: the first call (any worker of the shared queue) answers that worker's own queue, where
# the stages above that read or write the run's files are sent, narrowed to the config's `worker_lost_after`.
CLAIM_PIPELINE_WORKER: Call[None, PipelineWorker] = Call(
    "reconcile_claim_pipeline_worker", PipelineWorker, MINUTE, SERVICENOW
)
STORE_SCAN_CHUNK: Call[RecordChunk, int] = Call("reconcile_store_scan_chunk", int, MINUTE, SERVICENOW, MINUTE)
# A site-bound source, on its site's queue: the scan (narrowed per source like SCAN_SOURCE), then the rest of its
# records from the site worker's own queue, which drops them once fetched.
SCAN_AT_SITE: Call[ScanRequest, SiteScan] = Call("reconcile_scan_at_site", SiteScan, 10 * MINUTE, attempts(3), MINUTE)
FETCH_SCAN_CHUNK: Call[ChunkRequest, RecordChunk] = Call(
    "reconcile_fetch_scan_chunk", RecordChunk, MINUTE, SERVICENOW, MINUTE
)
DROP_SITE_SCAN: Call[str, None] = Call("reconcile_drop_site_scan", None, MINUTE, attempts(2), MINUTE)
POST_SUMMARY: Call[ReconcileSummary, str] = Call("reconcile_post_summary", str, timedelta(seconds=30), SLACK, MINUTE)
