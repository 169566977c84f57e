"""The demo's reconciliation scenario: the sandbox fleet has drifted from the CMDB both ways (seed.yaml `fleet:`);
one run creates the unlisted hosts' CIs marked for review, opens an incident per gone server, and prints the summary.

Called at the end of the demo walkthrough (starter/demo.py) against the stack it started.
"""

from __future__ import annotations

import asyncio
from typing import Any

from settings import Settings
from starter.cli_reconcile import print_summary
from starter.dev import DevConfig
from starter.reconcile_config import load_reconcile_config, start_reconcile
from starter.temporal import connect
from workflows.reconcile_models import HttpSource, ReconcileSummary


class ReconcileDemoFailed(Exception):
    """The run did not find the seeded drift; the message says what it found instead."""


async def reconcile_scenario(config: DevConfig, console: Any, within: float = 60.0) -> ReconcileSummary:
    settings = Settings(
        _env_file=None,
        temporal_address=config.temporal_address,
        temporal_namespace=config.namespace,
        task_queue=config.task_queue,
        ui_url=config.ui_url,
        servicenow_url=config.sandbox_url,
    )
    reconcile = load_reconcile_config()
    # The shipped config reads the fleet on the default port; the demo's sandbox may sit on a free one.
    sources = [
        s.model_copy(update={"url": f"{config.sandbox_url}/fleet/hosts"}) if isinstance(s, HttpSource) else s
        for s in reconcile.sources
    ]
    reconcile = reconcile.model_copy(update={"sources": sources})
    client = await connect(settings)
    handle = await start_reconcile(client, settings, reconcile)
    console.print(f"4. reconciling the CMDB against the sandbox fleet: {settings.execution_url(handle.id)}")
    try:
        summary = await asyncio.wait_for(handle.result(), within)
    except TimeoutError as exc:
        raise ReconcileDemoFailed(f"{handle.id} did not finish within {within:.0f} s") from exc
    print_summary(console, summary)
    if not (summary.created_total or summary.already_in_cmdb) or not (
        summary.incidents_total or summary.incidents_already_open
    ):
        raise ReconcileDemoFailed(
            f"expected the seeded drift both ways, found {summary.created_total} new CI(s) and "
            f"{summary.incidents_total} incident(s)"
        )
    return summary
