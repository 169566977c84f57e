"""How a sandbox instance is set up at start: listen address, storage, credentials, misbehaviour, outbound hook."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from sandbox.acl import DEFAULT_ROLES
from sandbox.attachments import DEFAULT_MAX_SIZE_MB
from sandbox.auth import OAuthClient
from sandbox.faults import FaultConfig
from sandbox.profile import ProfileName

DEFAULT_USERS = {
    "admin": "admin",
    "changeloop.integration": "sn-integration-pw",
    # People who approve (or try to): they PATCH their own sysapproval_approver records.
    "alice.ops": "alice.ops-pw",
    "bob.sre": "bob.sre-pw",
    "carol.cab": "carol.cab-pw",
    "dave.data": "dave.data-pw",
    "mallory": "mallory-pw",
}


class SandboxConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080  # 0 picks a free port (tests)
    # ":memory:" for tests; the CLI passes a file under .changeloop/ so the instance survives restarts.
    db_path: str = ":memory:"
    users: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_USERS))
    clients: dict[str, OAuthClient] = Field(
        default_factory=lambda: {"changeloop": OAuthClient(secret="changeloop-secret")}
    )
    token_lifetime: float = Field(default=1799.0, gt=0)  # seconds; tests use ~2 s to exercise refresh
    faults: FaultConfig = Field(default_factory=FaultConfig)
    # Where the outbound Business Rules POST: the shim's change URL (…/api/servicenow/change) or its base URL.
    # Setting it installs the rules, the REST message and the x_changeloop.* properties (sandbox/outbound_rules.py).
    webhook_url: str | None = None
    webhook_token: str | None = None  # x_changeloop.webhook_token: change, approval and event rules
    incident_token: str | None = None  # x_changeloop.incident_token: the incident-resolved rule
    # sandbox/process_settings.py
    close_fields_data_policy: bool = False
    approval_wait_for: Literal["all", "first"] = "all"
    change_api: bool = True
    seed: bool = True  # load sandbox/seed.yaml into an empty database
    seed_file: Path | None = None  # another seed file instead of the packaged one
    log_level: str = "warning"
    # Each user's roles (sandbox/acl.py); table ACLs check them. A user of `users` not named here gets `itil`.
    # `/sandbox/roles` changes them while running.
    roles: dict[str, list[str]] = Field(default_factory=lambda: {u: list(r) for u, r in DEFAULT_ROLES.items()})
    # "default" answers at once; "realistic" is 150 ms ± 50 ms per call, +0.5 ms per listed row, and an hourly
    # rate limit rule for the integration user (sandbox/profile.py). `/sandbox/profile` changes it while running.
    profile: ProfileName = "default"
    # com.glide.attachment.max_size, in MB (c_AttachmentAPI.md: 1024 by default). `/sandbox/properties` changes it.
    attachment_max_size_mb: float = Field(default=DEFAULT_MAX_SIZE_MB, gt=0)
