"""Every workflow type replays its committed histories: a code change that would break running executions
fails here (put it behind `workflow.patched`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.catalog import WORKFLOW_INTERCEPTORS, WORKFLOWS

HISTORIES = sorted(Path(__file__).with_name("histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    return WorkflowHistory.from_json(data.pop("workflowId"), data)


def test_every_workflow_type_has_a_committed_history() -> None:
    recorded = set()
    for path in HISTORIES:
        history = load(path)
        recorded.add(history.events[0].workflow_execution_started_event_attributes.workflow_type.name)
    registered = {getattr(w, "__temporal_workflow_definition").name for w in WORKFLOWS}
    assert registered <= recorded, f"no committed history for {sorted(registered - recorded)}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_committed_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=list(WORKFLOWS), interceptors=list(WORKFLOW_INTERCEPTORS), data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(load(path))
