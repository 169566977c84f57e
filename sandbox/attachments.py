"""Attachments: metadata in `sys_attachment` (readable through the Table API too), content in the store's blobs.

From markdown/api-reference/rest-apis/c_AttachmentAPI.md:
- uploads respect `com.glide.attachment.max_size` (MB, "1024MB by default"); the sandbox accepts a fraction so tests
  can exceed it with a few bytes (the real property is an integer);
- the metadata an upload, a list or a GET answers: table_name, table_sys_id, file_name, content_type, size_bytes,
  size_compressed, compressed, download_link, image_*, average_image_color, sys_* fields, created_by_name /
  updated_by_name; `hash` (SHA-256 of the content) is a sys_attachment field, shown by the Table API;
- the sandbox does not compress: `compressed` is "false" and `size_compressed` equals `size_bytes`.

An upload over the limit answers 400 (the Attachment API's POST lists 201/400/404/500) with the shape the REST API
reference documents for an oversized upload (markdown/api-reference/rest-apis/applications-api.md, "Payload is too
large": `Size of uploaded data:N(bytes) is greater than max allowed upload limit of M(bytes)`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.instance import Instance
from sandbox.store import Record

ATTACHMENT_TABLE = "sys_attachment"
DEFAULT_MAX_SIZE_MB = 1024.0


class SystemProperties(BaseModel):
    """The instance properties the sandbox honours, under their real names."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    attachment_max_size: float = Field(default=DEFAULT_MAX_SIZE_MB, gt=0, alias="com.glide.attachment.max_size")

    @property
    def attachment_max_bytes(self) -> int:
        return int(self.attachment_max_size * 1024 * 1024)

    def shown(self) -> dict[str, str]:
        """As sys_properties holds them: strings under the property names."""
        return {key: f"{value:g}" for key, value in self.model_dump(by_alias=True).items()}


class TooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"Size of uploaded data:{float(size)}(bytes) is greater than max allowed upload limit of {float(limit)}(bytes)"
        )


def save(
    instance: Instance,
    user: str,
    *,
    table_name: str,
    table_sys_id: str,
    file_name: str,
    content_type: str,
    data: bytes,
    max_bytes: int,
) -> Record:
    """Store one attachment: the metadata record, then its bytes under the same sys_id."""
    if len(data) > max_bytes:
        raise TooLarge(len(data), max_bytes)
    size = str(len(data))
    body = {
        "file_name": file_name,
        "table_name": table_name,
        "table_sys_id": table_sys_id,
        "content_type": content_type,
        "size_bytes": size,
        "size_compressed": size,
        "compressed": "false",
        "hash": hashlib.sha256(data).hexdigest(),
    }
    with instance.store.lock:
        record = instance.create(ATTACHMENT_TABLE, body, user)
        instance.store.put_blob(record["sys_id"], data)
    return record


def content(instance: Instance, sys_id: str) -> bytes:
    return instance.store.get_blob(sys_id) or b""


def remove(instance: Instance, sys_id: str) -> bool:
    with instance.store.lock:
        removed = instance.delete(ATTACHMENT_TABLE, sys_id)
        instance.store.delete_blob(sys_id)
    return removed


_META_FIELDS = (
    "table_sys_id",
    "size_bytes",
    "sys_updated_on",
    "sys_id",
    "image_height",
    "sys_created_on",
    "file_name",
    "sys_created_by",
    "compressed",
    "average_image_color",
    "sys_updated_by",
    "sys_tags",
    "table_name",
    "image_width",
    "sys_mod_count",
    "content_type",
    "size_compressed",
)


def metadata(instance: Instance, record: Record, base_url: str) -> dict[str, Any]:
    """The Attachment API's metadata object for one sys_attachment record."""
    meta: dict[str, Any] = {name: record.get(name, "") for name in _META_FIELDS}
    meta["download_link"] = f"{base_url.rstrip('/')}/api/now/attachment/{record['sys_id']}/file"
    meta["created_by_name"] = _full_name(instance, record.get("sys_created_by", ""))
    meta["updated_by_name"] = _full_name(instance, record.get("sys_updated_by", ""))
    return meta


def _full_name(instance: Instance, user_name: str) -> str:
    for user in instance.store.rows("sys_user"):
        if user.get("user_name") == user_name:
            return user.get("name", "") or user_name
    return user_name
