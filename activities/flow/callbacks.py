"""Flow-run callbacks: POST the result to the caller's URL, signed with HMAC-SHA256 of the webhook token.

The token is read from the worker's environment here, so it never enters workflow history.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.settings import Settings
from workflows import calls
from workflows.flow.models import CallbackInput

SIGNATURE_HEADER = "X-Changeloop-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class CallbackActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name=calls.POST_CALLBACK.name)
    async def post_callback(self, request: CallbackInput) -> int:
        body = json.dumps(request.payload, sort_keys=True, default=str).encode()
        headers = {"Content-Type": "application/json"}
        if self.settings.webhook_token:
            headers[SIGNATURE_HEADER] = sign(body, self.settings.webhook_token.get_secret_value())
        async with httpx.AsyncClient(timeout=30) as http:
            try:
                response = await http.post(request.url, content=body, headers=headers)
            except httpx.TransportError as exc:
                raise ApplicationError(
                    f"callback to {request.url} failed: {type(exc).__name__}", type="CallbackFailed"
                ) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise ApplicationError(f"callback answered {response.status_code}", type="CallbackFailed")
        if response.status_code >= 400:
            # The receiver refused the payload itself; sending it again will not change its mind.
            raise ApplicationError(
                f"callback refused with {response.status_code}", type="CallbackRefused", non_retryable=True
            )
        return response.status_code
