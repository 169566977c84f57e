"""`/api/now/attachment[...]`: the Attachment API (markdown/api-reference/rest-apis/c_AttachmentAPI.md).

| call | answer |
|---|---|
| `POST /api/now/attachment/file?table_name=&table_sys_id=&file_name=` (raw body, Content-Type of the file) | 201 `{"result": metadata}`, `Location` |
| `GET /api/now/attachment` (`sysparm_query` over sys_attachment, `sysparm_limit` default 1000, `sysparm_offset`) | 200 `{"result": [metadata]}` |
| `GET /api/now/attachment/{sys_id}` | 200 `{"result": metadata}`; 404 missing or not accessible |
| `GET /api/now/attachment/{sys_id}/file` | 200 the bytes, `Content-Type` as uploaded, `X-Attachment-Metadata` |
| `DELETE /api/now/attachment/{sys_id}` | 204; 404 |

Permissions (the doc's "Attachment API role requirements"): uploading or deleting needs the roles that write the
target table; reading needs the target record to be readable. The list cuts its page before the read ACLs run, as
the Table API does.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox import attachments
from sandbox.attachments import ATTACHMENT_TABLE
from sandbox.errors import ApiError
from sandbox.gate import admit, after_write, not_found, readable, readable_parent, sandbox_state, visible_rows
from sandbox.routes_table import acl_refusal
from sandbox.state import SandboxState
from sandbox.store import Record
from sandbox.tables import get_table

router = APIRouter()

DEFAULT_LIMIT = 1000  # c_AttachmentAPI.md, GET /now/attachment: sysparm_limit "Default: 1000"


def _int_param(request: Request, name: str, default: int) -> int:
    try:
        return max(0, int(request.query_params.get(name, default)))
    except ValueError:
        return default


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _attachment(state: SandboxState, user: str, sys_id: str) -> Record:
    record = readable(state, user, ATTACHMENT_TABLE, state.instance.lookup(ATTACHMENT_TABLE, sys_id))
    if record is None:
        raise not_found()
    return record


@router.post("/api/now/attachment/file")
async def upload(request: Request) -> Response:
    caller = await admit(request, "attachment", ATTACHMENT_TABLE)
    state = sandbox_state(request)
    params = request.query_params
    missing = [name for name in ("table_name", "table_sys_id", "file_name") if not params.get(name)]
    if missing:
        raise ApiError(400, "Mandatory parameters missing", f"Missing request parameter(s): {', '.join(missing)}")
    content_type = request.headers.get("content-type", "")
    if not content_type:
        raise ApiError(400, "Content-Type header missing", "The Content-Type header is mandatory to post attachments")
    table_name, table_sys_id = params["table_name"], params["table_sys_id"]
    # 404: "the record specified by table_name and table_sys_id does not exist or is not accessible".
    target = state.instance.lookup(table_name, table_sys_id) if get_table(table_name) else None
    if target is None or not readable_parent(state, caller.user, table_name, table_sys_id):
        raise ApiError(
            404, "Record not found", f"Record {table_sys_id} of table {table_name} not found or not accessible"
        )
    if not state.access.allows(caller.user, table_name, "write"):
        raise acl_refusal("create")
    data = await request.body()
    try:
        record = attachments.save(
            state.instance,
            caller.user,
            table_name=table_name,
            table_sys_id=table_sys_id,
            file_name=params["file_name"],
            content_type=content_type,
            data=data,
            max_bytes=state.properties.attachment_max_bytes,
        )
    except attachments.TooLarge as exc:
        raise ApiError(400, str(exc), "") from None
    state.stats.count_write(ATTACHMENT_TABLE)
    await after_write(caller)
    meta = attachments.metadata(state.instance, record, _base(request))
    location = f"{_base(request)}/api/now/attachment/{record['sys_id']}"
    return JSONResponse({"result": meta}, status_code=201, headers={"Location": location})


@router.get("/api/now/attachment")
async def list_attachments(request: Request) -> Response:
    caller = await admit(request, "attachment", ATTACHMENT_TABLE)
    state = sandbox_state(request)
    limit = _int_param(request, "sysparm_limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
    offset = _int_param(request, "sysparm_offset", 0)
    rows = state.instance.select(ATTACHMENT_TABLE, request.query_params.get("sysparm_query", ""))
    visible = visible_rows(state, caller.user, ATTACHMENT_TABLE, rows[offset : offset + limit])
    await state.profile.pause(state.profile.rows_delay(len(visible)))
    return JSONResponse({"result": [attachments.metadata(state.instance, r, _base(request)) for r in visible]})


@router.get("/api/now/attachment/{sys_id}")
async def get_metadata(request: Request, sys_id: str) -> Response:
    caller = await admit(request, "attachment", ATTACHMENT_TABLE)
    state = sandbox_state(request)
    record = _attachment(state, caller.user, sys_id)
    return JSONResponse({"result": attachments.metadata(state.instance, record, _base(request))})


@router.get("/api/now/attachment/{sys_id}/file")
async def download(request: Request, sys_id: str) -> Response:
    caller = await admit(request, "attachment", ATTACHMENT_TABLE)
    state = sandbox_state(request)
    record = _attachment(state, caller.user, sys_id)
    meta = attachments.metadata(state.instance, record, _base(request))
    return Response(
        content=attachments.content(state.instance, sys_id),
        media_type=record.get("content_type") or "application/octet-stream",
        headers={"X-Attachment-Metadata": json.dumps(meta)},
    )


@router.delete("/api/now/attachment/{sys_id}")
async def delete(request: Request, sys_id: str) -> Response:
    caller = await admit(request, "attachment", ATTACHMENT_TABLE)
    state = sandbox_state(request)
    record = _attachment(state, caller.user, sys_id)
    table_name = record.get("table_name", "")
    if get_table(table_name) is not None and not state.access.allows(caller.user, table_name, "write"):
        raise acl_refusal("delete")
    if not attachments.remove(state.instance, sys_id):
        raise not_found()
    state.stats.count_write(ATTACHMENT_TABLE)
    await after_write(caller)
    return Response(status_code=204)
