"""OAuth against /oauth_token.do: tokens are obtained, reused, refreshed before expiry and renewed after a 401
without the caller ever seeing an authentication error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx
import pytest
import pytest_asyncio

from servicenow.auth import OAuth
from servicenow.client import ServiceNowClient
from servicenow.errors import NotAuthenticated
from tests.conftest import INTEGRATION_USER, OAUTH_CLIENT, SandboxControl


@dataclass
class Exchange:
    path: str
    status: int
    grant: str | None  # grant_type of a token request
    authorization: str | None


class RecordingTransport(httpx.AsyncHTTPTransport):
    """Real HTTP, but remembers each exchange so a test can see which grant was used and what answered 401."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        grant = None
        if request.url.path == "/oauth_token.do":
            grant = dict(parse_qsl(request.content.decode())).get("grant_type")
        self.exchanges.append(
            Exchange(request.url.path, response.status_code, grant, request.headers.get("authorization"))
        )
        return response

    @property
    def grants(self) -> list[str | None]:
        return [e.grant for e in self.exchanges if e.path == "/oauth_token.do"]

    @property
    def table_statuses(self) -> list[int]:
        return [e.status for e in self.exchanges if e.path.startswith("/api/now/table/")]


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def password_grant() -> OAuth:
    return OAuth(OAUTH_CLIENT[0], OAUTH_CLIENT[1], username=INTEGRATION_USER[0], password=INTEGRATION_USER[1])


@pytest_asyncio.fixture(loop_scope="session")
async def token_lifetime(sandbox_control: SandboxControl) -> AsyncIterator[SandboxControl]:
    """For a test that changes the instance's token lifetime: restored afterwards."""
    original = (await sandbox_control.config())["token_lifetime"]
    try:
        yield sandbox_control
    finally:
        await sandbox_control.set_config(token_lifetime=original)


async def test_a_token_is_obtained_once_and_reused_while_fresh(sandbox_url, transport, password_grant, token_lifetime):
    await token_lifetime.set_config(token_lifetime=120)
    async with ServiceNowClient(sandbox_url, password_grant, transport=transport) as client:
        for _ in range(3):
            await client.count("incident")

    assert transport.grants == ["password"]
    assert password_grant.token_requests == 1
    assert transport.table_statuses == [200, 200, 200]
    assert len({e.authorization for e in transport.exchanges if e.path != "/oauth_token.do"}) == 1


async def test_an_expired_token_is_renewed_without_the_caller_noticing(
    sandbox_url, transport, password_grant, token_lifetime
):
    await token_lifetime.set_config(token_lifetime=120)
    async with ServiceNowClient(sandbox_url, password_grant, transport=transport) as client:
        before = await client.count("incident")
        await token_lifetime.expire_tokens()  # the instance forgets every session

        after = await client.count("incident")  # no exception reaches the caller

    assert after == before
    # one 401, one re-authentication (the refresh token still works), then the call succeeds
    assert transport.table_statuses == [200, 401, 200]
    assert transport.grants == ["password", "refresh_token"]
    assert password_grant.token_requests == 2


async def test_a_token_near_expiry_is_refreshed_with_the_refresh_token_before_the_call(
    sandbox_url, transport, password_grant, token_lifetime
):
    # 30 s is inside the client's one-minute refresh margin: each call finds its token about to expire.
    await token_lifetime.set_config(token_lifetime=30)
    async with ServiceNowClient(sandbox_url, password_grant, transport=transport) as client:
        await client.count("incident")
        await client.count("incident")
        await client.count("incident")

    assert transport.grants == ["password", "refresh_token", "refresh_token"]
    assert transport.table_statuses == [200, 200, 200]  # refreshed before, never after a 401
    bearer_tokens = [e.authorization for e in transport.exchanges if e.path != "/oauth_token.do"]
    assert len(set(bearer_tokens)) == 3


async def test_client_credentials_grant_acts_as_the_oauth_application_user(sandbox_url, transport, scope_id):
    auth = OAuth(*OAUTH_CLIENT)
    assert auth.grant == "client_credentials"
    async with ServiceNowClient(sandbox_url, auth, transport=transport) as client:
        created = await client.create("incident", {"short_description": f"{scope_id} cc", "impact": "3"})
        await client.delete("incident", created["sys_id"])

    assert transport.grants == ["client_credentials"]
    assert created["sys_created_by"] == INTEGRATION_USER[0]


async def test_a_wrong_client_secret_is_not_authenticated_without_calling_the_table_api(sandbox_url, transport):
    auth = OAuth(OAUTH_CLIENT[0], "not-the-secret", username=INTEGRATION_USER[0], password=INTEGRATION_USER[1])
    async with ServiceNowClient(sandbox_url, auth, transport=transport) as client:
        with pytest.raises(NotAuthenticated, match="OAuth token request refused"):
            await client.count("incident")
    assert transport.table_statuses == []
    assert "not-the-secret" not in repr(auth)
