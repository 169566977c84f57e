"""The instance's error envelope `{"error":{"message","detail"},"status":"failure"}` and the exception carrying it."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


def envelope(message: str, detail: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, detail: str | None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = headers or {}


async def api_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(envelope(exc.message, exc.detail), status_code=exc.status, headers=exc.headers)


async def http_error_handler(_: Request, exc: Exception) -> JSONResponse:
    """Unknown paths answer like the instance does, not with FastAPI's `{"detail": ...}`."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return JSONResponse(envelope("Requested URI does not represent any resource", None), status_code=400)
    return JSONResponse(envelope(str(exc.detail), None), status_code=exc.status_code)
