"""Who may call the shim: principals, each with its own bearer token and the scopes that say what the token does.

An operator lists principals in `CHANGELOOP_PRINCIPALS` (JSON) and/or a YAML file (`CHANGELOOP_PRINCIPALS_FILE`):

    - name: servicenow                    # the Business Rules' REST message
      token_sha256: 9f86d081884c7d65...   # sha256 of the token, hex: the shim never needs the token itself
      scopes: [change:webhook]
    - name: alice.ops                     # a person who approves: decisions are recorded under this name
      token_sha256: ...
      scopes: [approval:decide, execution:read]

A principal may give `token` (the clear value, e.g. from a secret store) instead of `token_sha256`; the shim hashes
it at start. Tokens shorter than 32 characters, or equal to a placeholder shipped in this repository's examples,
stop the shim at start: a weak token is worse than none, because it looks like protection.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

# The scopes, README "Security model". change:webhook covers every /api/servicenow/* endpoint: each is a hint that
# makes a workflow re-read ServiceNow, so the Business Rule's token can start changes and nothing else.
CHANGE_WEBHOOK = "change:webhook"
APPROVAL_DECIDE = "approval:decide"
EXECUTION_READ = "execution:read"
INCIDENT_RESOLVE = "incident:resolve"
FLOW_RUN_ANY = "flow:run:*"
FLOW_RUN_PREFIX = "flow:run:"
SCOPES = (CHANGE_WEBHOOK, APPROVAL_DECIDE, EXECUTION_READ, INCIDENT_RESOLVE, FLOW_RUN_ANY)
_FLOW_SCOPE = re.compile(r"^flow:run:[A-Za-z0-9._-]{1,100}$")

MIN_TOKEN_LENGTH = 32
# Every token value this repository ever shows as an example (deploy/.env.example, deploy/kubernetes, the README,
# old defaults): a deployment that copied one verbatim must not start. tests/security checks the files against it.
PLACEHOLDER_TOKENS = (
    "change-me-webhook-token",
    "change-me-decision-key",
    "change-me",
    "changeme",
    "<64 hex characters>",
    "<codec bearer token>",
    "<token>",
    "...",
)
PLACEHOLDER_HASHES = frozenset(hashlib.sha256(p.encode()).hexdigest() for p in PLACEHOLDER_TOKENS)
LEGACY_PRINCIPAL = "servicenow"  # what CHANGELOOP_WEBHOOK_TOKEN alone becomes


class PrincipalError(ValueError):
    """The shim's credentials are unusable; the message says which principal and why."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def weakness(token: str) -> str | None:
    """Why a clear token must not be used, or None."""
    if token.strip() in PLACEHOLDER_TOKENS or token_hash(token) in PLACEHOLDER_HASHES:
        return "is a placeholder from changeloop's examples"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is {len(token)} characters long; at least {MIN_TOKEN_LENGTH} are required (openssl rand -hex 32)"
    return None


def valid_scope(scope: str) -> bool:
    return scope in SCOPES or bool(_FLOW_SCOPE.match(scope))


class PrincipalConfig(BaseModel):
    """A principal as the operator writes it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
    token: SecretStr | None = None
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    scopes: list[str] = []

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = [s for s in scopes if not valid_scope(s)]
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; known: {', '.join(SCOPES)}, flow:run:<runbook>")
        return scopes

    @model_validator(mode="after")
    def _one_token(self) -> PrincipalConfig:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError(f"principal {self.name!r} needs exactly one of 'token' or 'token_sha256'")
        return self


class Principal(BaseModel):
    """A principal as the shim holds it: the token's hash only."""

    name: str
    token_sha256: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        if scope in self.scopes:
            return True
        return scope.startswith(FLOW_RUN_PREFIX) and FLOW_RUN_ANY in self.scopes


def _from_config(config: PrincipalConfig, where: str) -> Principal:
    if config.token is not None:
        problem = weakness(config.token.get_secret_value())
        if problem:
            raise PrincipalError(f"{where}: the token of principal {config.name!r} {problem}")
        digest = token_hash(config.token.get_secret_value())
    else:
        assert config.token_sha256 is not None
        digest = config.token_sha256
        if digest in PLACEHOLDER_HASHES:
            raise PrincipalError(
                f"{where}: the token of principal {config.name!r} is a placeholder (its sha256 matches)"
            )
    return Principal(name=config.name, token_sha256=digest, scopes=frozenset(config.scopes))


def read_principals_file(path: Path) -> list[PrincipalConfig]:
    try:
        data: Any = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise PrincipalError(f"cannot read principals file {path}: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("principals", [])
    if not isinstance(data, list):
        raise PrincipalError(f"{path}: expected a list of principals")
    try:
        return [PrincipalConfig.model_validate(item) for item in data]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PrincipalError(f"{path}: {problems}") from exc


def load_principals(
    listed: list[PrincipalConfig], file: Path | None, webhook_token: SecretStr | None
) -> list[Principal]:
    """Every principal of the environment, the file and the single-token setup; refuses weak, placeholder,
    duplicate or shared tokens. Raises PrincipalError with a message for the operator."""
    principals = [_from_config(c, "CHANGELOOP_PRINCIPALS") for c in listed]
    if file is not None:
        principals += [_from_config(c, str(file)) for c in read_principals_file(file)]
    if webhook_token is not None and webhook_token.get_secret_value():
        # The upgrade path: a single-token deployment keeps working, but its token can only start changes now.
        legacy = PrincipalConfig(name=LEGACY_PRINCIPAL, token=webhook_token, scopes=[CHANGE_WEBHOOK])
        principals.append(_from_config(legacy, "CHANGELOOP_WEBHOOK_TOKEN"))
    names = [p.name for p in principals]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise PrincipalError(
            f"principal name(s) given twice: {', '.join(twice)} (CHANGELOOP_WEBHOOK_TOKEN is {LEGACY_PRINCIPAL!r})"
        )
    hashes = [p.token_sha256 for p in principals]
    if len(set(hashes)) != len(hashes):
        raise PrincipalError("two principals share one token: give each caller its own")
    if not principals:
        raise PrincipalError(
            "the shim has no principals: set CHANGELOOP_PRINCIPALS, CHANGELOOP_PRINCIPALS_FILE or (single-token "
            "setup) CHANGELOOP_WEBHOOK_TOKEN; every /api/* call is checked against them"
        )
    return principals
