"""Issue 12, item 1: the worker runs only its own registry. A workflow carries a runbook's name and digest; steps,
commands, URLs and credentials in an input are never run - whoever starts the workflow (`temporal workflow execute`
is `client.execute_workflow` here) and whatever the input says."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from config.reconcile import ReconcileConfig, config_digest
from config.registry import Registry
from config.runbooks import runbook_digest
from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.helpers import wait_for
from tests.security.conftest import marker, scheduled_activities
from worker import build_worker
from workflows.runbook.models import RunbookResult, RunbookRun, StepInput

pytestmark = pytest.mark.usefixtures("hardened")


def foreign_steps(path: Path) -> list[dict[str, Any]]:
    """What the attacker sends: a command that would leave `path` behind (and print the webhook token)."""
    return [
        {
            "name": "s",
            "command": ["/bin/sh", "-c", f"id > {path}; echo $CHANGELOOP_WEBHOOK_TOKEN >> {path}"],
        }
    ]


def failure_of(error: WorkflowFailureError) -> ApplicationError:
    cause = error.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


@pytest.mark.parametrize("name", ["x", "touch_marker"], ids=["unknown-name", "registry-name"])
async def test_a_hand_started_runbook_workflow_with_foreign_steps_runs_nothing(
    temporal_client: Client, hardened_settings: Settings, tmp_path: Path, name: str
) -> None:
    target = marker(tmp_path)
    workflow_id = f"runbook-sec-{uuid.uuid4().hex[:8]}"
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal_client.execute_workflow(
            "RunbookWorkflow",
            {"runbook": {"name": name, "steps": foreign_steps(target)}},
            id=workflow_id,
            task_queue=hardened_settings.task_queue,
        )
    refused = failure_of(failure.value)
    assert refused.type == "InlineRunbookRefused" and refused.non_retryable
    assert "by reference" in refused.message
    assert await scheduled_activities(temporal_client, workflow_id) == [], "nothing was scheduled, not even a lookup"
    assert not target.exists()


async def test_steps_sent_beside_a_valid_reference_are_refused(
    temporal_client: Client, hardened_settings: Settings, security_registry: Registry, tmp_path: Path
) -> None:
    """Unknown fields of the input are refused by the model; an extra `steps` never reaches a step."""
    target = marker(tmp_path)
    digest = runbook_digest(security_registry.runbooks["touch_marker"])
    with pytest.raises(ValidationError):
        StepInput.model_validate(
            {"runbook": "touch_marker", "digest": digest, "index": 0, "name": "mark", "step": foreign_steps(target)[0]}
        )
    workflow_id = f"runbook-sec-{uuid.uuid4().hex[:8]}"
    result = await temporal_client.execute_workflow(
        "RunbookWorkflow",
        {
            "runbook": "touch_marker",
            "digest": digest,
            "variables": {"marker": str(target)},
            "steps": foreign_steps(target),
        },
        id=workflow_id,
        task_queue=hardened_settings.task_queue,
        result_type=RunbookResult,
    )
    # The registry's own step ran (it wrote 'ran'); the foreign one did not (it would have written `id` output).
    assert result.succeeded and [s.name for s in result.steps] == ["mark"]
    assert target.read_text() == "ran"


@pytest.mark.parametrize(
    "reference",
    [
        {"runbook": "touch_marker", "digest": "0" * 64},
        {"runbook": "touch_marker"},
        {"runbook": "no_such_runbook", "digest": "0" * 64},
    ],
    ids=["wrong-digest", "no-digest", "unknown-name"],
)
async def test_an_unknown_name_or_a_digest_that_does_not_match_is_refused_before_any_step(
    temporal_client: Client, hardened_settings: Settings, tmp_path: Path, reference: dict[str, str]
) -> None:
    target = marker(tmp_path)
    workflow_id = f"runbook-sec-{uuid.uuid4().hex[:8]}"
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal_client.execute_workflow(
            "RunbookWorkflow",
            reference | {"variables": {"marker": str(target)}},
            id=workflow_id,
            task_queue=hardened_settings.task_queue,
        )
    refused = failure_of(failure.value)
    assert refused.type == "RegistryChanged" and refused.non_retryable
    assert await scheduled_activities(temporal_client, workflow_id) == ["resolve_runbook_entry"]
    assert not target.exists()


async def test_a_registry_edit_during_a_run_stops_the_steps_that_follow(
    temporal_client: Client, hardened_settings: Settings, security_registry: Registry, tmp_path: Path, sandbox: Any
) -> None:
    """Each step is looked up again with the run's digest: the entry that changed runs nothing more."""
    registry = security_registry.model_copy(deep=True)
    book = registry.runbooks["touch_marker"]
    started, gate, after = tmp_path / "started", tmp_path / "release", marker(tmp_path)
    waiting = book.steps[0].model_copy(
        update={
            "name": "wait",
            "command": [
                "{python}",
                "-c",
                "import pathlib, sys, time\npathlib.Path(sys.argv[1]).write_text('x')\n"
                "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.05)",
                str(started),
                str(gate),
            ],
        }
    )
    book.steps = [waiting, book.steps[0]]
    settings = hardened_settings.model_copy(update={"task_queue": f"security-edit-{uuid.uuid4().hex[:6]}"})
    async with ServiceNowClient.from_settings(settings) as sn, build_worker(temporal_client, settings, registry, sn):
        handle = await temporal_client.start_workflow(
            "RunbookWorkflow",
            RunbookRun(runbook="touch_marker", digest=runbook_digest(book), variables={"marker": str(after)}),
            id=f"runbook-sec-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
        await wait_for(started.exists, timeout=30, message="first step running")
        registry.runbooks["touch_marker"] = book.model_copy(update={"description": "edited while it ran"})
        gate.write_text("go")
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "changed in the registry since the run started" in str(failure_of(failure.value).message)
    assert not after.exists(), "the step after the edit did not run"


async def test_a_hand_started_reconciliation_with_a_config_in_its_input_runs_nothing(
    temporal_client: Client, hardened_settings: Settings, tmp_path: Path
) -> None:
    target = marker(tmp_path)
    config = ReconcileConfig.model_validate(
        {"sources": [{"name": "evil", "kind": "command", "argv": ["/bin/sh", "-c", f"touch {target}; echo []"]}]}
    )
    workflow_id = f"reconcile-sec-{uuid.uuid4().hex[:8]}"
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal_client.execute_workflow(
            "ReconcileWorkflow",
            {"config": config.model_dump(mode="json", by_alias=True), "digest": config_digest(config)},
            id=workflow_id,
            task_queue=hardened_settings.task_queue,
        )
    assert failure_of(failure.value).type == "InlineConfigRefused"
    assert await scheduled_activities(temporal_client, workflow_id) == []
    assert not target.exists()


async def test_a_reconciliation_names_only_configs_of_the_worker(
    temporal_client: Client, hardened_settings: Settings
) -> None:
    workflow_id = f"reconcile-sec-{uuid.uuid4().hex[:8]}"
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal_client.execute_workflow(
            "ReconcileWorkflow",
            {"config": "../../etc/passwd"},
            id=workflow_id,
            task_queue=hardened_settings.task_queue,
        )
    refused = failure_of(failure.value)
    assert refused.type == "ReconcileConfigChanged" and "not a reconciliation config name" in refused.message
    assert await scheduled_activities(temporal_client, workflow_id) == ["reconcile_resolve_config"]
