"""Who may call the codec endpoint with an OIDC access token: the Temporal UI's "pass access token" (the UI sends
`Authorization: Bearer <access token>` of the signed-in user when TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true).

The token is checked the way a resource server checks any access token (RFC 9068, OpenID Connect Core 10.1.1):
signature against the issuer's published keys (JWKS), `iss`, `aud`, `exp` (and `nbf`), and optionally one claim
(a group) the caller must carry. PyJWT does the JOSE work; this module only decides which keys, which algorithms and
which claims.

Keys: fetched from CHANGELOOP_CODEC_OIDC_JWKS_URL, or from the `jwks_uri` of the issuer's discovery document.
A token naming a key ID we have not seen makes us fetch the set again (the issuer rotated its keys), but at most
once per REFRESH_FLOOR: a stream of made-up key IDs must not turn the shim into a load generator against the IdP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx
import jwt
from jwt import PyJWK, PyJWKSet

# Public-key algorithms only. A symmetric one (HS256) would let anyone holding the *public* key mint tokens
# (the classic algorithm-confusion attack); "none" is never acceptable.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
REFRESH_FLOOR = 2.0  # seconds between two fetches caused by an unknown key ID
MAX_AGE = 3600.0  # a key set older than this is fetched again before use: revoked keys do not live forever
LEEWAY = 30  # seconds of clock skew tolerated on exp / nbf / iat
HTTP_TIMEOUT = 5.0


class TokenRefused(Exception):
    """The token is not one we accept; the message says why (never the token itself): the 401's detail."""


class KeysUnavailable(Exception):
    """The issuer's keys cannot be fetched now: a 503, not the caller's fault."""


def parse_required_claim(spec: str | None) -> tuple[str, str] | None:
    """`groups=temporal-auditors` -> ("groups", "temporal-auditors"); None when unset."""
    if not spec:
        return None
    name, sep, value = spec.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ValueError(f"CHANGELOOP_CODEC_OIDC_REQUIRED_CLAIM must be written 'claim=value', got {spec!r}")
    return name.strip(), value.strip()


class OidcVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        required_claim: tuple[str, str] | None = None,
        refresh_floor: float = REFRESH_FLOOR,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("OIDC for the codec needs both CHANGELOOP_CODEC_OIDC_ISSUER and _AUDIENCE")
        self.issuer, self.audience = issuer, audience
        self.jwks_url = jwks_url
        self.required_claim = required_claim
        self.refresh_floor = refresh_floor
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0  # how often the key set was fetched (for /metrics-style introspection and the tests)

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims when it is valid for us; TokenRefused (401) or KeysUnavailable (503) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"not a JWT: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRefused(f"algorithm {algorithm!r} is not accepted (public-key signatures only)")
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"{type(exc).__name__}: {exc}") from exc
        self._check_claim(claims)
        return claims

    def _check_claim(self, claims: Mapping[str, Any]) -> None:
        if self.required_claim is None:
            return
        name, wanted = self.required_claim
        value = claims.get(name)
        held = value if isinstance(value, list) else [value] if value is not None else []
        if wanted not in [str(v) for v in held]:
            raise TokenRefused(f"token lacks {name}={wanted}")

    # -- keys ----------------------------------------------------------------------------------------------------
    async def _key(self, kid: str | None) -> PyJWK:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > MAX_AGE or (self._find(kid) is None and age >= self.refresh_floor):
                await self._fetch()
            key = self._find(kid)
        if key is None:
            raise TokenRefused(f"no key {kid!r} in the issuer's key set")
        return key

    def _find(self, kid: str | None) -> PyJWK | None:
        if kid is None:
            # A token without `kid` is usable only when the issuer publishes exactly one key.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
                url = self.jwks_url or await self._discover(http)
                answer = await http.get(url)
                answer.raise_for_status()
                keyset = PyJWKSet.from_dict(answer.json())
        except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWTError) as exc:
            # Keep the keys we had: an IdP hiccup must not lock every user out until the next rotation.
            self._fetched_at = time.monotonic()
            if self._keys:
                return
            raise KeysUnavailable(f"cannot fetch the issuer's keys: {exc}") from exc
        self.fetches += 1
        self._fetched_at = time.monotonic()
        signing = [k for k in keyset.keys if k.public_key_use in (None, "sig")]
        self._keys = {str(k.key_id): k for k in signing if k.key_id is not None}
        unnamed = [k for k in signing if k.key_id is None]
        if len(signing) == 1 and unnamed:
            self._keys = {"": unnamed[0]}

    async def _discover(self, http: httpx.AsyncClient) -> str:
        answer = await http.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")
        answer.raise_for_status()
        document = answer.json()
        # OpenID Connect Discovery 1.0, section 4.3: the document's issuer must be the one we asked.
        if document.get("issuer") != self.issuer:
            raise ValueError(f"discovery document names issuer {document.get('issuer')!r}, not {self.issuer!r}")
        self.jwks_url = str(document["jwks_uri"])
        return self.jwks_url
