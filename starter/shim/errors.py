"""Every shim refusal speaks ServiceNow's error envelope `{"error":{"message","detail"},"status":"failure"}`, for
every code including 404, 405, 422 and 500, so a Business Rule or a Flow Designer action reads our errors like the
instance's own."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from ops.logs import get_logger

log = get_logger("changeloop.shim")


def envelope(status: int, message: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "detail": detail}, "status": "failure"}
    return JSONResponse(body, status_code=status, headers=headers)


class ShimError(Exception):
    """A refusal with its HTTP code; rendered as the envelope."""

    def __init__(self, status: int, message: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.message, self.detail = status, message, detail


def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "number") → "number"; ("body", "inputs", "host") → "inputs.host": the names a caller wrote.
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    broken = [e for e in errors if e.get("type") == "json_invalid"]
    if broken:
        reason = (broken[0].get("ctx") or {}).get("error", "JSON decode error")
        where = broken[0]["loc"][-1] if broken[0].get("loc") else "?"
        return envelope(400, "Invalid JSON", f"malformed JSON at character {where}: {reason}")
    problems = [f"{_field(tuple(e['loc']))}: {e['msg']}" for e in errors]
    return envelope(422, "Invalid request", "; ".join(problems))


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ShimError)
    return envelope(exc.status, exc.message, exc.detail)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    messages = {404: "No Record found", 405: "Method not allowed"}
    return envelope(exc.status_code, messages.get(exc.status_code, "Request failed"), str(exc.detail))


async def _temporal_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RPCError)
    log.warning("shim.temporal_error", status=exc.status.name, error=exc.message)
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return envelope(503, "Service Unavailable", f"Temporal did not answer: {exc.message}")
    return envelope(502, "Temporal error", exc.message)


async def _crashed(request: Request, exc: Exception) -> JSONResponse:
    log.exception("shim.unhandled", path=request.url.path)
    return envelope(500, "Internal Server Error", type(exc).__name__)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ShimError, _refused)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RPCError, _temporal_error)
    app.add_exception_handler(Exception, _crashed)
