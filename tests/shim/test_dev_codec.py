"""`changeloop dev` with encrypted history wires the Temporal UI to the shim's codec: the UI's own settings name the
endpoint, and the codec answers the login-less dev UI at both addresses it can be opened at, without a token
(the browser side of this is `make e2e`)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import pytest
from temporalio.api.common.v1 import Payload

from ops.codec import EncryptionCodec, new_key, parse_keys
from starter.devstack.dev import DevConfig, DevStack, free_port


async def test_dev_stack_with_encryption_points_the_ui_at_the_codec_and_lets_it_decode(tmp_path: Path) -> None:
    keys = f"dev:{new_key()}"
    config = DevConfig(
        temporal_port=free_port(),
        ui_port=free_port(),
        sandbox_port=free_port(),
        shim_port=free_port(),
        persist=False,
        log_dir=tmp_path,
        task_queue="dev-codec-test",
        encryption_keys=keys,
    )
    sealed = EncryptionCodec(parse_keys(keys)).encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b'"hi"'))
    body = {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
                "data": base64.b64encode(sealed.data).decode(),
            }
        ]
    }
    stack = DevStack(config)
    await stack.start()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            ui = (await http.get(f"{config.ui_url}/api/v1/settings")).json()
            assert ui["Codec"]["Endpoint"] == config.codec_url
            for origin in (f"http://127.0.0.1:{config.ui_port}", f"http://localhost:{config.ui_port}"):
                preflight = await http.options(
                    f"{config.codec_url}/decode",
                    headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
                )
                assert preflight.status_code == 204, origin
                answer = await http.post(
                    f"{config.codec_url}/decode", json=body, headers={"Origin": origin, "X-Namespace": "default"}
                )
                assert answer.status_code == 200, answer.text
                assert base64.b64decode(answer.json()["payloads"][0]["data"]) == b'"hi"'
            # Not the dev UI: no Origin, or a page elsewhere, still needs a token.
            assert (await http.post(f"{config.codec_url}/decode", json=body)).status_code == 401
            evil = {"Origin": "http://evil.example"}
            assert (await http.post(f"{config.codec_url}/decode", json=body, headers=evil)).status_code == 401
    finally:
        await asyncio.to_thread(stack.stop)


def test_the_tokenless_exception_is_set_only_for_an_encrypting_stack_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.delenv("CHANGELOOP_ENCRYPTION", raising=False)
    monkeypatch.delenv("CHANGELOOP_CODEC_DEV_LOOPBACK", raising=False)
    plain = DevConfig(persist=False)
    assert not plain.encrypting and "CHANGELOOP_CODEC_DEV_LOOPBACK" not in DevStack(plain).env()

    keys = f"dev:{new_key()}"
    local = DevStack(DevConfig(persist=False, encryption_keys=keys)).env()
    assert local["CHANGELOOP_CODEC_DEV_LOOPBACK"] == "true"
    assert json.loads(local["CHANGELOOP_CODEC_CORS_ORIGINS"]) == ["http://127.0.0.1:8233", "http://localhost:8233"]

    exposed = DevStack(DevConfig(persist=False, host="0.0.0.0", encryption_keys=keys)).env()
    assert exposed["CHANGELOOP_ENCRYPTION"] == "true" and "CHANGELOOP_CODEC_DEV_LOOPBACK" not in exposed
