"""Helpers for the sandbox tests: a capture endpoint, a polling wait, result unwrapping."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

INTEGRATION = ("changeloop.integration", "sn-integration-pw")
ADMIN = ("admin", "admin")
# The seed's people and their sandbox passwords (sandbox/config.py DEFAULT_USERS).
PEOPLE = {name: (name, f"{name}-pw") for name in ("alice.ops", "bob.sre", "carol.cab", "dave.data", "mallory")}
OAUTH_CLIENT = ("changeloop", "changeloop-secret")


def poll(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Wait for a condition with a deadline (never a guessed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s (last value {result!r})")
        time.sleep(interval)


class Capture:
    """A tiny HTTP endpoint standing in for the starter shim: records every POST it receives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        captured = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                captured.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"RUNNING"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"  # the shim's base URL (x_changeloop.shim_url)
        self.url = f"{self.base}/api/servicenow/change"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Capture:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def posted_to(capture: Capture, path: str) -> list[dict[str, Any]]:
    return [r for r in capture.received if r["path"] == path]


def result(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["result"]


def approvals_of(api: httpx.Client, change_id: str, state: str | None = None) -> list[dict[str, Any]]:
    """The change's sysapproval_approver records (approver as user_name), oldest first."""
    query = f"sysapproval={change_id}" + (f"^state={state}" if state else "") + "^ORDERBYsys_created_on"
    params = {"sysparm_query": query, "sysparm_fields": "sys_id,state,approver.user_name,group,sysapproval"}
    rows: list[dict[str, Any]] = result(api.get("/api/now/table/sysapproval_approver", params=params))
    return rows


def decide(api: httpx.Client, approval_id: str, person: str, state: str, comments: str = "") -> httpx.Response:
    """An approver PATCHes their own approval record (with their own credentials)."""
    body = {"state": state, **({"comments": comments} if comments else {})}
    url = f"{api.base_url}/api/now/table/sysapproval_approver/{approval_id}"
    return httpx.patch(url, json=body, auth=PEOPLE[person], timeout=10)


def approve_stage(api: httpx.Client, change_id: str) -> list[str]:
    """Every requested approval of the change, approved by its own approver; answers who approved."""
    approvers = []
    for row in approvals_of(api, change_id, "requested"):
        person = row["approver.user_name"]
        result(decide(api, row["sys_id"], person, "approved"))
        approvers.append(person)
    return approvers
