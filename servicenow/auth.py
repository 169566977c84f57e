"""Authentication to a ServiceNow instance: basic, or OAuth 2 against `/oauth_token.do`.

OAuth tokens are refreshed a minute before `expires_in` runs out (with the `refresh_token` grant, falling back to
the primary grant if the refresh token was revoked), so a caller never sees an expired token. `invalidate()` lets
the client force one re-authentication after a 401.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Literal, Protocol

import httpx
from pydantic import BaseModel

from servicenow.errors import NotAuthenticated, TransportError, error_from_response

REFRESH_MARGIN_SECONDS = 60.0


class Auth(Protocol):
    async def authorization(self, http: httpx.AsyncClient) -> str:
        """The value of the Authorization header for the next request."""
        ...

    def invalidate(self) -> None:
        """Forget cached credentials; the next `authorization()` authenticates afresh."""
        ...


class BasicAuth:
    def __init__(self, username: str, password: str) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._header = f"Basic {token}"

    async def authorization(self, http: httpx.AsyncClient) -> str:
        return self._header

    def invalidate(self) -> None:
        """Basic credentials have nothing cached."""

    def __repr__(self) -> str:
        return "BasicAuth(***)"


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str | None = None
    token_type: str = "Bearer"
    expires_in: float = 1799
    scope: str | None = None


class OAuth:
    """OAuth 2 with grant `password` (integration user) or `client_credentials`."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        username: str | None = None,
        password: str | None = None,
        grant: Literal["password", "client_credentials"] | None = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._password = password
        self.grant = grant or ("password" if username else "client_credentials")
        if self.grant == "password" and not (username and password):
            raise ValueError("the OAuth password grant needs a username and a password")
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.token_requests = 0  # how many times we went to /oauth_token.do; tests and metrics read it

    def __repr__(self) -> str:
        return f"OAuth(client_id={self.client_id!r}, grant={self.grant!r})"

    def invalidate(self) -> None:
        self._access_token = None
        self._expires_at = 0.0

    def _fresh(self) -> bool:
        return self._access_token is not None and time.monotonic() < self._expires_at - REFRESH_MARGIN_SECONDS

    async def authorization(self, http: httpx.AsyncClient) -> str:
        if not self._fresh():
            async with self._lock:  # one refresh for many concurrent callers
                if not self._fresh():
                    await self._obtain(http)
        return f"Bearer {self._access_token}"

    async def _obtain(self, http: httpx.AsyncClient) -> None:
        if self._refresh_token:
            try:
                await self._token_request(http, {"grant_type": "refresh_token", "refresh_token": self._refresh_token})
                return
            except NotAuthenticated:
                self._refresh_token = None  # revoked or expired: fall back to the primary grant
        form: dict[str, str] = {"grant_type": self.grant}
        if self.grant == "password":
            form |= {"username": self._username or "", "password": self._password or ""}
        await self._token_request(http, form)

    async def _token_request(self, http: httpx.AsyncClient, form: dict[str, str]) -> None:
        form = form | {"client_id": self.client_id, "client_secret": self._client_secret}
        self.token_requests += 1
        try:
            response = await http.post("/oauth_token.do", data=form, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise TransportError("OAuth token request failed", type(exc).__name__) from exc
        if response.status_code in (400, 401):
            # OAuth errors come as {"error":"access_denied","error_description":...}, not the Table API envelope.
            detail = ""
            try:
                body = response.json()
                detail = str(body.get("error_description") or body.get("error") or "")
            except ValueError:
                pass
            raise NotAuthenticated("OAuth token request refused", detail, response.status_code)
        if response.status_code >= 300:
            raise error_from_response(response)
        token = TokenResponse.model_validate(response.json())
        self._access_token = token.access_token
        self._refresh_token = token.refresh_token or self._refresh_token
        self._expires_at = time.monotonic() + token.expires_in
