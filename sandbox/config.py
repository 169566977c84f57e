"""How a sandbox instance is set up at start: listen address, storage, credentials, misbehaviour, outbound hook."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from sandbox.acl import DEFAULT_ROLES
from sandbox.attachments import DEFAULT_MAX_SIZE_MB
from sandbox.auth import OAuthClient
from sandbox.faults import FaultConfig
from sandbox.profile import ProfileName

DEFAULT_USERS = {"admin": "admin", "changeloop.integration": "sn-integration-pw"}


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
    webhook_url: str | None = None
    webhook_token: str | None = None
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
