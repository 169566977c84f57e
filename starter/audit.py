"""The audit export of one change: both sides on one page, cross-referenced - what ServiceNow holds and what ran.

ServiceNow's side: the change's fields and journal (work notes, comments), the incidents its executions opened
(`correlation_id` = a workflow ID of the change), its change tasks and the attachments on all of them. Temporal's
side: every execution of the change (`ChangeNumber = '<number>'`: the change workflow, its runbook or wave, the
wave's hosts, the incident), each with its history read back - every activity with its subject (a step's name, a
host), times, attempts and outcome; every signal and update with its sender's identity - and the `status` query's
approval gate as the workflow holds it (`proof`, `approver`, `decided_at` ... whatever it carries).

`build_audit` assembles an `AuditReport` (the JSON answer); `to_markdown` writes the page, which the CLI also shows
in the terminal through rich. `changeloop audit` and `GET /api/executions/{id}/audit` both use this module.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from config.settings import Settings
from servicenow import attachments
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from servicenow.records import display, value
from workflows import search_attributes as sa
from workflows.change.models import change_workflow_id
from workflows.status import QUERY_STATUS

CHANGE_NUMBER = re.compile(r"^[A-Z]{2,10}[0-9]{4,12}$")
QUERY_TIMEOUT = timedelta(seconds=3)
# Host workflows of a wave are listed (status, times, link) but their histories are not read: a wave has thousands.
DETAILED_LIMIT = 50
CHANGE_FIELDS = [
    "number",
    "short_description",
    "type",
    "state",
    "approval",
    "std_change_producer_version",
    "category",
    "cmdb_ci",
    "assignment_group",
    "requested_by",
    "opened_by",
    "opened_at",
    "start_date",
    "end_date",
    "closed_at",
    "close_code",
    "close_notes",
    "correlation_id",
    "correlation_display",
]
MESSAGE_FIELDS = ("approver", "decision", "comments")
# The identity the history records for a signal one workflow sent another.
WORKFLOW_SENDER = "history-service"


class AuditError(LookupError):
    """No such change, or an execution that belongs to no change."""


# -- the report ------------------------------------------------------------------------------------------------------
class Link(BaseModel):
    label: str
    url: str = ""


class JournalEntry(BaseModel):
    at: str
    by: str
    kind: str  # work_notes | comments
    text: str


class Ticket(BaseModel):
    number: str
    sys_id: str
    url: str
    fields: dict[str, str]  # field -> display value (the stored value when it differs, in brackets)
    correlation_id: str = ""
    journal: list[JournalEntry] = []


class ActivityRun(BaseModel):
    """One activity of an execution, from its history: scheduled, last attempt started, closed."""

    event_id: int
    activity: str
    subject: str = ""  # the step's name, the host, ...
    scheduled_at: str
    started_at: str = ""
    ended_at: str = ""
    attempts: int = 0
    outcome: str = "running"  # completed | failed | timed_out | canceled | running
    error: str = ""


class Message(BaseModel):
    """A signal or an update the execution received, from its history."""

    event_id: int
    at: str
    kind: str  # signal | update
    name: str
    identity: str = ""  # the client that sent it, as the Temporal frontend recorded it
    fields: dict[str, str] = {}  # approver, decision, comments


class Execution(BaseModel):
    workflow_id: str
    run_id: str
    workflow_type: str
    status: str
    started_at: str = ""
    closed_at: str = ""
    parent: str = ""
    url: str
    detailed: bool = True  # False: listed only (a wave's host), its history was not read
    activities: list[ActivityRun] = []
    messages: list[Message] = []
    children: list[str] = []
    gate: dict[str, Any] | None = None  # the `status` query's gate, as the workflow holds it
    steps: list[dict[str, Any]] = []  # the `status` query's (or the result's) step records
    outcome: str = ""
    error: str = ""


class Approval(BaseModel):
    execution: str
    status: str
    approver: str = ""
    decided_at: str = ""
    comments: str = ""
    proof: str = ""  # how the decision was proven: the gate's own proof, and the history's record of the message
    gate: dict[str, Any] = {}
    messages: list[Message] = []


class Record(BaseModel):
    """An incident or a change task of the change."""

    table: str
    number: str
    sys_id: str
    url: str
    state: str
    short_description: str = ""
    correlation_id: str = ""
    execution: str = ""  # the execution the correlation_id names
    step: str = ""  # a task's step (after the ':' of its key)
    assignment_group: str = ""
    close_code: str = ""
    close_notes: str = ""
    opened_at: str = ""
    closed_at: str = ""


class AttachmentEntry(BaseModel):
    on: str  # the record's number
    table: str
    file_name: str
    size_bytes: int
    content_type: str
    created_at: str
    created_by: str
    url: str
    sys_id: str


class CrossReference(BaseModel):
    servicenow: str  # a record and field
    temporal: str  # an execution (and step)
    agrees: bool
    note: str = ""


class AuditReport(BaseModel):
    change: str
    generated_at: str
    servicenow_url: str
    namespace: str
    ticket: Ticket
    executions: list[Execution] = []
    approvals: list[Approval] = []
    incidents: list[Record] = []
    tasks: list[Record] = []
    attachments: list[AttachmentEntry] = []
    cross_references: list[CrossReference] = []


# -- assembly --------------------------------------------------------------------------------------------------------
def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _event_time(event: HistoryEvent) -> str:
    return _when(event.event_time.ToDatetime(tzinfo=UTC))


def change_of(workflow_id: str, execution: WorkflowExecution | None = None) -> str | None:
    """The change an execution belongs to: its ChangeNumber search attribute, else its `change-<number>` ID."""
    if execution is not None:
        number = execution.typed_search_attributes.get(sa.CHANGE_NUMBER)
        if number:
            return number
    match = re.match(r"^change-([A-Z]{2,10}[0-9]{4,12})$", workflow_id)
    return match.group(1) if match else None


class Auditor:
    """Reads one change from ServiceNow and Temporal into an AuditReport."""

    def __init__(self, settings: Settings, client: Client, sn: ServiceNowClient) -> None:
        self.settings, self.client, self.sn = settings, client, sn

    async def report(self, number: str) -> AuditReport:
        if not CHANGE_NUMBER.match(number):
            raise AuditError(f"{number!r} is not a change number")
        ticket = await self._ticket(number)
        executions = await self._executions(number, ticket)
        ids = sorted(
            {e.workflow_id for e in executions} | ({ticket.correlation_id} if ticket.correlation_id else set())
        )
        incidents = await self._records("incident", Query().in_("correlation_id", ids), ids) if ids else []
        tasks = await self._records("change_task", Query().eq("change_request", ticket.sys_id), ids)
        files = await self._attachments([("change_request", ticket.sys_id, ticket.number)], incidents, tasks)
        report = AuditReport(
            change=number,
            generated_at=_when(datetime.now(UTC)),
            servicenow_url=self.settings.servicenow_url,
            namespace=self.settings.temporal_namespace,
            ticket=ticket,
            executions=executions,
            approvals=[a for e in executions if (a := _approval(e)) is not None],
            incidents=incidents,
            tasks=tasks,
            attachments=files,
        )
        report.cross_references = _cross_references(report)
        return report

    # -- ServiceNow ------------------------------------------------------------------------------------------------
    async def _ticket(self, number: str) -> Ticket:
        record = await self.sn.first(
            "change_request", Query().eq("number", number), fields=["sys_id", *CHANGE_FIELDS], display_value="all"
        )
        if record is None:
            raise AuditError(f"no change {number} in {self.settings.servicenow_url}")
        sys_id = value(record, "sys_id")
        fields = {}
        for field in CHANGE_FIELDS:
            shown, stored = display(record, field), value(record, field)
            if shown or stored:
                fields[field] = (
                    shown if shown == stored or not stored or field.endswith("_notes") else f"{shown} [{stored}]"
                )
        journal = await self.sn.list(
            "sys_journal_field",
            Query().eq("element_id", sys_id).in_("element", ["work_notes", "comments"]).order_by("sys_created_on"),
            fields=["element", "value", "sys_created_on", "sys_created_by"],
        )
        return Ticket(
            number=number,
            sys_id=sys_id,
            url=self.sn.record_link("change_request", sys_id),
            fields=fields,
            correlation_id=value(record, "correlation_id"),
            journal=[
                JournalEntry(
                    at=str(entry.get("sys_created_on", "")),
                    by=str(entry.get("sys_created_by", "")),
                    kind=str(entry.get("element", "")),
                    text=str(entry.get("value", "")),
                )
                for entry in journal
            ],
        )

    async def _records(self, table: str, query: Query, execution_ids: Sequence[str]) -> list[Record]:
        fields = [
            "sys_id",
            "number",
            "state",
            "short_description",
            "correlation_id",
            "assignment_group",
            "close_code",
            "close_notes",
            "opened_at",
            "closed_at",
        ]
        rows = await self.sn.list(table, query.order_by("number"), fields=fields, display_value="all")
        records = []
        for row in rows:
            correlation = value(row, "correlation_id")
            execution, _, step = correlation.partition(":")
            records.append(
                Record(
                    table=table,
                    number=value(row, "number"),
                    sys_id=value(row, "sys_id"),
                    url=self.sn.record_link(table, value(row, "sys_id")),
                    state=display(row, "state"),
                    short_description=value(row, "short_description"),
                    correlation_id=correlation,
                    execution=execution if execution in execution_ids else "",
                    step=step if execution in execution_ids else "",
                    assignment_group=display(row, "assignment_group"),
                    close_code=value(row, "close_code"),
                    close_notes=value(row, "close_notes"),
                    opened_at=value(row, "opened_at"),
                    closed_at=value(row, "closed_at"),
                )
            )
        return records

    async def _attachments(
        self, owners: list[tuple[str, str, str]], incidents: list[Record], tasks: list[Record]
    ) -> list[AttachmentEntry]:
        owners = owners + [(r.table, r.sys_id, r.number) for r in [*incidents, *tasks]]
        numbers = {sys_id: number for _, sys_id, number in owners}
        found = await attachments.search(
            self.sn, Query().in_("table_sys_id", sorted(numbers)).order_by("sys_created_on")
        )
        return [
            AttachmentEntry(
                on=numbers.get(a.table_sys_id, a.table_sys_id),
                table=a.table_name,
                file_name=a.file_name,
                size_bytes=a.size,
                content_type=a.content_type,
                created_at=a.sys_created_on,
                created_by=a.created_by_name,
                url=a.download_link,
                sys_id=a.sys_id,
            )
            for a in found
        ]

    # -- Temporal --------------------------------------------------------------------------------------------------
    async def _executions(self, number: str, ticket: Ticket) -> list[Execution]:
        listed: dict[tuple[str, str], WorkflowExecution] = {}
        async for execution in self.client.list_workflows(f"ChangeNumber = '{number}'"):
            listed[(execution.id, execution.run_id)] = execution
        # The change's own execution, even when visibility has not caught up (or it predates the search attribute).
        for workflow_id in {change_workflow_id(number), ticket.correlation_id} - {""}:
            if not any(key[0] == workflow_id for key in listed):
                try:
                    described = await self.client.get_workflow_handle(workflow_id).describe()
                except RPCError:
                    continue
                listed[(described.id, described.run_id)] = described
        read: dict[tuple[str, str], Execution] = {}
        while pending := [e for key, e in listed.items() if key not in read]:
            budget = DETAILED_LIMIT - sum(1 for e in read.values() if e.detailed)
            chosen = {(e.id, e.run_id) for e in pending if not e.id.startswith("patch-")}
            chosen = set(sorted(chosen)[: max(0, budget)])
            done = await asyncio.gather(*(self._execution(e, (e.id, e.run_id) in chosen) for e in pending))
            read |= {(e.workflow_id, e.run_id): e for e in done}
            # A child the history names but visibility does not list yet (it lags behind the history).
            for child in {c for e in done for c in e.children} - {key[0] for key in listed}:
                try:
                    described = await self.client.get_workflow_handle(child).describe()
                except RPCError:
                    continue
                listed[(described.id, described.run_id)] = described
        return sorted(read.values(), key=lambda e: (e.started_at, e.workflow_id))

    async def _execution(self, listed: WorkflowExecution, detailed: bool) -> Execution:
        execution = Execution(
            workflow_id=listed.id,
            run_id=listed.run_id,
            workflow_type=listed.workflow_type,
            status=listed.status.name if listed.status else "UNKNOWN",
            started_at=_when(listed.start_time),
            closed_at=_when(listed.close_time),
            parent=listed.parent_id or "",
            url=self.settings.execution_url(listed.id, listed.run_id),
            detailed=detailed,
        )
        if not detailed:
            return execution
        handle = self.client.get_workflow_handle(listed.id, run_id=listed.run_id)
        history = await handle.fetch_history()
        await self._read_history(execution, list(history.events))
        status = await self._status(listed.id, listed.run_id)
        if status is not None:
            gate = status.get("gate")
            execution.gate = gate if isinstance(gate, dict) else None
            if isinstance(status.get("steps"), list) and status["steps"]:
                execution.steps = status["steps"]
        return execution

    async def _status(self, workflow_id: str, run_id: str) -> dict[str, Any] | None:
        """The workflow's own view; None when no worker answers (history alone still says what ran)."""
        handle = self.client.get_workflow_handle(workflow_id, run_id=run_id)
        try:
            answer = await asyncio.wait_for(
                handle.query(QUERY_STATUS, rpc_timeout=QUERY_TIMEOUT), QUERY_TIMEOUT.total_seconds() + 1
            )
        except Exception:  # no worker, no handler, not replayable: the audit degrades, it does not fail
            return None
        return answer if isinstance(answer, dict) else None

    async def _decode(self, payloads: Payloads) -> list[Any]:
        if not payloads.payloads:
            return []
        try:
            return list(await self.client.data_converter.decode(list(payloads.payloads)))
        except Exception:  # a payload this client cannot decode (another key): listed without its content
            return []

    async def _failure(self, event_failure: Any) -> str:
        try:
            return str(await self.client.data_converter.decode_failure(event_failure))
        except Exception:
            return event_failure.message

    async def _read_history(self, execution: Execution, events: list[HistoryEvent]) -> None:
        runs: dict[int, ActivityRun] = {}
        for event in events:
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled = event.activity_task_scheduled_event_attributes
                args = await self._decode(scheduled.input)
                runs[event.event_id] = ActivityRun(
                    event_id=event.event_id,
                    activity=scheduled.activity_type.name,
                    subject=_subject(args[0] if args else None),
                    scheduled_at=_event_time(event),
                )
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = event.activity_task_started_event_attributes
                if run := runs.get(started.scheduled_event_id):
                    run.started_at, run.attempts = _event_time(event), started.attempt
            elif kind in _ACTIVITY_ENDS:
                ended = getattr(event, _ACTIVITY_ENDS[kind][1])
                if run := runs.get(ended.scheduled_event_id):
                    run.ended_at, run.outcome = _event_time(event), _ACTIVITY_ENDS[kind][0]
                    if kind in _FAILED_ENDS and ended.HasField("failure"):
                        run.error = await self._failure(ended.failure)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                signaled = event.workflow_execution_signaled_event_attributes
                args = await self._decode(signaled.input)
                execution.messages.append(_message(event, "signal", signaled.signal_name, signaled.identity, args))
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                request = event.workflow_execution_update_accepted_event_attributes.accepted_request
                args = await self._decode(request.input.args)
                execution.messages.append(_message(event, "update", request.input.name, request.meta.identity, args))
            elif kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
                child = event.child_workflow_execution_started_event_attributes.workflow_execution
                execution.children.append(child.workflow_id)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                results = await self._decode(event.workflow_execution_completed_event_attributes.result)
                result = results[0] if results else None
                if isinstance(result, dict):
                    code = f" (close code {result['close_code']})" if result.get("close_code") else ""
                    done = result.get("outcome") or ("succeeded" if result.get("succeeded") else "")
                    execution.outcome = f"{done}{code}"
                    if isinstance(result.get("steps"), list):
                        execution.steps = result["steps"]
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
                execution.error = await self._failure(event.workflow_execution_failed_event_attributes.failure)
        execution.activities = list(runs.values())


_ACTIVITY_ENDS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("completed", "activity_task_completed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("failed", "activity_task_failed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: ("timed_out", "activity_task_timed_out_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("canceled", "activity_task_canceled_event_attributes"),
}
_FAILED_ENDS = (EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED, EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT)


def _subject(arg: Any) -> str:
    """What an activity acted on, from its input: a step's name, a host, a ticket, a file."""
    if not isinstance(arg, dict):
        return str(arg) if isinstance(arg, str) else ""
    step = arg.get("step")
    if isinstance(step, dict) and step.get("name"):
        return str(step["name"])
    for key in ("ci_name", "host", "file_name", "key", "number", "name"):
        if isinstance(arg.get(key), str) and arg[key]:
            return str(arg[key])
    ticket = arg.get("ticket")
    return str(ticket.get("number", "")) if isinstance(ticket, dict) else ""


def _message(event: HistoryEvent, kind: str, name: str, identity: str, args: list[Any]) -> Message:
    payload = args[0] if args and isinstance(args[0], dict) else {}
    fields = {key: str(payload[key]) for key in MESSAGE_FIELDS if payload.get(key)}
    return Message(
        event_id=event.event_id, at=_event_time(event), kind=kind, name=name, identity=identity, fields=fields
    )


def _gate_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, "", [], {}))
    return "" if value is None else str(value)


def _approval(execution: Execution) -> Approval | None:
    """The gate as the workflow holds it, and the messages that decided it, as the history recorded them."""
    decisions = [m for m in execution.messages if m.fields.get("approver") or m.name in ("approve", "reject", "decide")]
    gate = execution.gate or {}
    status = str(gate.get("status", ""))
    if status in ("", "not_required", "pending") and not decisions:
        return None
    approver = str(gate.get("approver") or next((m.fields.get("approver", "") for m in decisions), ""))
    # Both kinds of evidence when there are both: the gate's own proof (how it judged the decision), and the
    # history's record of the message that carried it (who sent it, when).
    proofs = [f"gate proof: {text}"] if (text := _gate_text(gate.get("proof"))) else []
    if decisions:
        first = next((m for m in decisions if m.fields.get("approver") == approver), decisions[0])
        proofs.append(
            f"Temporal {first.kind} '{first.name}' recorded in {execution.workflow_id}'s history "
            f"(event {first.event_id}, {first.at}) from client identity '{first.identity or 'unknown'}'"
        )
    proof = "; ".join(proofs)
    decided = gate.get("decided_at")
    return Approval(
        execution=execution.workflow_id,
        status=status or "decided",
        approver=approver,
        decided_at=_when(datetime.fromisoformat(decided)) if isinstance(decided, str) and decided else "",
        comments=str(gate.get("comments") or ""),
        proof=proof,
        gate={k: v for k, v in gate.items() if v not in (None, "", [], {})},
        messages=decisions,
    )


def _cross_references(report: AuditReport) -> list[CrossReference]:
    by_id = {e.workflow_id: e for e in report.executions}
    refs = []
    change_id = change_workflow_id(report.change)
    correlation = report.ticket.correlation_id
    refs.append(
        CrossReference(
            servicenow=f"{report.change}.correlation_id",
            temporal=correlation or "(none)",
            agrees=bool(correlation) and correlation in by_id,
            note="the ticket names its execution" if correlation == change_id else "not the change's execution ID",
        )
    )
    noted = [e.workflow_id for e in report.executions if any(e.workflow_id in j.text for j in report.ticket.journal)]
    for workflow_id in noted:
        refs.append(CrossReference(servicenow=f"{report.change} work notes", temporal=workflow_id, agrees=True))
    for incident in report.incidents:
        refs.append(
            CrossReference(
                servicenow=f"{incident.number}.correlation_id",
                temporal=incident.correlation_id,
                agrees=incident.correlation_id in by_id,
                note="the execution whose failure opened it",
            )
        )
    for task in report.tasks:
        execution = by_id.get(task.execution)
        step = next((s for s in (execution.steps if execution else []) if s.get("name") == task.step), None)
        outcome = str(step.get("outcome", "")) if step else ""
        agrees = execution is not None and (not step or _task_agrees(task, outcome))
        note = f"step {task.step!r}: {outcome or 'no step record'}; task {task.state} {task.close_code}".strip()
        refs.append(
            CrossReference(
                servicenow=f"{task.number}.correlation_id", temporal=task.correlation_id, agrees=agrees, note=note
            )
        )
    return refs


def _task_agrees(task: Record, outcome: str) -> bool:
    if outcome == "succeeded":
        return task.close_code in ("successful", "successful_issues")
    if outcome == "failed":
        return task.close_code == "unsuccessful"
    return True  # still running: the task is open


async def build_audit(settings: Settings, client: Client, number: str) -> AuditReport:
    async with ServiceNowClient.from_settings(settings) as sn:
        return await Auditor(settings, client, sn).report(number)


async def change_of_execution(client: Client, workflow_id: str) -> str:
    """The change number of an execution (`GET /api/executions/{id}/audit`), or AuditError."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        raise AuditError(f"no execution {workflow_id!r}") from exc
    number = change_of(workflow_id, described)
    if number is None:
        raise AuditError(f"execution {workflow_id!r} belongs to no change")
    return number


# -- the page --------------------------------------------------------------------------------------------------------
def _cell(text: Any, limit: int = 200) -> str:
    flat = " ⏎ ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return flat.replace("|", "\\|") or "-"


def _table(header: Sequence[str], rows: list[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]


def _iso(text: Any) -> str:
    try:
        return _when(datetime.fromisoformat(str(text)))
    except ValueError:
        return str(text or "")


def _short(stamp: str, day: str) -> str:
    """`2025-06-01 10:00:00 UTC` as `10:00:00` on `day`; dated otherwise."""
    if day and stamp.startswith(day):
        return stamp[11:19]
    return stamp.removesuffix(" UTC")


def _quoted(text: str) -> list[str]:
    """A ticket's text as it was written: a fenced block keeps its lines, and nothing in it is read as Markdown."""
    fence = "```"
    while fence in text:
        fence += "`"
    return [f"{fence}text", *text.splitlines(), fence, ""]


def _link(label: str, url: str) -> str:
    return f"[{label}]({url})" if url else label


def to_markdown(report: AuditReport) -> str:
    t = report.ticket
    out = [
        f"# Audit of {report.change}",
        "",
        f"Generated {report.generated_at} by changeloop from ServiceNow {report.servicenow_url} and Temporal "
        f"namespace `{report.namespace}`. ServiceNow's records and Temporal's executions are cross-referenced at "
        "the end.",
        "",
        "## Summary",
        "",
    ]
    approvals = "; ".join(
        f"{a.status} by {a.approver or '?'}" + (f" at {a.decided_at}" if a.decided_at else "") + f" ({a.proof})"
        for a in report.approvals
    )
    out += _table(
        ["", ""],
        [
            ["Change", f"{_link(t.number, t.url)}: {t.fields.get('short_description', '')}"],
            ["State", f"{t.fields.get('state', '')}, close code {t.fields.get('close_code', '-')}"],
            ["Executions", ", ".join(f"{e.workflow_id} ({e.status})" for e in report.executions) or "none"],
            ["Approval", approvals or "no approval gate"],
            ["Incidents", ", ".join(f"{i.number} ({i.state})" for i in report.incidents) or "none"],
            [
                "Change tasks",
                ", ".join(f"{k.number} ({k.state} {k.close_code})".strip() for k in report.tasks) or "none",
            ],
            ["Attachments", ", ".join(f"{a.file_name} on {a.on}" for a in report.attachments) or "none"],
        ],
    )
    out += ["## ServiceNow: the ticket", ""]
    out += _table(["field", "value"], [[name, shown] for name, shown in t.fields.items() if name != "close_notes"])
    if t.fields.get("close_notes"):
        out += ["Close notes:", "", *_quoted(t.fields["close_notes"])]
    out += ["### Journal", ""]
    for entry in t.journal or []:
        out += [f"**{entry.at} UTC, {entry.kind.replace('_', ' ')}, by {entry.by}**", ""]
        out += _quoted(entry.text)
    if not t.journal:
        out += ["(no work notes or comments)", ""]

    out += ["## Temporal: the executions", ""]
    for e in report.executions:
        out += [f"### {e.workflow_id} ({e.workflow_type}): {e.status}", ""]
        facts = [
            f"run {e.run_id}",
            f"started {e.started_at}",
            f"closed {e.closed_at}" if e.closed_at else "still running",
            f"started by {e.parent}" if e.parent else "",
            f"outcome {e.outcome}" if e.outcome else "",
        ]
        out += ["; ".join(f for f in facts if f) + f". {_link('History in the Temporal UI', e.url)}", ""]
        if e.error:
            out += [f"Failure: {_cell(e.error, 500)}", ""]
        if not e.detailed:
            out += ["(a wave's host: listed, history not read here)", ""]
            continue
        day = e.started_at[:10]
        if e.activities:
            out += [f"Activities (times UTC on {day} unless dated):", ""]
            out += _table(
                ["event", "activity", "subject", "scheduled", "last attempt started", "ended", "attempts", "outcome"],
                [
                    [
                        a.event_id,
                        a.activity,
                        a.subject,
                        _short(a.scheduled_at, day),
                        _short(a.started_at, day),
                        _short(a.ended_at, day),
                        a.attempts,
                        a.outcome + (f": {a.error}" if a.error else ""),
                    ]
                    for a in e.activities
                ],
            )
        if e.steps:
            out += ["Steps (the workflow's own record):", ""]
            out += _table(
                ["step", "outcome", "started", "ended", "detail"],
                [
                    [
                        s.get("name"),
                        s.get("outcome"),
                        _short(_iso(s.get("started_at")), day),
                        _short(_iso(s.get("ended_at")), day),
                        s.get("detail"),
                    ]
                    for s in e.steps
                ],
            )
        # Signals between workflows (a runbook's step_progress, a relayed decision) are counted; messages from
        # clients - people, the shim, the CLI - are listed with who sent them.
        relayed = [m for m in e.messages if m.identity == WORKFLOW_SENDER]
        sent = [m for m in e.messages if m.identity != WORKFLOW_SENDER]
        if sent:
            out += ["Messages received from clients:", ""]
            out += _table(
                ["event", "at", "kind", "name", "from (client identity)", "content"],
                [[m.event_id, _short(m.at, day), m.kind, m.name, m.identity, _gate_text(m.fields)] for m in sent],
            )
        if relayed:
            counts: dict[str, int] = {}
            for m in relayed:
                counts[m.name] = counts.get(m.name, 0) + 1
            out += ["Signals from other workflows: " + ", ".join(f"{n} x{c}" for n, c in counts.items()), ""]
        if e.children:
            out += [f"Started: {', '.join(e.children)}", ""]

    out += ["## Approval", ""]
    for a in report.approvals:
        out += [
            f"- **{a.execution}**: {a.status} by **{a.approver or '?'}**"
            + (f" at {a.decided_at}" if a.decided_at else "")
        ]
        out += [f"  - proven by: {a.proof or '(no proof recorded)'}"]
        if a.comments:
            out += [f"  - comments: {a.comments}"]
        out += [f"  - gate: {_gate_text(a.gate)}"]
    if not report.approvals:
        out += ["No approval gate was opened (the runbook is not destructive, or nothing ran)."]
    out += [""]

    for title, records in (("Incidents", report.incidents), ("Change tasks", report.tasks)):
        out += [f"## ServiceNow: {title.lower()}", ""]
        if not records:
            out += ["none", ""]
            continue
        out += _table(
            ["number", "state", "close code", "group", "execution", "step", "opened", "closed", "close notes"],
            [
                [
                    _link(r.number, r.url),
                    r.state,
                    r.close_code,
                    r.assignment_group,
                    r.execution or r.correlation_id,
                    r.step,
                    r.opened_at,
                    r.closed_at,
                    r.close_notes or r.short_description,
                ]
                for r in records
            ],
        )
    out += ["## ServiceNow: attachments", ""]
    if report.attachments:
        out += _table(
            ["on", "file", "bytes", "type", "uploaded", "by"],
            [
                [a.on, _link(a.file_name, a.url), a.size_bytes, a.content_type, a.created_at, a.created_by]
                for a in report.attachments
            ],
        )
    else:
        out += ["none", ""]
    out += ["## Cross-references", ""]
    out += _table(
        ["ServiceNow", "Temporal", "agrees", "note"],
        [[c.servicenow, c.temporal, "yes" if c.agrees else "NO", c.note] for c in report.cross_references],
    )
    return "\n".join(out)
