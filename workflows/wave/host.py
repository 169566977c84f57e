"""PatchHostWorkflow (ID `patch-<number>-<ci>`): snapshot -> patch -> health check, rollback on failure.

One host's outcome is a result, never an exception: a patch that fails or a host that comes back unhealthy is
rolled back to the snapshot and reported `rolled_back`; a host that cannot even be snapshotted (unreachable) or
cannot be rolled back is reported `failed`. The wave hears about it through the `host_done` signal, because the
wave continues as new and cannot await children that an earlier run started.

Whether this wave changed the host is read from the snapshot's level against the level the patch reached, not
from the patch call's `changed` flag: a patch retried after its answer was lost finds the host at the target
already, yet it was this wave that moved it, so an unhealthy host is still rolled back and a healthy one is
reported patched, not a no-op.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.failures import failure_message
    from workflows.status import QUERY_STATUS
    from workflows.wave.models import (
        SIGNAL_HOST_DONE,
        HostOpInput,
        HostOpResult,
        HostOutcome,
        HostReport,
        HostStatus,
        PatchHostInput,
    )


# Histories from before it decided "changed" from the patch call's flag alone (see `_changed`).
CHANGED_BY_SNAPSHOT_LEVEL = "host-changed-by-snapshot-level"


class HostStepFailed(Exception):
    """An operation failed after its retries; `message` is the host's own words."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step} failed: {message}")
        self.step = step


@workflow.defn(name="PatchHostWorkflow")
class PatchHostWorkflow:
    @workflow.init
    def __init__(self, job: PatchHostInput) -> None:
        self._status = HostStatus(ci=job.ci.name)

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> HostStatus:
        return self._status

    @workflow.run
    async def run(self, job: PatchHostInput) -> HostReport:
        started = workflow.now()
        report = await self._patch(job)
        report.started_at, report.ended_at = started, workflow.now()
        self._status.report, self._status.step = report, ""
        if job.report_to:
            try:
                await workflow.get_external_workflow_handle(job.report_to).signal(SIGNAL_HOST_DONE, report)
            except Exception as error:  # the wave is gone (timed out, terminated): the result still stands
                workflow.logger.warning("could not report %s to %s: %s", job.ci.name, job.report_to, error)
        return report

    async def _patch(self, job: PatchHostInput) -> HostReport:
        name = job.ci.name
        try:
            snapshot = await self._op(job, calls.HOST_SNAPSHOT, "snapshot", label=job.change_number)
        except HostStepFailed as error:
            return HostReport(ci=name, outcome=HostOutcome.FAILED, detail=f"{error}; host left untouched")
        try:
            patched = await self._op(job, calls.HOST_PATCH, "patch", level=job.target_level, from_level=snapshot.level)
        except HostStepFailed as error:
            return await self._rollback(job, snapshot, str(error))
        changed = self._changed(snapshot, patched)
        try:
            health = await self._op(job, calls.HOST_HEALTH_CHECK, "health check")
            problem = "" if health.healthy else f"health check failed after patch: {health.message or 'unhealthy'}"
        except HostStepFailed as error:
            problem = str(error)
        if not problem:
            if not changed:
                detail = f"already at {patched.level}: nothing to do (no-op)"
            elif patched.changed or not snapshot.level:
                detail = patched.message
            else:
                detail = f"{snapshot.level} -> {patched.level}"
            return HostReport(ci=name, outcome=HostOutcome.PATCHED, detail=detail, changed=changed)
        if not changed:
            # This wave changed nothing, so a rollback would undo someone else's work.
            return HostReport(ci=name, outcome=HostOutcome.FAILED, detail=f"{problem}; host was already at target")
        return await self._rollback(job, snapshot, problem)

    @staticmethod
    def _changed(snapshot: HostOpResult, patched: HostOpResult) -> bool:
        """Did this wave move the host? The snapshot's level against the level reached; the patch call's flag only
        when a driver reports no levels (it says "already there" on a retry whose first attempt did the work)."""
        if not (snapshot.level and patched.level):
            return patched.changed
        moved = snapshot.level != patched.level
        if moved != patched.changed and not workflow.patched(CHANGED_BY_SNAPSHOT_LEVEL):
            return patched.changed  # replaying a history from before: it decided by the flag
        return moved

    async def _rollback(self, job: PatchHostInput, snapshot: HostOpResult, reason: str) -> HostReport:
        name = job.ci.name
        try:
            await self._op(job, calls.HOST_ROLLBACK, "rollback", snapshot_id=snapshot.snapshot_id)
        except HostStepFailed as error:
            return HostReport(ci=name, outcome=HostOutcome.FAILED, detail=f"{reason}; {error}: needs a human")
        detail = f"{reason}; rolled back to {snapshot.snapshot_id}"
        return HostReport(ci=name, outcome=HostOutcome.ROLLED_BACK, detail=detail, changed=True)

    async def _op(
        self, job: PatchHostInput, call: calls.Call[HostOpInput, HostOpResult], step: str, **fields: str
    ) -> HostOpResult:
        self._status.step = step
        ops = job.ops
        op = call.narrowed(timeout=ops.timeout, heartbeat=ops.heartbeat_timeout, retry=calls.attempts(ops.retries + 1))
        try:
            # On the site worker of the host (workflows/site/models.py); "" = this queue.
            result = await op(
                HostOpInput(ci=job.ci, change_number=job.change_number, **fields), task_queue=job.ci.task_queue
            )
        except ActivityError as error:
            raise HostStepFailed(step, failure_message(error)) from error
        self._status.done.append(step)
        return result
