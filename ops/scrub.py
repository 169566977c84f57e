"""The one scrubber: every text that leaves the worker (or the shim) passes here first.

What it covers, and where it is applied:
- activity results and failures (message, details, causes) of every activity: ops/interceptors.py, so step output,
  status details, workflow results and failure messages in history are clean at the source;
- work notes, close notes, incident text, Slack messages and callback bodies: where each is sent (defence in depth,
  the text of a workflow may quote anything);
- every log record: structlog events and stdlib records (the Temporal SDK's `temporalio.*` loggers write activity
  failure tracebacks there), through ops/logs.py.

What it replaces: each configured secret (settings, and the worker's named secrets) in every form it is likely to
travel in: as is, URL-encoded, base64 (standard and URL-safe, at every byte alignment, so a secret inside a longer
base64 text such as a Basic header is caught too) and `user:password` as a Basic credential; in text and in bytes.
Then anything that reads like `password=...`, `token: ...` or `Authorization: Bearer ...`, and credentials in URLs,
whatever their value.

A secret shorter than MIN_SECRET_LENGTH stops the process at start (`install`): scrubbing `abc` everywhere would
shred logs and notes and still not protect anything.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel
from temporalio.exceptions import ApplicationError, FailureError

from config.secrets import MIN_SECRET_LENGTH, SecretsError

REDACTED = "***"
_MIN_FORM = 6  # shorter encoded fragments (a 1-char base64 edge) would match ordinary text

_SECRET_ASSIGNMENT = re.compile(
    r"(?i)((?:authorization|proxy-authorization)\s*[:=]\s*(?:bearer|basic|token)?\s*|"
    # db_password=, X-Api-Key:, "client_secret": ... - the key may carry a prefix
    r"\b[\w.-]*(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|refresh[_-]?token|token)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&*]+)"
)
_URL_CREDENTIALS = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)([^/\s:@]+):([^/\s@]+)@")


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 text of `raw` wherever it sits in a longer encoded text: one core per byte alignment, without the
    edge characters that depend on the bytes around it."""
    forms: set[str] = set()
    for shift in range(3):
        total = shift + len(raw)
        encoded = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        start = {0: 0, 1: 2, 2: 3}[shift]
        end = len(encoded) - (1 if total % 3 else 0)
        core = encoded[start:end]
        if len(core) >= _MIN_FORM:
            forms |= {core, core.replace("+", "-").replace("/", "_")}
    return forms


def forms_of(secret: str) -> set[str]:
    """Every form of one secret the scrubber looks for."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms |= _base64_forms(secret.encode())
    whole = base64.b64encode(secret.encode()).decode()
    forms |= {whole, whole.rstrip("="), base64.urlsafe_b64encode(secret.encode()).decode()}
    return {form for form in forms if form}


class Scrubber:
    """Replaces known secrets (all their forms) and credential-shaped assignments in text, bytes and structures."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._needles: set[str] = set()
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        found = {form for secret in secrets if secret for form in forms_of(secret)}
        self._rebuild(found)

    def add_basic(self, username: str | None, password: str | None) -> None:
        """The Basic credential `base64(user:password)` as a whole (its password part is caught by `add` too)."""
        if username and password:
            pair = f"{username}:{password}"
            self._rebuild({pair, base64.b64encode(pair.encode()).decode()})

    def _rebuild(self, found: set[str]) -> None:
        with self._lock:
            if found <= self._needles:
                return
            self._needles |= found
            ordered = sorted(self._needles, key=len, reverse=True)  # a secret containing another goes whole
            self._text = re.compile("|".join(re.escape(n) for n in ordered))
            self._bytes = re.compile(b"|".join(re.escape(n.encode()) for n in ordered))

    def text(self, value: str) -> str:
        if self._text is not None:
            value = self._text.sub(REDACTED, value)
        value = _SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, value)
        return _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", value)

    def bytes(self, value: bytes) -> bytes:
        if self._bytes is not None:
            value = self._bytes.sub(REDACTED.encode(), value)
        return value

    def value(self, value: Any) -> Any:
        """A copy of `value` with every text inside scrubbed: str, bytes, containers, pydantic models, dataclasses;
        an exception or any other object whose text holds a secret becomes its scrubbed text."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            return self.bytes(bytes(value))
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, BaseModel):
            fields = type(value).model_fields
            return value.model_copy(update={name: self.value(getattr(value, name)) for name in fields})
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.replace(
                value, **{f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
            )
        if isinstance(value, BaseException):
            return self.text(repr(value))
        text = str(value)
        clean = self.text(text)
        return value if clean == text else clean

    def dirty(self, text: str) -> bool:
        return self.text(text) != text


# The process's scrubber: the worker and the shim install their settings' secrets at start; the log processors and
# the activity interceptor use it. Secrets are only ever added (a test process runs workers with several settings).
SCRUBBER = Scrubber()


def scrub(value: Any) -> Any:
    return SCRUBBER.value(value)


def scrub_text(value: str) -> str:
    return SCRUBBER.text(value)


def _chain(error: BaseException) -> list[BaseException]:
    """The exception and the causes Temporal would serialise with it (`__cause__`, else unsuppressed context)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def _text_of(error: BaseException) -> str:
    if isinstance(error, ApplicationError):
        return f"{error.message}\n{error.details!r}"
    return str(error)


def _clean_copy(error: BaseException, cause: BaseException | None) -> BaseException:
    if isinstance(error, ApplicationError):
        copy = ApplicationError(
            SCRUBBER.text(error.message),
            *SCRUBBER.value(list(error.details)),
            type=error.type,
            non_retryable=error.non_retryable,
            next_retry_delay=error.next_retry_delay,
            category=error.category,
        )
    else:
        # What the SDK would send for it anyway: an application failure typed by the class name, retryable.
        copy = ApplicationError(SCRUBBER.text(str(error)), type=type(error).__name__)
    copy.__cause__ = cause
    copy.__suppress_context__ = True
    return copy


def clean_failure(error: BaseException) -> BaseException | None:
    """A copy of an activity's failure whose message, details and causes are scrubbed; None when none held a secret.
    Temporal's own failures (cancellation, timeouts) are never rewritten."""
    chain = _chain(error)
    if any(isinstance(e, FailureError) and not isinstance(e, ApplicationError) for e in chain):
        return None
    if not any(SCRUBBER.dirty(_text_of(e)) for e in chain):
        return None
    cause: BaseException | None = None
    for link in reversed(chain):
        cause = _clean_copy(link, cause)
    return cause


class WeakSecret(SecretsError):
    """A configured secret is too short; the message names the setting, never its value."""


def install(settings: Any, extra: Iterable[str] = ()) -> Scrubber:
    """Teach the process's scrubber every secret of `settings` (and `extra`: the worker's named secrets); stop with
    WeakSecret when one is shorter than MIN_SECRET_LENGTH."""
    short = settings.short_secrets()
    if short:
        raise WeakSecret(
            f"{', '.join(short)}: shorter than {MIN_SECRET_LENGTH} characters. Use a real secret "
            "(`openssl rand -hex 32`); a value this short cannot be kept out of logs and notes."
        )
    SCRUBBER.add([*settings.secret_values(), *extra])
    password = settings.servicenow_password.get_secret_value() if settings.servicenow_password else None
    SCRUBBER.add_basic(settings.servicenow_username, password)
    secret = settings.servicenow_client_secret.get_secret_value() if settings.servicenow_client_secret else None
    SCRUBBER.add_basic(settings.servicenow_client_id, secret)
    return SCRUBBER
