"""The Attachment API (markdown/api-reference/rest-apis/c_AttachmentAPI.md): files on a record, and their metadata.

- upload: `POST /api/now/attachment/file?table_name=&table_sys_id=&file_name=` with the file itself as the body and
  its Content-Type; 201 answers the metadata. An upload over `com.glide.attachment.max_size` is refused with a 400;
- list: `GET /api/now/attachment?sysparm_query=` over sys_attachment (table_name, table_sys_id, file_name ...);
- download: `GET /api/now/attachment/{sys_id}/file`; delete: `DELETE /api/now/attachment/{sys_id}`.

Errors come back in the instance's envelope and map like the Table API's (servicenow/errors.py), through the same
client, so the activities' retry semantics hold. A POST is not idempotent: callers look `find()` up first.

The list answers no paging headers (no Link, no X-Total-Count) and cuts its page before the read ACLs run. The
look-ups here are narrow (one record's files, often one name), and an attachment is readable exactly when its
record is, so a page is read until one comes back shorter than asked.
"""

from __future__ import annotations

import builtins

from servicenow.client import ServiceNowClient
from servicenow.query import Query
from servicenow.records import Record, Text

ATTACHMENT_TABLE = "sys_attachment"
PAGE = 1000  # c_AttachmentAPI.md, GET /now/attachment: sysparm_limit "Default: 1000"


class Attachment(Record):
    """The Attachment API's metadata object (every value a string)."""

    file_name: Text = ""
    table_name: Text = ""
    table_sys_id: Text = ""
    content_type: Text = ""
    size_bytes: Text = ""
    download_link: Text = ""
    created_by_name: Text = ""

    @property
    def size(self) -> int:
        return int(self.size_bytes) if self.size_bytes.isdigit() else 0


def attachment_query(table_name: str = "", table_sys_id: str = "", file_name: str = "") -> Query:
    query = Query()
    for field, value in (("table_name", table_name), ("table_sys_id", table_sys_id), ("file_name", file_name)):
        if value:
            query = query.eq(field, value)
    return query.order_by("sys_created_on")


async def list_attachments(
    sn: ServiceNowClient, table_name: str = "", table_sys_id: str = "", file_name: str = ""
) -> builtins.list[Attachment]:
    """Every attachment matching the filters (oldest first); an empty filter matches everything, so name one."""
    return await search(sn, attachment_query(table_name, table_sys_id, file_name))


async def search(sn: ServiceNowClient, query: Query) -> builtins.list[Attachment]:
    found: list[Attachment] = []
    offset = 0
    while True:
        params = {"sysparm_query": query.encode(), "sysparm_limit": str(PAGE), "sysparm_offset": str(offset)}
        response = await sn.request("GET", "/api/now/attachment", params=params)
        page = response.json()["result"]
        found += [Attachment.model_validate(item) for item in page]
        if len(page) < PAGE:
            return found
        offset += PAGE


async def find(sn: ServiceNowClient, table_name: str, table_sys_id: str, file_name: str) -> Attachment | None:
    """The record's attachment of that name (the oldest, when a human uploaded a namesake), or None."""
    found = await list_attachments(sn, table_name, table_sys_id, file_name)
    return found[0] if found else None


async def upload(
    sn: ServiceNowClient,
    table_name: str,
    table_sys_id: str,
    file_name: str,
    data: bytes,
    content_type: str = "text/plain",
) -> Attachment:
    params = {"table_name": table_name, "table_sys_id": table_sys_id, "file_name": file_name}
    response = await sn.request(
        "POST", "/api/now/attachment/file", params=params, content=data, headers={"Content-Type": content_type}
    )
    return Attachment.model_validate(response.json()["result"])


async def download(sn: ServiceNowClient, sys_id: str) -> bytes:
    response = await sn.request("GET", f"/api/now/attachment/{sys_id}/file", headers={"Accept": "*/*"})
    return response.content


async def delete(sn: ServiceNowClient, sys_id: str) -> None:
    await sn.request("DELETE", f"/api/now/attachment/{sys_id}")
