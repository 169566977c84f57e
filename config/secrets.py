"""Named secrets: the credentials a runbook step, a host driver or a reconciliation source uses, named, never written.

The registry and the reconciliation config say `{secret: FLEET_TOKEN}` (optionally with a `prefix` such as
`"Bearer "`); the worker reads FLEET_TOKEN from its own environment, and only when the operator listed the name in
CHANGELOOP_SECRET_NAMES. A name that is not listed is refused where the file is loaded into the worker, so a
registry entry can never read an arbitrary variable of the worker (the webhook token, the ServiceNow password).
A value shorter than MIN_SECRET_LENGTH stops the process at start: the scrubber (ops/scrub.py) replaces every
configured value wherever it appears, and a 3-character "secret" would shred every text and hide nothing.

Pure pydantic and the environment; no other product package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr

MIN_SECRET_LENGTH = 8
SECRET_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Header and variable names that carry credentials: their value must come from a named secret, never be written in
# the registry (which the shim reads too, and which an operator shares in a repository).
_CREDENTIAL_NAME = re.compile(
    r"(?i)^(?:(?:proxy-)?authorization|cookie|set-cookie|.*(?:token|secret|passw(?:or)?d|pwd|api[-_]?key|"
    r"private[-_]?key|credential|session).*)$"
)


class SecretsError(ValueError):
    """A named secret is not allowed, not set, or too short; the message names it, never its value."""


class SecretRef(BaseModel):
    """`{secret: NAME}`: the value of the worker's environment variable NAME, listed in CHANGELOOP_SECRET_NAMES;
    `prefix` is put in front (`"Bearer "` for an Authorization header)."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(pattern=SECRET_NAME)
    prefix: str = ""


# A header or environment value: a literal, or a named secret filled in by the worker.
Value = str | SecretRef


def credential_like(name: str) -> bool:
    return bool(_CREDENTIAL_NAME.match(name))


def literal_credentials(values: Mapping[str, Value], what: str) -> list[str]:
    """The problems of a header/env mapping: a credential-like name holding a literal value."""
    return [
        f"{what} {name!r} looks like a credential: name a secret ({{secret: NAME}}) instead of writing its value"
        for name, value in values.items()
        if isinstance(value, str) and credential_like(name)
    ]


def secret_names(values: Iterable[Mapping[str, Value]]) -> set[str]:
    return {value.secret for mapping in values for value in mapping.values() if isinstance(value, SecretRef)}


class NamedSecrets:
    """The worker's own named secrets: read once at start from its environment, only the listed names."""

    def __init__(self, allowed: Iterable[str], environ: Mapping[str, str]) -> None:
        self.allowed = sorted(set(allowed))
        bad = [name for name in self.allowed if not re.match(SECRET_NAME, name)]
        if bad:
            raise SecretsError(f"CHANGELOOP_SECRET_NAMES: not a variable name: {', '.join(bad)}")
        missing = [name for name in self.allowed if not environ.get(name)]
        if missing:
            raise SecretsError(f"CHANGELOOP_SECRET_NAMES lists {', '.join(missing)}, not set in the environment")
        short = [name for name in self.allowed if len(environ[name]) < MIN_SECRET_LENGTH]
        if short:
            raise SecretsError(
                f"secret(s) {', '.join(short)} shorter than {MIN_SECRET_LENGTH} characters: use real credentials "
                "(the scrubber would have to blank every occurrence of a short value in every log line and note)"
            )
        self._values = {name: SecretStr(environ[name]) for name in self.allowed}

    def check(self, names: Iterable[str], where: str) -> None:
        """Every name `where` (a registry, a reconcile config) references must be one of the worker's secrets."""
        unknown = sorted(set(names) - set(self.allowed))
        if unknown:
            raise SecretsError(
                f"{where} names secret(s) {', '.join(unknown)}, which CHANGELOOP_SECRET_NAMES does not list "
                f"(listed: {', '.join(self.allowed) or 'none'})"
            )

    def value(self, ref: SecretRef) -> str:
        if ref.secret not in self._values:
            raise SecretsError(f"secret {ref.secret} is not one of the worker's secrets (CHANGELOOP_SECRET_NAMES)")
        return ref.prefix + self._values[ref.secret].get_secret_value()

    def fill(self, values: Mapping[str, Value]) -> dict[str, str]:
        """A header/env mapping with every named secret replaced by its value (inside the worker only)."""
        return {name: self.value(v) if isinstance(v, SecretRef) else v for name, v in values.items()}

    def values(self) -> list[str]:
        return [secret.get_secret_value() for secret in self._values.values()]
