"""`/sandbox/slack`: a stand-in for a Slack incoming webhook. POST stores a message, GET lists them, DELETE clears.

Point CHANGELOOP_SLACK_WEBHOOK_URL at `<sandbox>/sandbox/slack` and the reconciliation summary lands here, where a test
or the demo reads it back. No auth, like the rest of /sandbox/*.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(prefix="/sandbox/slack")
_lock = threading.Lock()


def _messages(request: Request) -> list[dict[str, Any]]:
    app = request.app
    if not hasattr(app.state, "slack_messages"):
        app.state.slack_messages = []
    messages: list[dict[str, Any]] = app.state.slack_messages
    return messages


@router.post("")
async def post_message(request: Request, message: dict[str, Any]) -> dict[str, str]:
    with _lock:
        _messages(request).append(message)
    return {"ok": "true"}  # Slack answers a plain "ok"; a JSON body keeps clients simple


@router.get("")
async def list_messages(request: Request) -> list[dict[str, Any]]:
    with _lock:
        return list(_messages(request))


@router.delete("")
async def clear_messages(request: Request) -> dict[str, str]:
    with _lock:
        _messages(request).clear()
    return {"status": "ok"}
