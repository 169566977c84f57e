"""`python -m e2e` (`make e2e`): start `changeloop dev` with encrypted history, run a standard change through it, then
check the Temporal UI in headless Chromium. Screenshots and the dev stack's log go to .changeloop/e2e/; each check
prints what it saw; the exit code is 0 only when every check passed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import async_playwright

from e2e.checks import Finding, UiChecks
from e2e.chromium import ARGS, ensure_chromium
from e2e.stack import DevCommand, run_standard_change, wait_until_listed
from starter.devstack.dev import PROJECT_ROOT
from workflows.change.models import change_workflow_id
from workflows.runbook.models import runbook_workflow_id

OUT = PROJECT_ROOT / ".changeloop" / "e2e"


async def run(out: Path) -> list[Finding]:
    chromium = await asyncio.to_thread(ensure_chromium)
    dev = DevCommand(out / "dev.log")
    config = dev.config
    print(f"starting `changeloop dev` (encryption on, key generated for this run; log {dev.log}) …", flush=True)
    await dev.start()
    try:
        print(f"  Temporal UI {config.ui_url} (codec {config.codec_url}), sandbox {config.sandbox_url}", flush=True)
        change = await run_standard_change(config)
        print(f"change {change.number}: state {change.state}, correlation_id {change.correlation_id}", flush=True)
        print(f"  execution link from its work note: {change.execution_link or '(none)'}", flush=True)
        expected = {change_workflow_id(change.number), runbook_workflow_id(change.number)}
        indexed = await wait_until_listed(config, change.number, expected)
        print(f"  Temporal lists for ChangeNumber = '{change.number}': {sorted(indexed)}", flush=True)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(chromium), args=ARGS, headless=True)
            try:
                return await UiChecks(browser, config, change, out).run_all()
            finally:
                await browser.close()
    finally:
        print("stopping `changeloop dev` …", flush=True)
        await asyncio.to_thread(dev.stop)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()  # a screenshot left from an earlier run must not pass for this one's
    findings = asyncio.run(run(OUT))
    print()
    for finding in findings:
        mark = "PASS" if finding.ok else "FAIL"
        print(f"{mark}  {finding.check}\n      saw: {finding.saw}\n      screenshot: {finding.screenshot}")
    failed = [f for f in findings if not f.ok]
    print(f"\n{len(findings) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not findings else 0


if __name__ == "__main__":
    sys.exit(main())
