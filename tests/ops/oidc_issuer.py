"""A local stand-in for an OpenID provider, as far as a resource server sees one: a discovery document naming its
`jwks_uri`, the JWKS itself, and RSA keys generated in the test that sign access tokens. It counts JWKS fetches
and can rotate its keys (publish a new one, drop the old) the way an IdP does."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "temporal-ui"


class SigningKey:
    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or f"key-{uuid.uuid4().hex[:8]}"
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return public | {"kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid, **header})


class Issuer:
    """`issuer.url` is set once the app is served (tests wrap `issuer.app` in a LiveServer)."""

    def __init__(self) -> None:
        self.url = ""
        self.keys = [SigningKey()]
        self.jwks_fetches = 0
        self.app = FastAPI()
        self.app.get("/.well-known/openid-configuration")(self._discovery)
        self.app.get("/keys")(self._jwks)

    @property
    def key(self) -> SigningKey:
        return self.keys[0]

    def rotate(self) -> SigningKey:
        """A new key replaces the published one (the old one is withdrawn: tokens it signed stop verifying)."""
        self.keys = [SigningKey()]
        return self.keys[0]

    def claims(self, **override: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.url,
            "sub": "auditor@example.com",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "groups": ["temporal-auditors"],
        }
        return {k: v for k, v in (base | override).items() if v is not None}

    def token(self, key: SigningKey | None = None, **override: Any) -> str:
        return (key or self.key).sign(self.claims(**override))

    async def _discovery(self) -> dict[str, Any]:
        return {"issuer": self.url, "jwks_uri": f"{self.url}/keys", "id_token_signing_alg_values_supported": ["RS256"]}

    async def _jwks(self) -> dict[str, Any]:
        self.jwks_fetches += 1
        return {"keys": [k.jwk() for k in self.keys]}
