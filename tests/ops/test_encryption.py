"""Encrypted history: with CHANGELOOP_ENCRYPTION on, Temporal stores no ticket text in clear, and the shim's codec
endpoint gives it back to an authorised caller - the `temporal` CLI with `--codec-endpoint`, or the UI."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from config.registry import Registry
from config.settings import Settings
from ops.codec import ENCODING, EncryptionCodec, KeyConfigError, new_key, parse_keys
from ops.connect import connect
from servicenow.client import ServiceNowClient
from starter.shim.app import create_app
from tests.changes import Changes, start
from tests.conftest import venv_binary
from tests.shim.conftest import LiveServer
from worker import build_worker
from workflows.runbook.models import runbook_workflow_id

CODEC_TOKEN = "codec-token-for-tests-5b1e"
UI_ORIGIN = "http://127.0.0.1:8233"


def payloads(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every payload in `temporal workflow show -o json` output, with where it sits."""
    if isinstance(node, dict):
        if "metadata" in node and "data" in node:
            yield path, node
            return
        for key, value in node.items():
            yield from payloads(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from payloads(value, f"{path}[{index}]")


def show(settings: Settings, workflow_id: str, *extra: str) -> str:
    command = [venv_binary("temporal"), "workflow", "show", "-w", workflow_id, "-o", "json"]
    command += ["--address", settings.temporal_address, "--namespace", settings.temporal_namespace, *extra]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture
def encrypted_settings(ops_settings: Settings) -> Settings:
    return ops_settings.model_copy(
        update={
            "encryption": True,
            "encryption_keys": SecretStr(f"2025-06:{new_key()},2024-12:{new_key()}"),
            "codec_tokens": SecretStr(CODEC_TOKEN),
        }
    )


async def test_history_holds_no_ticket_text_and_the_codec_endpoint_decodes_it(
    encrypted_settings: Settings, ops_registry: Registry, sn_client: ServiceNowClient, sandbox: Any
) -> None:
    settings = encrypted_settings
    client = await connect(settings)
    change = await Changes(sn_client).create(category="WhereAmI", ci="payments-api")
    number, text = change["number"], change["short_description"]
    async with ServiceNowClient.from_settings(settings) as sn, build_worker(client, settings, ops_registry, sn):
        result = await (await start(client, settings, number)).result()
    assert result.steps[0].detail == "ran at central for payments-api", "the workflow itself reads its data"

    histories: dict[str, str] = {}
    for workflow_id in (f"change-{number}", runbook_workflow_id(number)):
        raw = histories[workflow_id] = await asyncio.to_thread(show, settings, workflow_id)
        assert text not in raw and "payments-api" not in raw
        found = list(payloads(json.loads(raw)))
        assert found
        for path, payload in found:
            if ".searchAttributes." in path or ".details.patch-data." in path:
                # Indexed by the server, readable by design (ChangeNumber, CmdbCi ...); the SDK's own
                # workflow.patched markers name the patch ID only.
                continue
            assert base64.b64decode(payload["metadata"]["encoding"]) == ENCODING, path
            assert base64.b64decode(payload["metadata"]["encryption-key-id"]) == b"2025-06", path
            assert number.encode() not in base64.b64decode(payload["data"]), path

    app = create_app(settings, client, ops_registry)
    async with LiveServer(app) as shim:
        # The CLI as an auditor runs it: history decoded through the shim.
        decoded = await asyncio.to_thread(
            show,
            settings,
            f"change-{number}",
            "--codec-endpoint",
            f"{shim.url}/codec",
            "--codec-auth",
            f"Bearer {CODEC_TOKEN}",
        )
        clear = b"\n".join(base64.b64decode(p["data"]) for _, p in payloads(json.loads(decoded)))
        assert text.encode() in clear and b"payments-api" in clear

        started = next(
            p
            for path, p in payloads(json.loads(histories[f"change-{number}"]))
            if "workflowExecutionStartedEventAttributes.input" in path
        )
        async with httpx.AsyncClient(base_url=shim.url, timeout=10) as http:
            body = {"payloads": [started]}
            answer = await http.post(
                "/codec/decode", json=body, headers={"Authorization": f"Bearer {CODEC_TOKEN}", "Origin": UI_ORIGIN}
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["access-control-allow-origin"] == UI_ORIGIN
            plain = answer.json()["payloads"][0]
            assert base64.b64decode(plain["metadata"]["encoding"]) == b"json/plain"
            assert json.loads(base64.b64decode(plain["data"]))["number"] == number

            # Round trip through /codec/encode, as the UI does for a signal's input.
            again = await http.post(
                "/codec/encode", json={"payloads": [plain]}, headers={"Authorization": f"Bearer {CODEC_TOKEN}"}
            )
            assert base64.b64decode(again.json()["payloads"][0]["metadata"]["encoding"]) == ENCODING

            # Not authorised: no token, a wrong token, another namespace; the browser preflight needs no token.
            assert (await http.post("/codec/decode", json=body)).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await http.post("/codec/decode", json=body, headers=wrong)).status_code == 401
            other_ns = {"Authorization": f"Bearer {CODEC_TOKEN}", "X-Namespace": "someone-else"}
            assert (await http.post("/codec/decode", json=body, headers=other_ns)).status_code == 403
            preflight = await http.options(
                "/codec/decode",
                headers={"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"},
            )
            assert preflight.status_code == 204
            assert "X-Namespace" in preflight.headers["access-control-allow-headers"]
            evil = await http.options("/codec/decode", headers={"Origin": "http://evil.example"})
            assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers


async def test_codec_endpoint_is_off_without_encryption(
    ops_settings: Settings, temporal_client: Client, ops_registry: Registry
) -> None:
    app = create_app(ops_settings, temporal_client, ops_registry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shim") as http:
        answer = await http.post("/codec/decode", json={"payloads": []}, headers={"Authorization": "Bearer x"})
    assert answer.status_code == 404


async def test_rotation_old_keys_still_decrypt_and_the_active_key_encrypts() -> None:
    old, new = new_key(), new_key()
    before = EncryptionCodec(parse_keys(f"2024-12:{old}"))
    sealed = await before.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'{"n":"CHG0030001"}')])
    after = EncryptionCodec(parse_keys(f"2025-06:{new},2024-12:{old}"))
    assert (await after.decode(sealed))[0].data == b'{"n":"CHG0030001"}'
    assert (await after.encode(sealed))[0].metadata["encryption-key-id"] == b"2025-06"
    pinned = EncryptionCodec(parse_keys(f"2025-06:{new},2024-12:{old}"), active="2024-12")
    assert (await pinned.encode(sealed))[0].metadata["encryption-key-id"] == b"2024-12"
    # Plain payloads (history from before encryption was on) pass through.
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b"1")
    assert (await after.decode([plain]))[0] == plain


async def test_unknown_key_and_tampering_are_refused() -> None:
    codec = EncryptionCodec(parse_keys(f"a:{new_key()}"))
    sealed = (await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")]))[0]
    with pytest.raises(ValueError, match="not configured"):
        await EncryptionCodec(parse_keys(f"b:{new_key()}")).decode([sealed])
    forged = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(ValueError, match="failed authentication"):
        await codec.decode([forged])
    relabelled = Payload(metadata=dict(sealed.metadata) | {"encryption-key-id": b"b"}, data=sealed.data)
    with pytest.raises(ValueError):
        await EncryptionCodec(parse_keys(f"a:{new_key()},b:{new_key()}")).decode([relabelled])


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "names no key"),
        ("nokeyid", "key-id:base64-key"),
        ("k:not base64!", "not valid base64"),
        (f"k:{base64.b64encode(b'short').decode()}", "needs 32"),
    ],
)
def test_bad_key_settings_stop_the_process_with_the_reason(spec: str, problem: str) -> None:
    with pytest.raises(KeyConfigError, match=problem):
        parse_keys(spec)


def test_keys_and_codec_tokens_never_reach_the_logs(settings: Settings) -> None:
    key = new_key()
    configured = settings.model_copy(
        update={"encryption_keys": SecretStr(f"k1:{key}"), "codec_tokens": SecretStr("tok-one,tok-two")}
    )
    assert {key, "tok-one", "tok-two"} <= set(configured.secret_values())
