"""Registry look-ups as activities: the registry is read in the worker, so editing it needs no workflow change,
and the answer a workflow got is recorded in its history (replay never re-reads the file)."""

from __future__ import annotations

from temporalio import activity

from config.registry import Registry
from workflows import calls
from workflows.flow.models import FlowName
from workflows.runbook.models import ResolveInput, RunbookChoice


class RegistryActivities:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @activity.defn(name=calls.RESOLVE_RUNBOOK.name)
    async def resolve_runbook(self, request: ResolveInput) -> RunbookChoice:
        return RunbookChoice(runbook=self.registry.resolve(request.template, request.category))

    @activity.defn(name=calls.RESOLVE_FLOW.name)
    async def resolve_flow(self, request: FlowName) -> RunbookChoice:
        return RunbookChoice(runbook=self.registry.flow(request.flow))
