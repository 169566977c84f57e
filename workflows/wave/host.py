"""PatchHostWorkflow (ID `patch-<number>-<ci>`): snapshot -> patch -> health check, rollback on failure.

One host's outcome is a result, never an exception: a patch that fails or a host that comes back unhealthy is
rolled back to the snapshot and reported `rolled_back`; a host that cannot even be snapshotted (unreachable) or
cannot be rolled back is reported `failed`. The wave hears about it through the `host_done` signal, because the
wave continues as new and cannot await children that an earlier run started.

Whether this wave changed the host is read from the snapshot's level against the level the patch reached, not
from the patch call's `changed` flag: a patch retried after its answer was lost finds the host at the target
already, yet it was this wave that moved it, so an unhealthy host is still rolled back and a healthy one is
reported patched, not a no-op.

Cancelled (the wave is cancelled, or an operator cancels this host): what the host is doing decides what happens.
Before its patch (snapshot) it stops and leaves the host as it was. A patch in progress is never interrupted: it
finishes, then the host goes back to its snapshot if this wave changed it. A health check in progress is
cancelled (it only reads) and the unverified patch is rolled back. A rollback in progress finishes. Every such
rollback runs to its end whatever else is cancelled (`uncancellable`); the host reports `canceled` (or `failed` if
the rollback failed) to the wave, and only then does this workflow end CANCELED, so no host is touched after the
wave has heard from it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.cancellation import canceled_by_request, uncancellable
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


class HostCanceled(Exception):
    """The host's workflow was cancelled and has wound down: `report` says what it left (untouched, rolled back, or
    failed to roll back)."""

    def __init__(self, ci: str, detail: str, *, failed: bool = False) -> None:
        super().__init__(detail)
        outcome = HostOutcome.FAILED if failed else HostOutcome.CANCELED
        self.report = HostReport(ci=ci, outcome=outcome, detail=detail, changed=False)


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
        try:
            report = await self._patch(job)
        except HostCanceled as canceled:
            # The wave hears what was undone before this workflow ends canceled; nothing touches the host after.
            await uncancellable(self._report(job, canceled.report, started))
            raise asyncio.CancelledError(canceled.report.detail) from None
        await self._report(job, report, started)
        return report

    async def _report(self, job: PatchHostInput, report: HostReport, started: datetime) -> None:
        report.started_at, report.ended_at = started, workflow.now()
        self._status.report, self._status.step = report, ""
        if job.report_to:
            try:
                await workflow.get_external_workflow_handle(job.report_to).signal(SIGNAL_HOST_DONE, report)
            except Exception as error:  # the wave is gone (timed out, terminated): the result still stands
                workflow.logger.warning("could not report %s to %s: %s", job.ci.name, job.report_to, error)

    async def _patch(self, job: PatchHostInput) -> HostReport:
        name = job.ci.name
        try:
            snapshot = await self._op(job, calls.HOST_SNAPSHOT, "snapshot", label=job.change_number)
        except HostStepFailed as error:
            return HostReport(ci=name, outcome=HostOutcome.FAILED, detail=f"{error}; host left untouched")
        except asyncio.CancelledError:
            raise HostCanceled(name, "canceled before its patch: host left as it was") from None
        # Never interrupted: a package transaction cut in half is worse than one that finished and is rolled back.
        patching = asyncio.ensure_future(
            self._op(job, calls.HOST_PATCH, "patch", level=job.target_level, from_level=snapshot.level)
        )
        try:
            patched = await asyncio.shield(patching)
        except HostStepFailed as error:
            return await self._rollback(job, snapshot, str(error))
        except asyncio.CancelledError:
            try:
                patched = await uncancellable(patching)
            except HostStepFailed as error:
                raise await self._undo(job, snapshot, f"canceled mid-patch; {error}") from None
            if not self._changed(snapshot, patched):
                raise HostCanceled(name, f"canceled mid-patch; already at {patched.level}: nothing to undo") from None
            raise await self._undo(job, snapshot, "canceled mid-patch") from None
        changed = self._changed(snapshot, patched)
        try:
            health = await self._op(job, calls.HOST_HEALTH_CHECK, "health check")
            problem = "" if health.healthy else f"health check failed after patch: {health.message or 'unhealthy'}"
        except HostStepFailed as error:
            problem = str(error)
        except asyncio.CancelledError:
            # A health check only reads: it is cancelled, and a patch nobody verified is not kept.
            if not changed:
                raise HostCanceled(name, f"canceled before its health check; already at {patched.level}") from None
            raise await self._undo(job, snapshot, "canceled before its health check") from None
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
        """Back to the snapshot; a cancel request meanwhile lets the rollback finish (the host reports rolled back)."""
        name = job.ci.name
        try:
            await uncancellable(self._op(job, calls.HOST_ROLLBACK, "rollback", snapshot_id=snapshot.snapshot_id))
        except HostStepFailed as error:
            return HostReport(ci=name, outcome=HostOutcome.FAILED, detail=f"{reason}; {error}: needs a human")
        detail = f"{reason}; rolled back to {snapshot.snapshot_id}"
        return HostReport(ci=name, outcome=HostOutcome.ROLLED_BACK, detail=detail, changed=True)

    async def _undo(self, job: PatchHostInput, snapshot: HostOpResult, reason: str) -> HostCanceled:
        """A cancelled host that this wave changed goes back to its snapshot before the workflow ends."""
        undone = await self._rollback(job, snapshot, reason)
        return HostCanceled(job.ci.name, undone.detail, failed=undone.outcome == HostOutcome.FAILED)

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
            if canceled_by_request(error):
                raise asyncio.CancelledError(step) from error
            raise HostStepFailed(step, failure_message(error)) from error
        self._status.done.append(step)
        return result
