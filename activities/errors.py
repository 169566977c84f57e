"""Translate ServiceNow errors into Temporal retry semantics, in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.exceptions import ApplicationError

from servicenow.errors import RateLimited, ServiceNowError


def to_application_error(error: ServiceNowError) -> ApplicationError:
    """Non-retryable for what a retry cannot fix (400/401/403/404); a 429 carries Retry-After as next_retry_delay."""
    kind = type(error).__name__
    if isinstance(error, RateLimited):
        return ApplicationError(str(error), type=kind, next_retry_delay=timedelta(seconds=max(1.0, error.retry_after)))
    return ApplicationError(str(error), type=kind, non_retryable=not error.retryable)


@asynccontextmanager
async def servicenow_errors() -> AsyncIterator[None]:
    try:
        yield
    except ServiceNowError as error:
        raise to_application_error(error) from error
