"""`changeloop sandbox`: the sandbox ServiceNow in the foreground. The sandbox is a development tool that the wheel
does not ship (it runs from a checkout: `make dev`, or the compose file's `sandbox` image target), so it is imported
here, in the dev stack, and nowhere else in the product."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def serve_sandbox(
    host: str,
    port: int,
    db: str,
    webhook_url: str | None,
    webhook_token: str | None,
    console: Any,
    profile: str = "default",
    incident_token: str | None = None,
) -> None:
    try:
        from sandbox.server import SandboxConfig, serve
    except ImportError as exc:  # an installed wheel: no sandbox in it, on purpose
        raise SystemExit(
            "the sandbox ServiceNow is a development tool and is not installed: run it from a checkout (make dev)"
        ) from exc
    if db != ":memory:":
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    console.print(
        f"sandbox ServiceNow on http://{host}:{port} ({profile} profile; admin/admin, "
        "changeloop.integration/sn-integration-pw)"
    )
    serve(
        SandboxConfig(
            host=host,
            port=port,
            db_path=db,
            webhook_url=webhook_url,
            webhook_token=webhook_token,
            incident_token=incident_token,
            profile=profile,
        )
    )
