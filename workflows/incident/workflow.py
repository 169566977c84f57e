"""OpenIncidentWorkflow (ID `incident-for-<failed workflow id>`): one incident per failure, until it is resolved.

Started as an abandoned child of the failed workflow (so it outlives it): asks the worker's policy whether this
workflow type counts as production, finds the impacted CIs and their routing in the CMDB, creates the incident (or
finds the open one with the same correlation_id), tells the failed workflow its number, notes it on the change and
in Slack, then waits durably (days) for `resolve` - a signal or a validated update - and resolves the incident with
close notes naming the execution that fixed it.

The deterministic ID is what makes a second report of the same failure harmless: the server refuses a second start
while this one runs, and the reporter asks this one for the number instead (`report_to`).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.cancellation import passes_through
    from workflows.change.models import NoteInput
    from workflows.evidence import writes
    from workflows.evidence.models import AttachInput
    from workflows.incident.models import (
        INCIDENT_OUTPUT_PATCH,
        RESOLVE_NO_RESOLVER,
        RESOLVE_NOT_OPEN,
        RESOLVE_WRONG_INCIDENT,
        SIGNAL_INCIDENT_OPENED,
        SIGNAL_REPORT_TO,
        SIGNAL_RESOLVE,
        UPDATE_RESOLVE,
        ImpactInput,
        IncidentPhase,
        IncidentPolicy,
        IncidentRef,
        IncidentRequest,
        IncidentStatus,
        OpenIncidentInput,
        PolicyInput,
        ResolveIncident,
        ResolveRecordInput,
        SlackInput,
    )
    from workflows.status import QUERY_STATUS

OPEN_PHASES = {IncidentPhase.OPENING, IncidentPhase.OPEN}


@workflow.defn(name="OpenIncidentWorkflow")
class OpenIncidentWorkflow:
    @workflow.init
    def __init__(self, request: IncidentRequest) -> None:
        self._status = IncidentStatus(failed_workflow_id=request.failed_workflow_id)
        self._resolution: ResolveIncident | None = None
        self._waiting: list[str] = [request.report_to] if request.report_to else []

    # -- messages ----------------------------------------------------------------------------------------------------
    @workflow.query(name=QUERY_STATUS)
    def status(self) -> IncidentStatus:
        return self._status

    @workflow.signal(name=SIGNAL_REPORT_TO)
    def report_to(self, workflow_id: str) -> None:
        """Another report of the same failure: it gets the number of this incident rather than a second one."""
        self._waiting.append(workflow_id)

    @workflow.signal(name=SIGNAL_RESOLVE)
    def resolve_signal(self, resolution: ResolveIncident) -> None:
        # A signal cannot answer; a refused one is logged. Callers who need the answer use the update.
        problem = self._resolve_problem(resolution)
        if problem:
            workflow.logger.warning("ignored resolve signal: %s", problem[1])
            return
        self._resolution = resolution

    @workflow.update(name=UPDATE_RESOLVE)
    async def resolve(self, resolution: ResolveIncident) -> IncidentStatus:
        self._resolution = resolution
        await workflow.wait_condition(lambda: self._status.phase not in (*OPEN_PHASES, IncidentPhase.RESOLVING))
        return self._status

    @resolve.validator
    def _validate_resolve(self, resolution: ResolveIncident) -> None:
        problem = self._resolve_problem(resolution)
        if problem:
            raise ApplicationError(problem[1], type=problem[0], non_retryable=True)

    def _resolve_problem(self, resolution: ResolveIncident) -> tuple[str, str] | None:
        if not resolution.resolved_by.strip():
            return RESOLVE_NO_RESOLVER, "resolved_by must not be empty"
        if self._status.phase not in OPEN_PHASES or self._resolution is not None:
            return RESOLVE_NOT_OPEN, f"the incident for {self._status.failed_workflow_id} is {self._status.phase.value}"
        incident = self._status.incident
        if resolution.number and incident and resolution.number != incident.number:
            return RESOLVE_WRONG_INCIDENT, f"this workflow tracks {incident.number}, not {resolution.number}"
        return None

    # -- the run -----------------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, request: IncidentRequest) -> IncidentStatus:
        policy = await calls.INCIDENT_POLICY(
            PolicyInput(workflow_type=request.workflow_type, production=request.production)
        )
        if not policy.open:
            self._status.phase, self._status.reason = IncidentPhase.NOT_OPENED, policy.reason
            await self._tell(IncidentRef(workflow_id=workflow.info().workflow_id))
            return await self._finish()
        impact = await calls.INCIDENT_IMPACT(
            ImpactInput(
                ci_sys_ids=request.ci_sys_ids,
                ci_names=request.ci_names,
                change_number=request.change_number,
                change_sys_id=request.change_sys_id,
            )
        )
        # Shorter than the instance's worst hang: a create whose answer is late is retried, and the retry finds it.
        incident = await calls.OPEN_INCIDENT.narrowed(timeout=policy.create_timeout)(
            OpenIncidentInput(request=request, impact=impact, log_lines=policy.log_lines)
        )
        self._status.incident, self._status.phase = incident, IncidentPhase.OPEN
        self._status.opened_at = workflow.now()
        self._status.resolve_by = self._status.opened_at + policy.resolve_wait
        await self._tell(incident)
        await self._attach_output(incident, request)
        if impact.change_sys_id:
            await self._note_change(impact.change_sys_id, incident, request)
        await self._slack(incident, request)
        await self._await_resolution(request, policy)
        return await self._finish()

    async def _await_resolution(self, request: IncidentRequest, policy: IncidentPolicy) -> None:
        # While waiting, a late second report still gets the number.
        incident = self._status.incident
        assert incident is not None
        try:
            while True:
                await workflow.wait_condition(
                    lambda: self._resolution is not None or bool(self._waiting), timeout=self._remaining(policy)
                )
                if self._resolution is not None:
                    break
                await self._tell(incident)
        except TimeoutError:
            self._status.phase = IncidentPhase.WAIT_EXPIRED
            self._status.reason = f"not resolved through changeloop within {policy.resolve_wait}; left open"
            return
        resolution = self._resolution
        self._status.phase = IncidentPhase.RESOLVING
        notes = self._close_notes(request, resolution)
        await calls.RESOLVE_INCIDENT(
            ResolveRecordInput(sys_id=incident.sys_id, close_code=resolution.close_code, close_notes=notes)
        )
        self._status.resolution, self._status.close_notes = resolution, notes
        self._status.resolved_at, self._status.phase = workflow.now(), IncidentPhase.RESOLVED

    def _remaining(self, policy: IncidentPolicy) -> timedelta:
        deadline = self._status.resolve_by or workflow.now() + policy.resolve_wait
        return max(deadline - workflow.now(), timedelta(seconds=1))

    @staticmethod
    def _close_notes(request: IncidentRequest, resolution: ResolveIncident) -> str:
        fixed = f"Fixed by execution {resolution.fixed_by}." if resolution.fixed_by else "No fixing execution named."
        lines = [
            f"Resolved by {resolution.resolved_by} through changeloop execution {workflow.info().workflow_id}. {fixed}",
            f"Failed execution: {request.failed_workflow_id}"
            + (f" ({request.change_number})" if request.change_number else ""),
        ]
        if resolution.close_notes:
            lines.append(resolution.close_notes)
        return "\n".join(lines)

    # -- pieces ------------------------------------------------------------------------------------------------------
    async def _tell(self, incident: IncidentRef) -> None:
        """The failed workflow (and any later reporter) learns the number; one that has closed meanwhile is skipped."""
        waiting, self._waiting = self._waiting, []
        for workflow_id in dict.fromkeys(waiting):
            try:
                await workflow.get_external_workflow_handle(workflow_id).signal(SIGNAL_INCIDENT_OPENED, incident)
            except Exception as error:
                workflow.logger.info("could not tell %s about %s: %s", workflow_id, incident.number, error)

    async def _attach_output(self, incident: IncidentRef, request: IncidentRequest) -> None:
        """The failing step's output (or the failure's log lines) on the incident, once: `<failed workflow id>.log`."""
        text = request.output or "\n".join(request.log_lines)
        if not text.strip() or not incident.sys_id or not workflow.patched(INCIDENT_OUTPUT_PATCH):
            return
        where = f" at step '{request.step}'" if request.step else ""
        header = (
            f"changeloop: {request.workflow_type or 'workflow'} {request.failed_workflow_id} failed{where}"
            + (f" ({request.error_type})" if request.error_type else "")
            + (f" after {request.attempts} attempt(s)" if request.attempts else "")
            + f".\n{'Output of the failing step' if request.output else 'What the failure says'} "
            "(scrubbed of the worker's secrets):\n\n"
        )
        self._status.attachment = await writes.attach(
            AttachInput(
                table="incident",
                sys_id=incident.sys_id,
                file_name=f"{request.failed_workflow_id}.log",
                text=header + text,
            )
        )

    async def _note_change(self, change_sys_id: str, incident: IncidentRef, request: IncidentRequest) -> None:
        text = (
            f"changeloop opened incident {incident.number} for this failure"
            + (f" (step '{request.step}')" if request.step else "")
            + f": {incident.url}\nAssigned to {incident.assignment_group or 'no group'}, "
            f"impact {incident.impact} / urgency {incident.urgency}. Incident workflow: {workflow.info().workflow_id}"
        )
        await calls.ADD_WORK_NOTE(NoteInput(sys_id=change_sys_id, text=text))

    async def _slack(self, incident: IncidentRef, request: IncidentRequest) -> None:
        try:
            self._status.slack = await calls.NOTIFY_SLACK(
                SlackInput(
                    incident=incident,
                    failed_workflow_id=request.failed_workflow_id,
                    failed_run_id=request.failed_run_id,
                    workflow_type=request.workflow_type,
                    step=request.step,
                )
            )
        except ActivityError as error:  # Slack is a courtesy: the incident is what counts
            if passes_through(error):
                raise
            self._status.slack = f"failed: {error.cause or error}"

    async def _finish(self) -> IncidentStatus:
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status
