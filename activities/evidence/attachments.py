"""`attach_file`: one text file on one record, through the Attachment API, once.

The natural key is (table, record, file name): the activity lists the record's attachments of that name before it
uploads, so an attempt retried after a lost answer, a worker killed between the upload and its completion, or a
repeated close finds the file already there and uploads nothing. The first upload wins; a later text of the same
name is not written over it (an auditor's evidence does not change after the fact).
"""

from __future__ import annotations

from temporalio import activity

from activities.errors import servicenow_errors
from activities.evidence.text import capped, clean
from config.settings import Settings
from servicenow import attachments
from servicenow.client import ServiceNowClient
from workflows import calls
from workflows.evidence.models import AttachInput, AttachResult


class AttachmentActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.settings = settings

    @activity.defn(name=calls.ATTACH_FILE.name)
    async def attach_file(self, request: AttachInput) -> AttachResult:
        async with servicenow_errors():
            existing = await attachments.find(self.sn, request.table, request.sys_id, request.file_name)
            if existing is not None:
                return _result(existing, uploaded=False)
            data, truncated = capped(clean(self.settings, request.text), self.settings.attachment_max_bytes)
            meta = await attachments.upload(
                self.sn, request.table, request.sys_id, request.file_name, data, request.content_type
            )
        return _result(meta, uploaded=True, truncated=truncated)


def _result(meta: attachments.Attachment, *, uploaded: bool, truncated: bool = False) -> AttachResult:
    return AttachResult(
        sys_id=meta.sys_id,
        file_name=meta.file_name,
        size_bytes=meta.size,
        uploaded=uploaded,
        truncated=truncated,
        download_link=meta.download_link,
    )
