"""Who may decode history through the shim's /codec: the UI user's OIDC access token (checked against the issuer's
keys, issuer, audience, expiry and a required group), the CLI's static token, and - in dev only - the login-less dev
UI on this machine. The issuer is a local stand-in (tests/ops/oidc_issuer.py) on 127.0.0.1 with keys generated
here; the shim runs on 127.0.0.1 too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from config.registry import Registry
from config.settings import Settings
from ops.codec import EncryptionCodec, new_key, parse_keys
from ops.oidc import REFRESH_FLOOR
from starter.shim.app import create_app
from tests.helpers import wait_for
from tests.ops.oidc_issuer import AUDIENCE, Issuer, SigningKey
from tests.shim.conftest import LiveServer

CLI_TOKEN = "cli-codec-token-7d2f"
UI_PORT = 18233
SECRET = b'{"short_description":"rotate the payroll DB password"}'


@dataclass
class Codec:
    shim: LiveServer
    issuer: Issuer
    sealed: dict[str, Any]  # one encrypted payload in the protocol's JSON form

    async def decode(self, headers: dict[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.shim.url, timeout=10) as http:
            return await http.post("/codec/decode", json={"payloads": [self.sealed]}, headers=headers or {})

    async def decode_with(self, token: str) -> httpx.Response:
        return await self.decode({"Authorization": f"Bearer {token}"})


def _sealed(keys: str) -> dict[str, Any]:
    codec = EncryptionCodec(parse_keys(keys))
    payload = codec.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=SECRET))
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def _plain(answer: httpx.Response) -> bytes:
    assert answer.status_code == 200, answer.text
    return base64.b64decode(answer.json()["payloads"][0]["data"])


@pytest_asyncio.fixture(loop_scope="session")
async def issuer() -> AsyncIterator[Issuer]:
    standin = Issuer()
    async with LiveServer(standin.app) as server:
        standin.url = server.url
        yield standin


def codec_settings(base: Settings, keys: str, **update: Any) -> Settings:
    return base.model_copy(
        update={
            "encryption": True,
            "encryption_keys": SecretStr(keys),
            "codec_tokens": SecretStr(CLI_TOKEN),
            "ui_url": f"http://127.0.0.1:{UI_PORT}",
            **update,
        }
    )


@pytest_asyncio.fixture(loop_scope="session")
async def oidc_codec(
    ops_settings: Settings, temporal_client: Client, ops_registry: Registry, issuer: Issuer
) -> AsyncIterator[Codec]:
    """The shim with the UI's OIDC settings; keys found through the issuer's discovery document."""
    keys = f"k1:{new_key()}"
    settings = codec_settings(
        ops_settings,
        keys,
        codec_oidc_issuer=issuer.url,
        codec_oidc_audience=AUDIENCE,
        codec_oidc_required_claim="groups=temporal-auditors",
    )
    async with LiveServer(create_app(settings, temporal_client, ops_registry)) as shim:
        yield Codec(shim, issuer, _sealed(keys))


async def test_the_ui_users_access_token_decodes_and_the_cli_token_still_does(oidc_codec: Codec) -> None:
    assert _plain(await oidc_codec.decode_with(oidc_codec.issuer.token())) == SECRET
    assert _plain(await oidc_codec.decode_with(CLI_TOKEN)) == SECRET
    # A group claim given as a single string counts as well as a list.
    assert _plain(await oidc_codec.decode_with(oidc_codec.issuer.token(groups="temporal-auditors"))) == SECRET
    assert oidc_codec.issuer.jwks_fetches == 1, "the key set is cached, not fetched per call"


def _hs256_with_the_public_key(issuer: Issuer) -> str:
    # Algorithm confusion: an HMAC "signed" with the published RSA key material, which anyone can read.
    # PyJWT itself refuses to HMAC with a PEM key, so the token is assembled by hand.
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "kid": issuer.key.kid, "typ": "JWT"}).encode())
    body = b64(json.dumps(issuer.claims()).encode())
    secret = json.dumps(issuer.key.jwk()).encode()
    signature = b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    return f"{header}.{body}.{signature}"


REFUSED: dict[str, Any] = {
    "wrong issuer": lambda i: i.token(iss="https://login.example.org"),
    "wrong audience": lambda i: i.token(aud="some-other-app"),
    "expired": lambda i: i.token(iat=int(time.time()) - 900, exp=int(time.time()) - 600),
    "no expiry": lambda i: i.token(exp=None),
    "bad signature": lambda i: SigningKey(kid=i.key.kid).sign(i.claims()),  # same kid, a key the issuer never published
    "tampered claims": lambda i: _tamper(i.token()),
    "not in the group": lambda i: i.token(groups=["everyone"]),
    "unsigned (alg none)": lambda i: jwt.encode(i.claims(), None, algorithm="none", headers={"kid": i.key.kid}),
    "HS256 with the public key": _hs256_with_the_public_key,
    "not a JWT": lambda i: "opaque-access-token",
}


def _tamper(token: str) -> str:
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False}) | {"sub": "admin@example.com"}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_token_that_is_not_valid_for_us_is_a_401(oidc_codec: Codec, case: str) -> None:
    answer = await oidc_codec.decode_with(REFUSED[case](oidc_codec.issuer))
    assert answer.status_code == 401, (case, answer.text)
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "rotate the payroll" not in answer.text


async def test_no_token_and_a_wrong_scheme_are_a_401(oidc_codec: Codec) -> None:
    assert (await oidc_codec.decode()).status_code == 401
    assert (await oidc_codec.decode({"Authorization": f"Basic {oidc_codec.issuer.token()}"})).status_code == 401


async def test_keys_rotated_by_the_issuer_are_fetched_again_but_made_up_key_ids_are_not_a_fetch_storm(
    oidc_codec: Codec,
) -> None:
    issuer = oidc_codec.issuer
    assert _plain(await oidc_codec.decode_with(issuer.token())) == SECRET
    assert issuer.jwks_fetches == 1
    old = issuer.key
    new = issuer.rotate()

    async def accepted() -> bool:
        return (await oidc_codec.decode_with(issuer.token(new))).status_code == 200

    # The first token under the new key arrives within REFRESH_FLOOR of the first fetch: it waits that long at most.
    await wait_for(accepted, timeout=REFRESH_FLOOR + 5, interval=0.2, message="token signed with the rotated key")
    fetched = issuer.jwks_fetches
    assert fetched >= 2
    started = time.monotonic()
    for _ in range(20):
        forged = SigningKey(kid=f"made-up-{uuid.uuid4().hex[:6]}").sign(issuer.claims())
        assert (await oidc_codec.decode_with(forged)).status_code == 401
    elapsed = time.monotonic() - started
    assert issuer.jwks_fetches - fetched <= 1 + int(elapsed / REFRESH_FLOOR), (
        "unknown key IDs fetched at most once per floor"
    )
    # The withdrawn key no longer verifies anything.
    assert (await oidc_codec.decode_with(issuer.token(old))).status_code == 401


async def test_an_explicit_jwks_url_and_an_unreachable_issuer(
    ops_settings: Settings, temporal_client: Client, ops_registry: Registry, issuer: Issuer
) -> None:
    keys = f"k1:{new_key()}"
    explicit = codec_settings(
        ops_settings,
        keys,
        codec_oidc_issuer=issuer.url,
        codec_oidc_audience=AUDIENCE,
        codec_oidc_jwks_url=f"{issuer.url}/keys",
    )
    async with LiveServer(create_app(explicit, temporal_client, ops_registry)) as shim:
        codec = Codec(shim, issuer, _sealed(keys))
        assert _plain(await codec.decode_with(issuer.token(groups=None))) == SECRET  # no group required here

    dead = codec_settings(
        ops_settings,
        keys,
        codec_oidc_issuer="http://127.0.0.1:9/realms/gone",
        codec_oidc_audience=AUDIENCE,
    )
    async with LiveServer(create_app(dead, temporal_client, ops_registry)) as shim:
        codec = Codec(shim, issuer, _sealed(keys))
        answer = await codec.decode_with(issuer.token(iss="http://127.0.0.1:9/realms/gone"))
        assert answer.status_code == 503, answer.text
        assert _plain(await codec.decode_with(CLI_TOKEN)) == SECRET  # the CLI's token needs no issuer


def test_an_issuer_without_an_audience_stops_the_shim(
    ops_settings: Settings, temporal_client: Client, ops_registry: Registry
) -> None:
    settings = codec_settings(ops_settings, f"k1:{new_key()}", codec_oidc_issuer="https://login.example.org")
    with pytest.raises(ValueError, match="AUDIENCE"):
        create_app(settings, temporal_client, ops_registry)


# -- the dev UI ----------------------------------------------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="session")
async def dev_codec(ops_settings: Settings, temporal_client: Client, ops_registry: Registry) -> AsyncIterator[Codec]:
    keys = f"dev:{new_key()}"
    settings = codec_settings(ops_settings, keys, codec_tokens=None, codec_dev_loopback=True)
    async with LiveServer(create_app(settings, temporal_client, ops_registry)) as shim:
        yield Codec(shim, Issuer(), _sealed(keys))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_dev_ui_decodes_without_a_token_at_either_loopback_origin(dev_codec: Codec, host: str) -> None:
    origin = f"http://{host}:{UI_PORT}"
    async with httpx.AsyncClient(base_url=dev_codec.shim.url, timeout=10) as http:
        preflight = await http.options(
            "/codec/decode",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == origin
    answer = await dev_codec.decode({"Origin": origin, "X-Namespace": "default"})
    assert _plain(answer) == SECRET
    assert answer.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no Origin: not the browser UI
        {"Origin": "http://evil.example"},
        {"Origin": f"http://localhost:{UI_PORT + 1}"},  # another local page
        {"Origin": f"http://localhost:{UI_PORT}", "X-Forwarded-For": "203.0.113.9"},  # came through a proxy
        {"Origin": f"http://localhost:{UI_PORT}", "Forwarded": "for=203.0.113.9"},
        {"Origin": f"http://localhost:{UI_PORT}", "Host": "rebound.example:8000"},  # DNS rebinding
    ],
)
async def test_the_dev_exception_holds_only_for_the_dev_ui_on_this_machine(
    dev_codec: Codec, headers: dict[str, str]
) -> None:
    answer = await dev_codec.decode(headers)
    assert answer.status_code == 401, answer.text


def test_the_dev_exception_is_refused_for_a_non_loopback_ui(
    ops_settings: Settings, temporal_client: Client, ops_registry: Registry
) -> None:
    for update in (
        {"ui_url": "https://temporal.example.org"},
        {"codec_cors_origins": [f"http://127.0.0.1:{UI_PORT}", "https://temporal.example.org"]},
    ):
        settings = codec_settings(ops_settings, f"k1:{new_key()}", codec_dev_loopback=True).model_copy(update=update)
        with pytest.raises(ValueError, match="loopback only"):
            create_app(settings, temporal_client, ops_registry)


async def test_without_the_dev_setting_a_loopback_call_still_needs_a_token(
    ops_settings: Settings, temporal_client: Client, ops_registry: Registry
) -> None:
    keys = f"k1:{new_key()}"
    async with LiveServer(create_app(codec_settings(ops_settings, keys), temporal_client, ops_registry)) as shim:
        codec = Codec(shim, Issuer(), _sealed(keys))
        assert (await codec.decode({"Origin": f"http://localhost:{UI_PORT}"})).status_code == 401
