"""The flow run's contract: a registry runbook started by name through the shim, and its callback."""

from __future__ import annotations

from pydantic import BaseModel


def flow_workflow_id(flow: str, key: str) -> str:
    return f"flow-{flow}-{key}"


class FlowRun(BaseModel):
    """Input of FlowRunWorkflow: a runbook started through `POST /api/flows/{flow}/run`."""

    flow: str
    inputs: dict[str, str] = {}
    callback_url: str = ""


class FlowName(BaseModel):
    flow: str


class CallbackInput(BaseModel):
    url: str
    payload: dict[str, object]
