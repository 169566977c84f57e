"""Instance settings that change how the change process behaves: set at start (SandboxConfig) or at run time
(`PUT /sandbox/config`), read by the business rules, the approval flow and the Change Management API routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ProcessSettings(BaseModel):
    # The close fields of a change (close_code, close_notes) are mandatory through a UI policy by default, which
    # REST calls never meet; an admin who wants the Table API to enforce them adds a data policy. Off = default.
    close_fields_data_policy: bool = False
    # When a stage's approvals are done (create-approval-definitions.md "Wait for"): "all" responses (every
    # approval of the stage approved) or the "first" response.
    approval_wait_for: Literal["all", "first"] = "all"
    # The Change Management API (sn_chg_rest, a plugin): off answers like an instance without it.
    change_api: bool = True
