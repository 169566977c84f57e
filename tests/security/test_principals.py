"""Issue 11, attack 5: one token no longer does everything. Each caller is a principal whose token does only what its
scopes say; weak and placeholder tokens stop the shim at start; the docs need a token; /healthz and /metrics give
nothing away."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from config.principals import PLACEHOLDER_TOKENS, weakness
from ops.codec import new_key
from tests.security.conftest import Stack
from tests.shim.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


async def test_the_change_webhook_token_starts_changes_and_nothing_else(stack: Stack) -> None:
    async with stack.http("servicenow") as rule:
        refused = {
            "approve": await rule.post("/api/executions/change-CHG0030001/approve", json={}),
            "reject": await rule.post("/api/executions/change-CHG0030001/reject", json={}),
            "run a flow": await rule.post("/api/flows/echo_flow/run", json={"inputs": {"message": "x"}}),
            "read an execution": await rule.get("/api/executions/change-CHG0030001/status"),
            "read an audit export": await rule.get("/api/executions/change-CHG0030001/audit"),
            "resolve an incident": await rule.post("/api/incidents/INC0010001/resolve", json={"resolved_by": "x"}),
        }
        for what, response in refused.items():
            assert response.status_code == 403, (what, response.text)
            assert response.json()["error"]["message"] == "Forbidden"
            assert "servicenow" in response.json()["error"]["detail"]
        # What it is for: the change hints (each makes a workflow read ServiceNow again).
        hint = await rule.post("/api/servicenow/approval", json={"number": "CHG0000002", "approval": "approved"})
        assert hint.status_code == 202 and hint.json()["status"] == "NO_EXECUTION"
        event = {"number": "CHG0000002", "sys_id": "a" * 32, "state": "4", "on_hold": "false"}
        assert (await rule.post("/api/servicenow/change/event", json=event)).status_code == 202


async def test_a_flow_scope_runs_that_flow_only(stack: Stack) -> None:
    async with stack.http("mallory") as mallory:  # flow:run:maintenance_steps
        other = await mallory.post("/api/flows/echo_flow/run", json={"inputs": {"message": "x"}})
        assert other.status_code == 403 and "flow:run:echo_flow" in other.json()["error"]["detail"]
    async with stack.http("reader") as reader:  # execution:read only
        assert (await reader.post("/api/flows/echo_flow/run", json={"inputs": {"message": "x"}})).status_code == 403
        assert (await reader.post("/api/servicenow/change", json={})).status_code == 403
    async with httpx.AsyncClient(base_url=stack.shim_url, headers={"Authorization": "Bearer " + "z" * 40}) as nobody:
        assert (await nobody.get("/api/executions/change-CHG0030001/status")).status_code == 401


async def test_the_docs_need_a_token_and_health_says_nothing_else(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.shim_url, timeout=10) as anonymous:
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert (await anonymous.get(path)).status_code == 401, path
        health = await anonymous.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
    async with stack.http("reader") as reader:
        assert (await reader.get("/openapi.json")).status_code == 200


async def test_metrics_labels_cannot_grow_with_unknown_methods_or_paths(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.shim_url, timeout=10) as anyone:
        for n in range(30):
            await anyone.request(f"BREW{n}", f"/teapot-{n}")
            await anyone.request("PROPFIND", f"/api/nothing-{n}")
            await anyone.get(f"/random/{n}/path")
        text = (await anyone.get("/metrics")).text
    series = [line for line in text.splitlines() if line.startswith("changeloop_shim_requests{")]
    methods = {m for line in series for m in re.findall(r'method="([^"]*)"', line)}
    routes = {r for line in series for r in re.findall(r'route="([^"]*)"', line)}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}, methods
    assert not any("teapot" in r or "nothing-" in r or "random" in r for r in routes), routes


def _shim(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """`changeloop shim` as an operator starts it, with only the given CHANGELOOP_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_")}
    clean |= {"CHANGELOOP_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "CHANGELOOP_LOG_LEVEL": "WARNING"} | env
    argv = [sys.executable, "-m", "starter.cli", "shim", "--port", str(free_port()), *options]
    return subprocess.run(argv, env=clean, cwd=ROOT, capture_output=True, text=True, timeout=60)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CHANGELOOP_WEBHOOK_TOKEN": "change-me-webhook-token"}, "placeholder"),
        ({"CHANGELOOP_WEBHOOK_TOKEN": "a-token-of-twenty-ch"}, "at least 32"),
        # Under 8 characters no secret can be scrubbed from logs: the process stops even earlier (ops/scrub.py).
        ({"CHANGELOOP_WEBHOOK_TOKEN": "x"}, "shorter than 8"),
        (
            {
                "CHANGELOOP_PRINCIPALS": json.dumps(
                    [{"name": "ops", "token_sha256": _digest("change-me"), "scopes": []}]
                )
            },
            "placeholder",
        ),
        (
            {
                "CHANGELOOP_PRINCIPALS": json.dumps(
                    [
                        {
                            "name": "alice.ops",
                            "token": "a-long-enough-token-for-alice-0123456789",
                            "scopes": ["approval:decide"],
                        }
                    ]
                )
            },
            "CHANGELOOP_DECISION_KEY",
        ),
        ({}, "no principals"),
    ],
    ids=["placeholder", "short", "one-character", "placeholder-hash", "no-decision-key", "none"],
)
async def test_weak_and_placeholder_tokens_stop_the_shim(env: dict[str, str], says: str) -> None:
    ran = await asyncio.to_thread(_shim, env)
    said = " ".join(ran.stderr.split())  # rich wraps long lines
    assert ran.returncode != 0 and says in said, ran.stdout + ran.stderr
    if says != "shorter than 8":
        assert ran.returncode == 2 and "the shim will not start" in said


def test_every_token_the_repository_shows_as_an_example_is_refused() -> None:
    """The placeholders an operator could copy verbatim: deploy/.env.example, the Kubernetes secret example."""
    env_example = (ROOT / "deploy/.env.example").read_text()
    shown = re.findall(r"^#?\s*CHANGELOOP_(?:WEBHOOK_TOKEN|DECISION_KEY|CALLBACK_SIGNING_KEY)=(\S+)", env_example, re.M)
    secret = yaml.safe_load((ROOT / "deploy/kubernetes/secret.example.yaml").read_text())["stringData"]
    shown += [v for k, v in secret.items() if k.endswith(("_TOKEN", "_KEY", "_TOKENS"))]
    assert shown, "the examples show token values"
    for value in shown:
        assert weakness(value) is not None, value
    assert "change-me-webhook-token" in PLACEHOLDER_TOKENS


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "shim.example.org"])
async def test_the_dev_codec_setting_stops_a_shim_that_listens_beyond_this_machine(host: str) -> None:
    """CHANGELOOP_CODEC_DEV_LOOPBACK (token-less decoding for the dev UI) belongs to `changeloop dev` on loopback."""
    env = {
        "CHANGELOOP_WEBHOOK_TOKEN": "a-webhook-token-long-enough-0123456789abcdef",
        "CHANGELOOP_ENCRYPTION": "true",
        "CHANGELOOP_ENCRYPTION_KEYS": f"dev:{new_key()}",
        "CHANGELOOP_CODEC_DEV_LOOPBACK": "true",
    }
    ran = await asyncio.to_thread(_shim, env, "--host", host)
    said = " ".join(ran.stderr.split())
    assert ran.returncode == 2 and "the shim will not start" in said, ran.stdout + ran.stderr
    assert f"would listen on {host}" in said
