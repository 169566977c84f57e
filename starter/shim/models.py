"""The shim's HTTP boundary: request and answer bodies of the shim's contract (README "Starter shim API"), as pydantic models.

Requests are validated here before anything touches Temporal; a schema error is a 422 naming every bad field
and nothing is started. Answers use the camelCase names of the contract (`executionId`, `runId`, `callbackUrl`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, HttpUrl

# ASCII digits only: `\d` also matches other scripts' digits (CHG٠١٢٣٤٥٦ would pass), and the number is a query value.
CHANGE_NUMBER = r"^CHG[0-9]{7}$"
SYS_ID = r"^[0-9a-f]{32}$"


def _reference_value(value: Any) -> Any:
    """A reference field may arrive as `{"link","value"}` when the rule serialises without
    `sysparm_exclude_reference_link`; the shim only needs the sys_id."""
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


Text = Annotated[str, BeforeValidator(_reference_value)]


class ChangeWebhook(BaseModel):
    """The change_request record as the Business Rule POSTs it. A hint (number, sys_id): the change workflow reads
    the ticket from ServiceNow and trusts nothing else in the body (not its `approval`, not its `state`), so other
    fields are accepted and ignored, and an admin can add some without breaking us."""

    model_config = ConfigDict(extra="ignore")

    number: str = Field(pattern=CHANGE_NUMBER)
    sys_id: str = Field(pattern=SYS_ID)


class ServiceNowApproval(BaseModel):
    """What the approval Business Rule sends when an approval of a change is decided (deploy/servicenow/). A hint:
    the gate reads the `sysapproval_approver` records itself, so only the number is used."""

    model_config = ConfigDict(extra="ignore")

    number: str = Field(pattern=CHANGE_NUMBER)
    sys_id: Text = Field(default="", max_length=32)
    approval_sys_id: Text = Field(default="", max_length=32)
    approval: Literal["approved", "rejected"] | None = None
    approver: str = Field(default="", max_length=200)
    comments: str = Field(default="", max_length=4000)


class ChangeEvent(BaseModel):
    """What the change-event Business Rule sends when a change is canceled, put on hold or rescheduled: a hint,
    recorded by the change workflow (`ticket_changed`)."""

    model_config = ConfigDict(extra="ignore")

    number: str = Field(pattern=CHANGE_NUMBER)
    sys_id: Text = Field(default="", max_length=32)
    state: Text = Field(default="", max_length=10)
    on_hold: Text = Field(default="", max_length=10)
    on_hold_reason: Text = Field(default="", max_length=4000)
    start_date: Text = Field(default="", max_length=40)
    end_date: Text = Field(default="", max_length=40)


class FlowRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    inputs: dict[str, str] = {}
    callback_url: HttpUrl | None = Field(default=None, alias="callbackUrl")
    # A caller-chosen idempotency key: the same key twice is the same execution (`flow-<flow>-<key>`).
    key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")


class DecisionRequest(BaseModel):
    """Body of `/api/executions/{id}/approve|reject`; the decision comes from the path, the approver is the caller's
    principal. `approver` may be given only as that same name (callers written for the old contract)."""

    model_config = ConfigDict(extra="forbid")

    approver: str | None = Field(default=None, max_length=200)
    comments: str = Field(default="", max_length=4000)


# -- answers ---------------------------------------------------------------------------------------------------------
class Started(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    execution_id: str = Field(serialization_alias="executionId")
    run_id: str | None = Field(default=None, serialization_alias="runId")
    status: str = "RUNNING"
    url: str | None = None
    duplicate: bool | None = None


class Progress(BaseModel):
    done: int = 0
    total: int = 0


class ExecutionStatus(BaseModel):
    execution_id: str = Field(serialization_alias="executionId")
    run_id: str | None = Field(default=None, serialization_alias="runId")
    workflow_type: str = Field(serialization_alias="workflowType")
    status: str
    step: str = ""
    progress: Progress = Progress()
    # Extras for a change workflow, so a caller polling this endpoint sees when the approval gate waits for it.
    phase: str | None = None
    gate: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None
    url: str


class Health(BaseModel):
    """ok or not: a probe learns nothing else (no address, no exception text)."""

    status: Literal["ok", "unavailable"]


def answer(model: BaseModel | dict[str, Any], status: int = 200) -> JSONResponse:
    """A 2xx answer in the contract's camelCase, without empty optional fields."""
    body = model if isinstance(model, dict) else model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return JSONResponse(body, status_code=status)
