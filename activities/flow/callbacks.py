"""Flow-run callbacks: POST the result to the caller's URL, signed with HMAC-SHA256 of CHANGELOOP_CALLBACK_SIGNING_KEY, a secret of its own (a
receiver holds nothing that lets it call the shim).

The signing key is read from the worker's settings here, so it never enters workflow history. The URL must pass the
operator's outbound allowlist (ops/outbound.py: CHANGELOOP_OUTBOUND_ALLOW; loopback, link-local and private
addresses only when listed), the request goes to the address that was checked and never follows a redirect, and
the body passes the scrubber first. What a failed callback reports is the same whatever the target answered: no
status code, no body, no address, so a caller cannot use callbacks to probe what the worker can reach. The worker's
own log names the status for the operator.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.settings import Settings
from ops import outbound
from ops.logs import get_logger
from ops.scrub import SCRUBBER
from workflows import calls
from workflows.flow.models import CallbackInput

SIGNATURE_HEADER = "X-Changeloop-Signature"
NOT_DELIVERED = "callback not delivered: the receiver did not accept it"
log = get_logger("changeloop.callback")


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class CallbackActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.allow = outbound.Allowlist.parse(settings.outbound_allow)

    @activity.defn(name=calls.POST_CALLBACK.name)
    async def post_callback(self, request: CallbackInput) -> int:
        body = json.dumps(SCRUBBER.value(request.payload), sort_keys=True, default=str).encode()
        headers = {"Content-Type": "application/json"}
        if self.settings.callback_signing_key:
            headers[SIGNATURE_HEADER] = sign(body, self.settings.callback_signing_key.get_secret_value())
        async with httpx.AsyncClient(timeout=30) as http:
            try:
                response = await outbound.send(http, "POST", request.url, self.allow, content=body, headers=headers)
            except outbound.OutboundRefused as exc:
                raise ApplicationError(
                    f"callback refused: {exc}", type="CallbackNotAllowed", non_retryable=True
                ) from None
            except (outbound.OutboundUnreachable, httpx.TransportError) as exc:
                log.warning("callback.unreachable", error=type(exc).__name__)
                raise ApplicationError(NOT_DELIVERED, type="CallbackFailed") from None
        if response.is_success:
            return response.status_code
        log.warning("callback.refused", status=response.status_code)
        # A 4xx is the receiver's final word; 429 and 5xx may pass. Either way the caller learns no status code.
        final = 400 <= response.status_code < 500 and response.status_code != 429
        raise ApplicationError(
            NOT_DELIVERED, type="CallbackRefused" if final else "CallbackFailed", non_retryable=final
        )
