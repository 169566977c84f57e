"""Slack incoming-webhook posts, shared by every activity that notifies.

The webhook URL is itself a secret (whoever has it can post to the channel): it is read from the worker's settings
here and never appears in an error message, a log line or workflow history.
"""

from __future__ import annotations

import httpx
from temporalio.exceptions import ApplicationError

from config.settings import Settings
from ops.scrub import SCRUBBER


def escape(text: str) -> str:
    """Text from outside (a step's output, a close note) as Slack shows it literally: its `<!channel>`, `<@user>`
    and `<url|label>` markup would otherwise ping a channel or disguise a link (Slack's formatting docs name these
    three characters as the ones to escape)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def post_to_slack(settings: Settings, text: str) -> bool:
    """Post `text`; False when no webhook is configured. Unreachable, 429 and 5xx are retryable; another refusal
    (a revoked webhook, a malformed message) is not."""
    if settings.slack_webhook_url is None:
        return False
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                settings.slack_webhook_url.get_secret_value(), json={"text": SCRUBBER.text(text)}
            )
    except httpx.HTTPError as exc:
        # Name the error class, never the URL.
        raise ApplicationError(f"Slack webhook: {type(exc).__name__}", type="SlackUnreachable") from None
    if response.status_code >= 300:
        raise ApplicationError(
            f"Slack webhook answered {response.status_code}",
            type="SlackRefused",
            non_retryable=response.status_code < 500 and response.status_code != 429,
        )
    return True
