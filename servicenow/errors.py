"""Typed errors from ServiceNow's error envelope `{"error":{"message","detail"},"status":"failure"}`.

Each error says whether a retry can help, so callers (the activities) can map it to Temporal retry semantics
without knowing HTTP (the retry policies in workflows/calls.py are built from `retryable`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: workflow code imports these classes, and must not pull httpx in
    import httpx


class ServiceNowError(Exception):
    retryable: bool = False

    def __init__(self, message: str, detail: str = "", status_code: int | None = None) -> None:
        super().__init__(f"{message}: {detail}" if detail else message)
        self.message = message
        self.detail = detail
        self.status_code = status_code


class BadRequest(ServiceNowError):
    """400: the request is wrong; the same request will fail the same way."""


class NotAuthenticated(ServiceNowError):
    """401 after one re-authentication: credentials are wrong or revoked."""


class Forbidden(ServiceNowError):
    """403: ACL, business rule or data policy refused the operation (e.g. a change state jump)."""


class NotFound(ServiceNowError):
    """404: no such record, or an ACL hides it."""


class RateLimited(ServiceNowError):
    """429: the instance's rate limit rule; wait `retry_after` seconds."""

    retryable = True

    def __init__(self, message: str, detail: str = "", status_code: int | None = 429, retry_after: float = 1.0) -> None:
        super().__init__(message, detail, status_code)
        self.retry_after = retry_after


class ServerError(ServiceNowError):
    """5xx: the instance failed; usually transient."""

    retryable = True


class TransportError(ServiceNowError):
    """No HTTP answer: connection refused, reset or timed out. The request may or may not have been applied."""

    retryable = True


def _envelope(response: httpx.Response) -> tuple[str, str]:
    try:
        body: Any = response.json()
    except ValueError:
        return response.reason_phrase or f"HTTP {response.status_code}", response.text[:500]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or response.reason_phrase), str(error.get("detail") or "")
    return response.reason_phrase or f"HTTP {response.status_code}", ""


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def error_from_response(response: httpx.Response) -> ServiceNowError:
    """Map a non-2xx answer to its typed error."""
    message, detail = _envelope(response)
    status = response.status_code
    if status == 400:
        return BadRequest(message, detail, status)
    if status == 401:
        return NotAuthenticated(message, detail, status)
    if status == 403:
        return Forbidden(message, detail, status)
    if status == 404:
        return NotFound(message, detail, status)
    if status == 429:
        return RateLimited(message, detail, status, parse_retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        return ServerError(message, detail, status)
    return BadRequest(message, detail, status)
