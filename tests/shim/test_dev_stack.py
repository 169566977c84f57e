"""`changeloop dev` on free ports: every service answers, the CLI works against it, and stop leaves nothing behind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from starter.devstack.dev import DevConfig, DevStack, free_port, port_is_free


def _cli(stack: DevStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starter.cli", *args],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_dev_stack_starts_answers_and_stops_everything(tmp_path: Path) -> None:
    config = DevConfig(
        temporal_port=free_port(),
        ui_port=free_port(),
        sandbox_port=free_port(),
        shim_port=free_port(),
        persist=False,
        log_dir=tmp_path,
        task_queue="dev-stack-test",
    )
    stack = DevStack(config)
    await stack.start()
    try:
        processes = [child.process for child in stack.children]
        assert {c.name for c in stack.children} == {"temporal", "sandbox", "worker", "shim"}
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{config.shim_url}/healthz")).status_code == 200
            assert (await http.get(f"{config.sandbox_url}/sandbox/health")).status_code == 200
            assert (await http.get(config.ui_url)).status_code == 200
            # The sandbox's Business Rule was pointed at this shim, with the token the stack generated.
            rule = (await http.get(f"{config.sandbox_url}/sandbox/config")).json()
            assert rule["webhook_url"] == f"{config.shim_url}/api/servicenow/change"
            assert rule["webhook_token"] == stack.config.webhook_token
            unauthorized = await http.post(f"{config.shim_url}/api/servicenow/change", json={})
            assert unauthorized.status_code == 401
            # One principal per role: the operator's token reads executions, the Business Rules' token may not.
            status = f"{config.shim_url}/api/executions/change-CHG0000000/status"
            operator = {"Authorization": f"Bearer {stack.config.operator_token}"}
            assert (await http.get(status, headers=operator)).status_code == 404
            rules = {"Authorization": f"Bearer {stack.config.webhook_token}"}
            assert (await http.get(status, headers=rules)).status_code == 403

        applied = await asyncio.to_thread(_cli, stack, "schedules", "apply")
        assert applied.returncode == 0, applied.stderr
        assert "changeloop-change-poll" in applied.stdout
        missing = await asyncio.to_thread(_cli, stack, "change", "status", "CHG0000000")
        assert missing.returncode == 2 and "no workflow change-CHG0000000" in missing.stderr
    finally:
        await asyncio.to_thread(stack.stop)
    assert all(p.poll() is not None for p in processes)
    for port in (config.temporal_port, config.ui_port, config.sandbox_port, config.shim_port):
        assert port_is_free(config.host, port)
