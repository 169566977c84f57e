"""Who is calling: HTTP basic users and OAuth clients/tokens, as configured at start.

OAuth follows `/oauth_token.do` on a real instance: form-encoded grants `password`, `client_credentials` and
`refresh_token`; access tokens expire after a lifetime that tests shorten to seconds (and can change at run
time) so the client's refresh-before-expiry and re-auth-once-on-401 paths can be exercised for real.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass

from pydantic import BaseModel


class OAuthClient(BaseModel):
    secret: str
    # The "OAuth Application User" that client_credentials tokens act as (an instance setting since Washington DC).
    user: str = "changeloop.integration"


class TokenAnswer(BaseModel):
    access_token: str
    refresh_token: str
    scope: str = "useraccount"
    token_type: str = "Bearer"
    expires_in: int


class OAuthError(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass
class _Token:
    user: str
    client_id: str
    expires_at: float


class Authenticator:
    def __init__(
        self,
        users: dict[str, str],
        clients: dict[str, OAuthClient],
        token_lifetime: float,
        refresh_lifetime: float = 8_640_000.0,
    ) -> None:
        self.users = dict(users)
        self.clients = dict(clients)
        self.token_lifetime = token_lifetime
        self.refresh_lifetime = refresh_lifetime
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._lock = threading.Lock()

    # --- Table API side ----------------------------------------------------------------------------------------

    def user_for(self, authorization: str | None) -> str | None:
        """The user name behind an Authorization header, or None (the caller answers 401)."""
        if not authorization:
            return None
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            return self._basic_user(credentials.strip())
        if scheme.lower() == "bearer":
            with self._lock:
                token = self._access.get(credentials.strip())
            if token is not None and token.expires_at > time.monotonic():
                return token.user
        return None

    def _basic_user(self, encoded: str) -> str | None:
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        expected = self.users.get(user)
        return user if expected is not None and secrets.compare_digest(expected, password) else None

    # --- /oauth_token.do side ----------------------------------------------------------------------------------

    def grant(self, form: dict[str, str]) -> TokenAnswer:
        client_id = form.get("client_id", "")
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, form.get("client_secret", "")):
            raise OAuthError("access_denied")
        grant_type = form.get("grant_type", "")
        if grant_type == "password":
            user = form.get("username", "")
            expected = self.users.get(user)
            if expected is None or not secrets.compare_digest(expected, form.get("password", "")):
                raise OAuthError("access_denied")
            return self._issue(user, client_id, refresh=None)
        if grant_type == "client_credentials":
            return self._issue(client.user, client_id, refresh=None)
        if grant_type == "refresh_token":
            with self._lock:
                old = self._refresh.get(form.get("refresh_token", ""))
            if old is None or old.client_id != client_id or old.expires_at <= time.monotonic():
                raise OAuthError("access_denied")
            return self._issue(old.user, client_id, refresh=form["refresh_token"])
        raise OAuthError(f"unsupported grant_type {grant_type!r}")

    def _issue(self, user: str, client_id: str, refresh: str | None) -> TokenAnswer:
        now = time.monotonic()
        access = secrets.token_urlsafe(64)
        with self._lock:
            self._access[access] = _Token(user, client_id, now + self.token_lifetime)
            # A refresh grant answers the same refresh token, as the instance does until that token's own lifespan.
            if refresh is None:
                refresh = secrets.token_urlsafe(64)
                self._refresh[refresh] = _Token(user, client_id, now + self.refresh_lifetime)
            self._forget_expired(now)
        return TokenAnswer(access_token=access, refresh_token=refresh, expires_in=max(1, int(self.token_lifetime)))

    def _forget_expired(self, now: float) -> None:
        for token, info in list(self._access.items()):
            if info.expires_at <= now:
                del self._access[token]

    def expire_all_tokens(self) -> None:
        """Test hook: every access token stops working at once (a revoked or expired session)."""
        with self._lock:
            self._access.clear()
