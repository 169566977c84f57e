"""Every workflow the worker runs, and the workflow interceptors that change what they do: one list, read by the
worker, the replay tests and anything else that must see the same workflows (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workflows.change.workflow import ChangeRequestWorkflow
from workflows.flow.workflow import FlowRunWorkflow
from workflows.incident.interceptor import IncidentInterceptor
from workflows.incident.workflow import OpenIncidentWorkflow
from workflows.poll.workflow import ChangePollWorkflow
from workflows.reconcile.workflow import ReconcileWorkflow
from workflows.runbook.workflow import RunbookWorkflow
from workflows.wave.host import PatchHostWorkflow
from workflows.wave.workflow import PatchWaveWorkflow

WORKFLOWS: Sequence[type] = (
    ChangeRequestWorkflow,
    RunbookWorkflow,
    FlowRunWorkflow,
    ChangePollWorkflow,
    ReconcileWorkflow,
    PatchWaveWorkflow,
    PatchHostWorkflow,
    OpenIncidentWorkflow,
)
# Interceptors that change what workflows do (a failed production workflow opens its incident), not only observe:
# the replayer needs them too, or replay would not see the same commands.
WORKFLOW_INTERCEPTORS: Sequence[Any] = (IncidentInterceptor(),)
