"""`changeloop wave status <number>` shows a wave's progress from its status query, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client

from config.settings import Settings
from tests.changes import Changes
from tests.wave.conftest import FleetControl, run_wave


async def _changeloop(settings: Settings, *args: str) -> tuple[int, str]:
    env = os.environ | {
        "CHANGELOOP_TEMPORAL_ADDRESS": settings.temporal_address,
        "CHANGELOOP_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "CHANGELOOP_UI_URL": settings.ui_url,
        "COLUMNS": "160",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "changeloop"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode()


async def test_wave_status_shows_counts_progress_and_the_hosts_that_need_a_look(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    await fleet.set_faults("pay-web-03", unhealthy_after_patch=True)
    wave = await run_wave(temporal_client, wave_settings, changes, app="payments-api")

    code, out = await _changeloop(wave_settings, "wave", "status", wave.number, "--once")

    assert code == 0, out
    assert "4/4" in out, "every CI finished"
    assert "pay-web-03" in out and "rolled_back" in out and "health check failed after patch" in out
    assert f"wave-{wave.number}" in out


async def test_wave_status_of_an_unknown_wave_says_so(wave_settings: Settings) -> None:
    code, out = await _changeloop(wave_settings, "wave", "status", "CHG9999999", "--once")

    assert code == 2
    assert "no wave wave-CHG9999999" in out
