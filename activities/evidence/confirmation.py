"""`notify_change_closed`: the Slack confirmation of a closed change (opt-in: CHANGELOOP_SLACK_CHANGE_CLOSED).

Posted through the same webhook as incidents (activities/slack.py), scrubbed like them. The links are built here,
from the worker's settings: the ticket on the instance, the execution in the Temporal UI.
"""

from __future__ import annotations

from temporalio import activity

from activities.evidence.text import clean
from activities.slack import escape, post_to_slack
from config.settings import Settings
from servicenow.client import ServiceNowClient
from workflows import calls
from workflows.evidence.models import CANCELED_NOTICE, ChangeClosedInput

MARKS = {"successful": ":white_check_mark:", "successful_issues": ":warning:", CANCELED_NOTICE: ":no_entry_sign:"}


def closed_text(request: ChangeClosedInput, ticket_url: str, execution_url: str) -> str:
    mark = MARKS.get(request.close_code, ":x:")
    runbook = f" by runbook `{escape(request.runbook)}`" if request.runbook else ""
    if request.close_code == CANCELED_NOTICE:
        lines = [f"{mark} *{request.number}* canceled, not implemented{runbook}."]
    else:
        lines = [f"{mark} *{request.number}* closed *{request.close_code or 'closed'}*{runbook}."]
    if request.summary:
        lines.append(escape(request.summary))  # a failed run's first close line quotes its step's output
    lines.append(f"<{ticket_url}|{request.number} in ServiceNow> · <{execution_url}|execution in Temporal>")
    return "\n".join(lines)


class ConfirmationActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.settings = settings

    @activity.defn(name=calls.NOTIFY_CHANGE_CLOSED.name)
    async def notify_change_closed(self, request: ChangeClosedInput) -> str:
        """ "sent", "off" (the setting is off) or "not configured" (no webhook URL)."""
        if not self.settings.slack_change_closed:
            return "off"
        ticket_url = self.sn.record_link("change_request", request.sys_id)
        execution_url = self.settings.execution_url(request.workflow_id, request.run_id or None)
        sent = await post_to_slack(self.settings, clean(self.settings, closed_text(request, ticket_url, execution_url)))
        return "sent" if sent else "not configured"
