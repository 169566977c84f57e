"""The demo's reconciliation scenario: the sandbox fleet has drifted from the CMDB both ways (seed.yaml `fleet:`);
one run creates the unlisted hosts' CIs marked for review, opens an incident per gone server, and prints the summary.

Called at the end of the demo walkthrough (starter/demo.py) against the stack it started.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ops.connect import connect
from starter.cli.reconcile import print_summary
from starter.devstack.dev import DevConfig
from starter.devstack.walkthrough import DemoFailed
from starter.reconcile import start_reconcile
from workflows.reconcile.models import ReconcileSummary


async def reconcile_scenario(config: DevConfig, console: Any, within: float = 60.0) -> ReconcileSummary:
    settings = config.client_settings()
    client = await connect(settings)
    # The worker's own config: the dev stack wrote it with its sandbox's fleet URL (starter/devstack/dev.py).
    handle = await start_reconcile(client, settings)
    console.print(f"4. reconciling the CMDB against the sandbox fleet: {settings.execution_url(handle.id)}")
    try:
        summary = await asyncio.wait_for(handle.result(), within)
    except TimeoutError as exc:
        raise DemoFailed(f"{handle.id} did not finish within {within:.0f} s") from exc
    print_summary(console, summary)
    if not (summary.created_total or summary.already_in_cmdb) or not (
        summary.incidents_total or summary.incidents_already_open
    ):
        raise DemoFailed(
            f"expected the seeded drift both ways, found {summary.created_total} new CI(s) and "
            f"{summary.incidents_total} incident(s)"
        )
    return summary
