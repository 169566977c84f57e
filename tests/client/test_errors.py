"""Each failure the instance can answer reaches the caller as its typed error, retried only when that is safe."""

from __future__ import annotations

import time

import pytest

from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.errors import (
    BadRequest,
    Forbidden,
    NotAuthenticated,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
)
from servicenow.query import Query
from tests.conftest import ADMIN_USER
from tests.helpers import refused_port


async def test_an_unknown_table_is_a_bad_request(sn_client: ServiceNowClient):
    with pytest.raises(BadRequest, match="Invalid table") as raised:
        await sn_client.list("no_such_table")
    assert raised.value.status_code == 400
    assert not raised.value.retryable


async def test_a_wrong_password_is_not_authenticated(sandbox_url: str):
    async with ServiceNowClient(sandbox_url, BasicAuth("changeloop.integration", "wrong")) as client:
        with pytest.raises(NotAuthenticated) as raised:
            await client.get("incident", "0" * 32)
    assert raised.value.status_code == 401
    assert not raised.value.retryable


async def test_a_change_state_jump_is_forbidden_by_the_business_rule(sn_client: ServiceNowClient, scope_id):
    change = await sn_client.create("change_request", {"short_description": f"{scope_id} jump", "type": "normal"})
    try:
        with pytest.raises(Forbidden) as raised:
            await sn_client.update("change_request", change["sys_id"], {"state": "-1"})  # New -> Implement
        assert raised.value.status_code == 403
        assert raised.value.detail  # the business rule says why
        assert not raised.value.retryable
        assert (await sn_client.get("change_request", change["sys_id"]))["state"] == "-5"  # nothing written
    finally:
        await sn_client.delete("change_request", change["sys_id"])


async def test_a_missing_record_is_not_found(sn_client: ServiceNowClient, sandbox_control):
    before = await sandbox_control.requests_to("GET", "incident")
    with pytest.raises(NotFound) as raised:
        await sn_client.get("incident", "f" * 32)
    assert raised.value.status_code == 404
    assert await sandbox_control.requests_to("GET", "incident") - before == 1  # not retried


# A bucket of two requests refilled at one per second: the third call in a row is refused with Retry-After: 1.
RATE_LIMIT = {"enabled": True, "rate": 1, "burst": 2}


@pytest.mark.usefixtures("reset_faults")
async def test_a_rate_limited_call_waits_retry_after_then_succeeds(sandbox_url: str, sandbox_control):
    await sandbox_control.set_faults(rate_limit=RATE_LIMIT)
    async with ServiceNowClient(sandbox_url, BasicAuth(*ADMIN_USER), max_retries=3) as client:
        await client.count("cmdb_ci")
        await client.count("cmdb_ci")
        before = await sandbox_control.requests_to("GET", "cmdb_ci")
        started = time.monotonic()

        total = await client.count("cmdb_ci")

        elapsed = time.monotonic() - started
    assert total > 0
    assert elapsed >= 1.0  # it honoured Retry-After
    assert client.calls == {"2xx": 3, "4xx": 1}
    assert await sandbox_control.requests_to("GET", "cmdb_ci") - before == 2  # the refused call and the retry


@pytest.mark.usefixtures("reset_faults")
async def test_a_rate_limited_call_without_retries_raises_with_retry_after(sandbox_url: str, sandbox_control):
    await sandbox_control.set_faults(rate_limit=RATE_LIMIT)
    async with ServiceNowClient(sandbox_url, BasicAuth(*ADMIN_USER), max_retries=0) as client:
        await client.count("cmdb_ci")
        await client.count("cmdb_ci")
        started = time.monotonic()
        with pytest.raises(RateLimited) as raised:
            await client.count("cmdb_ci")
        assert time.monotonic() - started < 1.0  # raised at once: the caller schedules the retry
    assert raised.value.status_code == 429
    assert raised.value.retry_after >= 1
    assert raised.value.retryable


@pytest.mark.usefixtures("reset_faults")
async def test_a_server_error_on_create_is_raised_at_once_because_a_post_is_not_idempotent(
    sn_client: ServiceNowClient, sandbox_control, scope_id
):
    await sandbox_control.set_faults(error_rate=1.0, error_statuses=[500])
    posts_before = await sandbox_control.requests_to("POST", "incident")

    with pytest.raises(ServerError) as raised:
        await sn_client.create("incident", {"short_description": f"{scope_id} 500", "correlation_id": scope_id})

    assert raised.value.status_code == 500
    assert raised.value.retryable  # the caller may retry, after looking the record up by its natural key
    assert await sandbox_control.requests_to("POST", "incident") - posts_before == 1
    await sandbox_control.clear_faults()
    assert await sn_client.count("incident", Query().eq("correlation_id", scope_id)) == 0


@pytest.mark.usefixtures("reset_faults")
async def test_a_transient_server_error_on_a_read_is_retried_and_the_caller_gets_the_answer(
    sn_client: ServiceNowClient, sandbox_control
):
    await sandbox_control.set_faults(
        rules=[{"method": "GET", "table": "cmdb_ci_server", "count": 1, "mode": "error_503"}]
    )
    before = await sandbox_control.requests_to("GET", "cmdb_ci_server")

    servers = await sn_client.list("cmdb_ci_server", Query().isnotempty("name"), limit=3)

    assert len(servers) == 3
    assert sn_client.calls == {"5xx": 1, "2xx": 1}
    assert await sandbox_control.requests_to("GET", "cmdb_ci_server") - before == 2


@pytest.mark.usefixtures("reset_faults")
async def test_a_create_that_times_out_after_the_write_is_not_repeated_and_is_found_by_its_natural_key(
    sandbox_url: str, sandbox_control, scope_id
):
    # The duplicates trap of a non-idempotent POST: the instance commits, the answer never arrives.
    await sandbox_control.set_faults(
        rules=[{"method": "POST", "table": "incident", "count": 1, "mode": "timeout_after_write", "hang_seconds": 2}]
    )
    integration = BasicAuth("changeloop.integration", "sn-integration-pw")
    async with ServiceNowClient(sandbox_url, integration, timeout=0.5) as impatient:
        with pytest.raises(TransportError):
            await impatient.create("incident", {"short_description": f"{scope_id} timeout", "correlation_id": scope_id})
    # The look-up and the clean-up get the usual timeout: only the faulted POST is meant to time out.
    async with ServiceNowClient(sandbox_url, integration) as client:
        found = await client.list("incident", Query().eq("correlation_id", scope_id))
        assert len(found) == 1  # written once, and the caller can find it before creating again
        await client.delete("incident", found[0]["sys_id"])


async def test_an_unreachable_instance_is_a_transport_error():
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}"
        async with ServiceNowClient(
            url, BasicAuth("changeloop.integration", "sn-integration-pw"), max_retries=1
        ) as client:
            with pytest.raises(TransportError, match="ConnectError") as raised:
                await client.get("incident", "0" * 32)
            assert client.calls == {"transport_error": 2}  # a read is retried once, then given up
    assert raised.value.retryable
    assert raised.value.status_code is None
