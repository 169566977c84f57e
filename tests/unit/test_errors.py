"""Error mapping: each HTTP answer becomes its typed error, which says whether a retry can help.

respx stands in for the instance here (the one place tests may stand in for the instance: servicenow/ unit tests): these are the status
codes and headers a sandbox cannot easily produce on demand, and the client's retry decisions around them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import respx

from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.errors import (
    BadRequest,
    Forbidden,
    NotAuthenticated,
    NotFound,
    RateLimited,
    ServerError,
    ServiceNowError,
    TransportError,
    error_from_response,
    parse_retry_after,
)

BASE = "https://example.service-now.com"
RECORD_URL = f"{BASE}/api/now/table/incident/0123456789abcdef0123456789abcdef"
TABLE_URL = f"{BASE}/api/now/table/incident"


def envelope(message: str, detail: str = "") -> dict[str, object]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", RECORD_URL)
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (400, BadRequest, False),
        (401, NotAuthenticated, False),
        (403, Forbidden, False),
        (404, NotFound, False),
        (429, RateLimited, True),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
    ],
)
def test_each_status_maps_to_its_error_type_with_the_envelope_message(status, error_type, retryable):
    error = error_from_response(response(status, envelope("Operation Failed", "a business rule said no")))
    assert type(error) is error_type
    assert isinstance(error, ServiceNowError)
    assert error.retryable is retryable
    assert error.status_code == status
    assert error.message == "Operation Failed"
    assert error.detail == "a business rule said no"
    assert str(error) == "Operation Failed: a business rule said no"


def test_an_unexpected_4xx_is_a_bad_request_that_retrying_cannot_fix():
    error = error_from_response(response(409, envelope("Conflict")))
    assert isinstance(error, BadRequest)
    assert not error.retryable
    assert error.status_code == 409


def test_a_body_without_the_envelope_still_gives_a_readable_error():
    request = httpx.Request("GET", RECORD_URL)
    error = error_from_response(httpx.Response(502, text="<html>Bad Gateway</html>", request=request))
    assert isinstance(error, ServerError)
    assert error.message == "Bad Gateway"
    assert "<html>Bad Gateway</html>" in error.detail


def test_transport_errors_are_retryable():
    assert TransportError("no answer").retryable


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("1.5", 1.5), ("0", 0.0), ("-3", 0.0), (None, 1.0), ("", 1.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0)],
)
def test_retry_after_is_parsed_as_seconds(header, seconds):
    assert parse_retry_after(header) == seconds
    headers = {"Retry-After": header} if header is not None else {}
    error = error_from_response(response(429, envelope("Too Many Requests"), headers))
    assert isinstance(error, RateLimited)
    assert error.retry_after == seconds


# --- the client's retry decisions, over mocked HTTP ---------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[ServiceNowClient]:
    async with ServiceNowClient(BASE, BasicAuth("changeloop.integration", "pw"), max_retries=2) as client:
        yield client


@respx.mock
async def test_a_bad_request_is_raised_without_retrying(client):
    route = respx.get(RECORD_URL).respond(400, json=envelope("Invalid table"))
    with pytest.raises(BadRequest, match="Invalid table"):
        await client.get("incident", "0123456789abcdef0123456789abcdef")
    assert route.call_count == 1


@respx.mock
async def test_not_found_and_forbidden_are_raised_without_retrying(client):
    route = respx.get(RECORD_URL).mock(
        side_effect=[httpx.Response(404, json=envelope("No Record found")), httpx.Response(403, json=envelope("ACL"))]
    )
    with pytest.raises(NotFound):
        await client.get("incident", "0123456789abcdef0123456789abcdef")
    with pytest.raises(Forbidden):
        await client.get("incident", "0123456789abcdef0123456789abcdef")
    assert route.call_count == 2


@respx.mock
async def test_a_401_reauthenticates_once_then_raises_not_authenticated(client):
    route = respx.get(RECORD_URL).respond(401, json=envelope("User Not Authenticated"))
    with pytest.raises(NotAuthenticated):
        await client.get("incident", "0123456789abcdef0123456789abcdef")
    assert route.call_count == 2


@respx.mock
async def test_a_429_is_retried_after_retry_after_and_the_caller_gets_the_record(client):
    route = respx.get(RECORD_URL).mock(
        side_effect=[
            httpx.Response(429, json=envelope("Too Many Requests"), headers={"Retry-After": "0"}),
            httpx.Response(200, json={"result": {"sys_id": "0123456789abcdef0123456789abcdef"}}),
        ]
    )
    record = await client.get("incident", "0123456789abcdef0123456789abcdef")
    assert record["sys_id"] == "0123456789abcdef0123456789abcdef"
    assert route.call_count == 2


@respx.mock
async def test_a_429_longer_than_max_retry_after_is_raised_for_the_caller_to_schedule(client):
    route = respx.get(RECORD_URL).respond(429, json=envelope("Too Many Requests"), headers={"Retry-After": "3600"})
    with pytest.raises(RateLimited) as raised:
        await client.get("incident", "0123456789abcdef0123456789abcdef")
    assert raised.value.retry_after == 3600
    assert route.call_count == 1


@respx.mock
async def test_a_5xx_on_get_is_retried(client):
    route = respx.get(RECORD_URL).mock(
        side_effect=[
            httpx.Response(503, json=envelope("Service Unavailable")),
            httpx.Response(200, json={"result": {"sys_id": "0123456789abcdef0123456789abcdef"}}),
        ]
    )
    await client.get("incident", "0123456789abcdef0123456789abcdef")
    assert route.call_count == 2


@respx.mock
async def test_a_5xx_on_post_is_not_retried_because_the_create_may_have_happened(client):
    route = respx.post(TABLE_URL).respond(500, json=envelope("Internal error"))
    with pytest.raises(ServerError):
        await client.create("incident", {"short_description": "disk full"})
    assert route.call_count == 1


@respx.mock
async def test_a_connection_failure_on_post_is_a_transport_error_not_retried(client):
    route = respx.post(TABLE_URL).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(TransportError, match="ConnectError"):
        await client.create("incident", {"short_description": "disk full"})
    assert route.call_count == 1
