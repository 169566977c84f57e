"""What a person checks in the Temporal UI of the dev stack, done by headless Chromium: each check opens its own
browser context (no state carried over), saves a screenshot, and reports what it saw - pass or fail.

1. the ticket's execution link opens the workflow's event history;
2. the UI's search `ChangeNumber = "<number>"` lists the change and its runbook child (at http://localhost:<port>,
   the address the Temporal banner prints);
3. + 4. with the UI wired to the shim's codec, encrypted payloads appear decoded - at http://127.0.0.1:<port> and at
   http://localhost:<port> (two origins, both allowed);
5. the same page with the UI's codec setting removed (the settings answer rewritten in the browser) shows ciphertext
   and makes no codec call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, Response, Route, expect

from e2e.stack import CI, StandardChange
from starter.devstack.dev import DevConfig
from workflows.change.models import change_workflow_id
from workflows.runbook.models import runbook_workflow_id

TIMEOUT_MS = 20_000
CIPHERTEXT = re.compile(r'"[A-Za-z0-9+/]{48,}={0,2}"')  # a payload shown as base64 bytes: what encryption leaves
EVENT_COUNT = re.compile(r"Event History\s+(\d+)")


@dataclass
class Finding:
    check: str
    ok: bool
    saw: str
    screenshot: Path


@dataclass
class CodecCalls:
    """Every /codec/* answer the page got: status and the CORS origin the shim allowed."""

    seen: list[tuple[str, int, str]] = field(default_factory=list)

    def record(self, response: Response) -> None:
        if "/codec/" in response.url and response.request.method == "POST":
            origin = response.headers.get("access-control-allow-origin", "-")
            self.seen.append((response.url.split("?")[0].rsplit("/", 1)[-1], response.status, origin))

    def summary(self) -> str:
        if not self.seen:
            return "no codec call"
        statuses = sorted({status for _, status, _ in self.seen})
        origins = sorted({origin for _, _, origin in self.seen})
        return f"{len(self.seen)} codec call(s), status {statuses}, allowed origin {origins}"


class UiChecks:
    def __init__(self, browser: Browser, config: DevConfig, change: StandardChange, out: Path) -> None:
        self.browser, self.config, self.change, self.out = browser, config, change, out
        self.number = change.number

    def origin(self, host: str) -> str:
        return f"http://{host}:{self.config.ui_port}"

    def workflow_page(self, host: str, workflow_id: str) -> str:
        return f"{self.origin(host)}/namespaces/{self.config.namespace}/workflows/{workflow_id}"

    async def run_all(self) -> list[Finding]:
        return [
            await self._check("01-execution-link", "ticket's execution link opens the history", self.execution_link),
            await self._check("02-search-change-number", "search ChangeNumber lists change + runbook", self.search),
            await self._check(
                "03-decoded-127.0.0.1", "payloads decoded via codec (127.0.0.1)", self.decoded("127.0.0.1")
            ),
            await self._check(
                "04-decoded-localhost", "payloads decoded via codec (localhost)", self.decoded("localhost")
            ),
            await self._check("05-ciphertext-without-codec", "ciphertext when the UI has no codec", self.ciphertext),
        ]

    async def _check(self, name: str, title: str, body: Callable[[Page, CodecCalls], Awaitable[str]]) -> Finding:
        shot = self.out / f"{name}.png"
        context = await self.browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        calls = CodecCalls()
        page.on("response", calls.record)
        try:
            saw = await body(page, calls)
            ok = True
        except (AssertionError, TimeoutError, ValueError) as exc:  # expect() raises AssertionError on its deadline
            saw = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; at {page.url}; {calls.summary()}"
            ok = False
        except Exception as exc:  # Playwright's own errors (navigation, closed page): a failed check, reported
            saw = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; at {page.url}"
            ok = False
        await _caption(page, f"{'PASS' if ok else 'FAIL'} {title} - {page.url}")
        await page.screenshot(path=str(shot))
        await context.close()
        return Finding(title, ok, saw, shot)

    # -- 1 ---------------------------------------------------------------------------------------------------------
    async def execution_link(self, page: Page, calls: CodecCalls) -> str:
        link = self.change.execution_link
        change_id = change_workflow_id(self.number)
        if not link:
            raise AssertionError("no work note of the ticket carries an execution link")
        if self.change.correlation_id != change_id:
            raise AssertionError(f"correlation_id is {self.change.correlation_id!r}, not {change_id!r}")
        await page.goto(link)
        main = page.locator("main")
        await expect(main).to_contain_text(change_id, timeout=TIMEOUT_MS)
        await expect(main).to_contain_text("Workflow Execution Started", timeout=TIMEOUT_MS)
        # load_change's result, decoded (the event list shows its first characters): readable, not just listed.
        await expect(main).to_contain_text('{"sys_id":"', timeout=TIMEOUT_MS)
        text = await main.inner_text()
        count = EVENT_COUNT.search(text)
        if not page.url.endswith("/history"):
            raise AssertionError(f"landed on {page.url}, not a history page")
        return (
            f"work note link {link} -> history page of {change_id} (status "
            f"{'COMPLETED' if 'COMPLETED' in text else '?'}), {count.group(1) if count else '?'} events, "
            f"'Workflow Execution Started' listed, load_change result shown decoded; {calls.summary()}"
        )

    # -- 2 ---------------------------------------------------------------------------------------------------------
    async def search(self, page: Page, calls: CodecCalls) -> str:
        expected = {change_workflow_id(self.number), runbook_workflow_id(self.number)}
        await page.goto(f"{self.origin('localhost')}/namespaces/{self.config.namespace}/workflows")
        await page.get_by_test_id("toggle-manual-query").click()
        box = page.get_by_test_id("workflow-manual-search-input")
        query = f'ChangeNumber = "{self.number}"'
        await box.fill(query)
        await box.press("Enter")
        rows = page.locator('input[aria-label^="Select Workflow "]')
        listed: set[str] = set()
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            labels = [await rows.nth(i).get_attribute("aria-label") or "" for i in range(await rows.count())]
            listed = {label.removeprefix("Select Workflow ") for label in labels}
            if listed == expected:
                break
            await page.wait_for_timeout(300)
        if listed != expected:
            raise AssertionError(f"search {query!r} listed {sorted(listed)}, expected {sorted(expected)}")
        count = await page.get_by_test_id("workflow-count").inner_text()
        return f"typed {query!r} at {self.origin('localhost')}: {count.strip()} listed, rows {sorted(listed)}"

    # -- 3, 4 ------------------------------------------------------------------------------------------------------
    def decoded(self, host: str) -> Callable[[Page, CodecCalls], Awaitable[str]]:
        async def check(page: Page, calls: CodecCalls) -> str:
            await page.goto(self.workflow_page(host, change_workflow_id(self.number)))
            main = page.locator("main")
            await expect(main).to_contain_text(f'"number": "{self.number}"', timeout=TIMEOUT_MS)
            await expect(main).to_contain_text(f"stopping app on {CI}", timeout=TIMEOUT_MS)
            codec_label = await self._codec_badge(page)
            if not calls.seen or any(status != 200 for _, status, _ in calls.seen):
                raise AssertionError(f"codec calls not all 200: {calls.seen}")
            if any(origin != self.origin(host) for _, _, origin in calls.seen):
                raise AssertionError(f"codec answered for another origin: {calls.seen}")
            text = await main.inner_text()
            if CIPHERTEXT.search(text):
                raise AssertionError("a payload is still shown as ciphertext")
            return (
                f'{self.origin(host)}: Input shows {{"number": "{self.number}", ...}}, Result shows the close notes '
                f"and 'stopping app on {CI}'; no ciphertext on the page; {calls.summary()}; top bar: {codec_label}"
            )

        return check

    @staticmethod
    async def _codec_badge(page: Page) -> str:
        """What the UI's top bar says about its codec (the data encoder status button)."""
        badge = page.locator('[data-testid^="data-encoder-status"]').first
        if not await badge.count():
            return "no codec status shown"
        return f"{await badge.get_attribute('data-testid')} ({await badge.get_attribute('aria-label')})"

    # -- 5 ---------------------------------------------------------------------------------------------------------
    async def ciphertext(self, page: Page, calls: CodecCalls) -> str:
        async def without_codec(route: Route) -> None:
            answer = await route.fetch()
            settings: dict[str, Any] = await answer.json()
            settings["Codec"] = {**settings.get("Codec", {}), "Endpoint": "", "PassAccessToken": False}
            await route.fulfill(response=answer, json=settings)

        await page.route("**/api/v1/settings*", without_codec)
        await page.goto(self.workflow_page("127.0.0.1", change_workflow_id(self.number)))
        main = page.locator("main")
        await expect(main).to_contain_text(CIPHERTEXT, timeout=TIMEOUT_MS)
        text = await main.inner_text()
        shown = CIPHERTEXT.findall(text)
        leaks = [
            marker for marker in (f"stopping app on {CI}", '"outcome"', self.change.short_description) if marker in text
        ]
        if leaks:
            raise AssertionError(f"clear text on the page without the codec: {leaks}")
        if calls.seen:
            raise AssertionError(f"the UI called the codec although its setting was removed: {calls.seen}")
        return (
            f"same page, UI settings answered with Codec.Endpoint removed: {len(shown)} payload(s) shown as base64 "
            f'ciphertext (e.g. {shown[0][:28]}…"), none of the clear-text markers, {calls.summary()}; '
            f"top bar: {await self._codec_badge(page)}"
        )


async def _caption(page: Page, text: str) -> None:
    """A strip along the bottom of the screenshot naming the check and the address: headless Chromium has no
    address bar, and the 127.0.0.1 and localhost pages otherwise look the same."""
    script = """text => {
        const strip = document.createElement('div');
        strip.textContent = text;
        strip.style.cssText = 'position:fixed;left:0;right:0;bottom:0;z-index:2147483647;padding:6px 10px;' +
            'font:13px monospace;background:#111;color:#fff';
        document.body.appendChild(strip);
    }"""
    with suppress(Exception):  # a page that never loaded still gets its screenshot, without the caption
        await page.evaluate(script, text)
