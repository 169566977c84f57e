"""The shim's HTTP boundary: request and answer bodies of the shim's contract (README "Starter shim API"), as pydantic models.

Requests are validated here before anything touches Temporal; a schema error is a 422 naming every bad field
and nothing is started. Answers use the camelCase names of the contract (`executionId`, `runId`, `callbackUrl`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, HttpUrl, field_validator

CHANGE_NUMBER = r"^CHG\d{7}$"
SYS_ID = r"^[0-9a-f]{32}$"


def _reference_value(value: Any) -> Any:
    """A reference field may arrive as `{"link","value"}` when the rule serialises without
    `sysparm_exclude_reference_link`; the shim only needs the sys_id."""
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


Text = Annotated[str, BeforeValidator(_reference_value)]


def _named(value: str) -> str:
    # The workflow's `decide` validator says the same; refusing here saves a round trip to a worker.
    if not value.strip():
        raise ValueError("approver must not be empty")
    return value


Approver = Annotated[str, Field(max_length=200), AfterValidator(_named)]


class ChangeWebhook(BaseModel):
    """The change_request record as the Business Rule POSTs it (sandbox WEBHOOK_FIELDS). Every value is a string, as
    in the Table API; fields beyond these are allowed and ignored so an admin can add some without breaking us."""

    model_config = ConfigDict(extra="ignore")

    number: str = Field(pattern=CHANGE_NUMBER)
    sys_id: str = Field(pattern=SYS_ID)
    state: Text = ""
    type: Text = ""
    approval: Text = ""
    category: Text = ""
    short_description: Text = ""
    cmdb_ci: Text = ""
    cmdb_ci_name: Text = ""
    std_change_producer_version: Text = ""
    std_change_producer_version_name: Text = ""

    @field_validator("approval")
    @classmethod
    def _must_be_approved(cls, value: str) -> str:
        # The rule fires on approval; anything else reaching us is a mis-configured rule, and running a runbook for
        # an unapproved change is the one mistake this shim must never make.
        if value != "approved":
            raise ValueError(f"the change is not approved (approval={value!r}); only approved changes start runbooks")
        return value


class ServiceNowApproval(BaseModel):
    """An approval decided in ServiceNow, relayed to the waiting change workflow as a signal."""

    model_config = ConfigDict(extra="ignore")

    number: str = Field(pattern=CHANGE_NUMBER)
    approval: Literal["approved", "rejected"]
    approver: Approver
    comments: str = Field(default="", max_length=4000)


class FlowRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    inputs: dict[str, str] = {}
    callback_url: HttpUrl | None = Field(default=None, alias="callbackUrl")
    # A caller-chosen idempotency key: the same key twice is the same execution (`flow-<flow>-<key>`).
    key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")


class DecisionRequest(BaseModel):
    """Body of `/api/executions/{id}/approve|reject`; the decision itself comes from the path."""

    model_config = ConfigDict(extra="forbid")

    approver: Approver
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
    status: Literal["ok", "unavailable"]
    temporal: str
    detail: str = ""


def answer(model: BaseModel | dict[str, Any], status: int = 200) -> JSONResponse:
    """A 2xx answer in the contract's camelCase, without empty optional fields."""
    body = model if isinstance(model, dict) else model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return JSONResponse(body, status_code=status)
