"""Registry look-ups as activities: the registry is read in the worker, so editing it needs no workflow change,
and the answer a workflow got is recorded in its history (replay never re-reads the file).

Answers are plans (workflows/runbook/models.py `RunbookPlan`): what a workflow needs of an entry, with the entry's
digest, never a command, URL, header or environment. `entry` is the one place that finds a run's entry by
reference and refuses an unknown name or a digest that no longer matches: the step runner uses it too.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.registry import Registry
from config.runbooks import Runbook, runbook_digest
from workflows import calls
from workflows.flow.models import FlowName
from workflows.runbook.models import REGISTRY_CHANGED, ResolveInput, RunbookChoice, RunbookPlan, RunbookRef


def entry(registry: Registry, ref: RunbookRef) -> Runbook:
    """The worker's own entry for `ref`, or a non-retryable RegistryChanged that says why."""
    runbook = registry.flow(ref.name)
    if runbook is None:
        raise ApplicationError(
            f"runbook {ref.name!r} is not in this worker's registry ({registry.source or 'default'}): "
            "the registry changed since the run started, or the run names a runbook that never existed",
            type=REGISTRY_CHANGED,
            non_retryable=True,
        )
    if not ref.digest:
        raise ApplicationError(
            f"runbook {ref.name!r}: the run carries no registry digest, so it cannot prove which entry it resolved",
            type=REGISTRY_CHANGED,
            non_retryable=True,
        )
    current = runbook_digest(runbook)
    if current != ref.digest:
        raise ApplicationError(
            f"runbook {ref.name!r} changed in the registry since the run started (digest {ref.digest[:12]} at "
            f"start, {current[:12]} now): nothing more of it runs; start the change or flow again to run the new entry",
            type=REGISTRY_CHANGED,
            non_retryable=True,
        )
    return runbook


def _plan(runbook: Runbook | None) -> RunbookChoice:
    return RunbookChoice(runbook=RunbookPlan.of(runbook) if runbook else None)


class RegistryActivities:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @activity.defn(name=calls.RESOLVE_RUNBOOK.name)
    async def resolve_runbook(self, request: ResolveInput) -> RunbookChoice:
        return _plan(self.registry.resolve(request.template, request.category))

    @activity.defn(name=calls.RESOLVE_FLOW.name)
    async def resolve_flow(self, request: FlowName) -> RunbookChoice:
        return _plan(self.registry.flow(request.flow))

    @activity.defn(name=calls.RESOLVE_RUN.name)
    async def resolve_run(self, request: RunbookRef) -> RunbookPlan:
        return RunbookPlan.of(entry(self.registry, request))
