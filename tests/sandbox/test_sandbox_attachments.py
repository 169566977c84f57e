"""The Attachment API (c_AttachmentAPI.md): upload, list, metadata, download, delete, size limit, permissions."""

from __future__ import annotations

import hashlib
import json
import uuid

import httpx

from tests.sandbox.support import result


def _incident(api: httpx.Client) -> str:
    return str(result(api.post("/api/now/table/incident", json={"short_description": "has files"}), 201)["sys_id"])


def _upload(
    api: httpx.Client,
    table_sys_id: str,
    name: str,
    data: bytes,
    content_type: str = "text/plain",
    table: str = "incident",
) -> httpx.Response:
    return api.post(
        "/api/now/attachment/file",
        params={"table_name": table, "table_sys_id": table_sys_id, "file_name": name},
        content=data,
        headers={"Content-Type": content_type},
    )


def test_upload_answers_201_with_the_metadata_and_the_file_reads_back(emulator, api: httpx.Client) -> None:
    incident = _incident(api)
    data = b"step one: ok\nstep two: ok\n" * 10
    response = _upload(api, incident, "steps.log", data)

    meta = result(response, 201)
    assert response.headers["Location"] == f"{emulator.url}/api/now/attachment/{meta['sys_id']}"
    assert meta["table_name"] == "incident" and meta["table_sys_id"] == incident
    assert meta["file_name"] == "steps.log" and meta["content_type"] == "text/plain"
    assert meta["size_bytes"] == str(len(data)) and meta["compressed"] == "false"
    assert meta["sys_created_by"] == "changeloop.integration" and meta["created_by_name"] == "changeloop Integration"
    assert meta["download_link"] == f"{emulator.url}/api/now/attachment/{meta['sys_id']}/file"
    assert all(isinstance(value, str) for value in meta.values())

    assert result(api.get(f"/api/now/attachment/{meta['sys_id']}")) == meta
    file = api.get(f"/api/now/attachment/{meta['sys_id']}/file")
    assert file.status_code == 200 and file.content == data
    assert file.headers["Content-Type"].startswith("text/plain")
    assert json.loads(file.headers["X-Attachment-Metadata"])["file_name"] == "steps.log"


def test_binary_content_and_its_content_type_survive_the_round_trip(api: httpx.Client) -> None:
    incident = _incident(api)
    data = bytes(range(256)) * 4
    meta = result(_upload(api, incident, "logs.zip", data, content_type="application/zip"), 201)
    file = api.get(f"/api/now/attachment/{meta['sys_id']}/file")
    assert file.content == data and file.headers["Content-Type"] == "application/zip"


def test_attachments_are_listed_by_query_and_visible_in_sys_attachment(api: httpx.Client) -> None:
    incident = _incident(api)
    data = {name: f"content of {name}".encode() for name in ("b.txt", "a.txt", "c.txt")}
    for name, content in data.items():
        result(_upload(api, incident, name, content), 201)

    listed = result(
        api.get("/api/now/attachment", params={"sysparm_query": f"table_sys_id={incident}^ORDERBYfile_name"})
    )
    assert [a["file_name"] for a in listed] == ["a.txt", "b.txt", "c.txt"]
    page = result(
        api.get(
            "/api/now/attachment",
            params={
                "sysparm_query": f"table_sys_id={incident}^ORDERBYfile_name",
                "sysparm_limit": "1",
                "sysparm_offset": "1",
            },
        )
    )
    assert [a["file_name"] for a in page] == ["b.txt"]

    rows = result(
        api.get("/api/now/table/sys_attachment", params={"sysparm_query": f"table_sys_id={incident}^ORDERBYfile_name"})
    )
    assert [r["file_name"] for r in rows] == ["a.txt", "b.txt", "c.txt"]
    assert rows[0]["hash"] == hashlib.sha256(data["a.txt"]).hexdigest()
    assert rows[0]["size_bytes"] == str(len(data["a.txt"]))


def test_delete_removes_the_metadata_and_the_content(api: httpx.Client) -> None:
    incident = _incident(api)
    meta = result(_upload(api, incident, "gone.txt", b"bye"), 201)

    assert api.delete(f"/api/now/attachment/{meta['sys_id']}").status_code == 204
    for path in (f"/api/now/attachment/{meta['sys_id']}", f"/api/now/attachment/{meta['sys_id']}/file"):
        assert api.get(path).status_code == 404
    assert api.get(f"/api/now/table/sys_attachment/{meta['sys_id']}").status_code == 404
    assert api.delete(f"/api/now/attachment/{meta['sys_id']}").status_code == 404


def test_an_upload_over_the_max_size_property_answers_400_and_stores_nothing(
    api: httpx.Client, control: httpx.Client
) -> None:
    assert control.get("/properties").json() == {"com.glide.attachment.max_size": "1024"}  # MB, the documented default
    control.put("/properties", json={"com.glide.attachment.max_size": 0.001}).raise_for_status()  # 1048 bytes
    incident = _incident(api)

    refused = _upload(api, incident, "big.log", b"x" * 1049)
    assert refused.status_code == 400
    assert refused.json() == {
        "error": {
            "message": "Size of uploaded data:1049.0(bytes) is greater than max allowed upload limit of 1048.0(bytes)",
            "detail": "",
        },
        "status": "failure",
    }
    assert result(api.get("/api/now/attachment", params={"sysparm_query": f"table_sys_id={incident}"})) == []
    assert _upload(api, incident, "fits.log", b"x" * 1048).status_code == 201

    control.post("/reset-faults").raise_for_status()
    assert control.get("/properties").json() == {"com.glide.attachment.max_size": "1024"}


def test_an_unknown_property_is_refused(control: httpx.Client) -> None:
    assert control.put("/properties", json={"glide.no.such.property": "1"}).status_code == 422


def test_missing_parameters_and_content_type_answer_400(api: httpx.Client) -> None:
    incident = _incident(api)
    missing = api.post(
        "/api/now/attachment/file",
        params={"table_name": "incident", "table_sys_id": incident},
        content=b"x",
        headers={"Content-Type": "text/plain"},
    )
    assert missing.status_code == 400 and "file_name" in missing.json()["error"]["detail"]
    no_type = api.post(
        "/api/now/attachment/file",
        params={"table_name": "incident", "table_sys_id": incident, "file_name": "x.txt"},
        content=b"x",
    )
    assert no_type.status_code == 400 and no_type.json()["status"] == "failure"


def test_uploading_to_a_record_that_does_not_exist_answers_404(api: httpx.Client) -> None:
    assert _upload(api, uuid.uuid4().hex, "x.txt", b"x").status_code == 404
    assert _upload(api, uuid.uuid4().hex, "x.txt", b"x", table="no_such_table").status_code == 404


def test_attachments_of_a_hidden_record_are_not_accessible(
    api: httpx.Client, admin_api: httpx.Client, control: httpx.Client
) -> None:
    incident = _incident(api)
    meta = result(_upload(api, incident, "secret.txt", b"secret"), 201)
    control.put(
        "/acl", json={"rules": [{"table": "incident", "user": "changeloop.integration", "sys_ids": [incident]}]}
    )

    assert api.get(f"/api/now/attachment/{meta['sys_id']}").status_code == 404
    assert api.get(f"/api/now/attachment/{meta['sys_id']}/file").status_code == 404
    assert result(api.get("/api/now/attachment", params={"sysparm_query": f"table_sys_id={incident}"})) == []
    assert _upload(api, incident, "more.txt", b"more").status_code == 404
    assert admin_api.get(f"/api/now/attachment/{meta['sys_id']}/file").content == b"secret"


def test_uploading_or_deleting_needs_the_roles_that_write_the_record(api: httpx.Client, control: httpx.Client) -> None:
    incident = _incident(api)
    meta = result(_upload(api, incident, "kept.txt", b"kept"), 201)
    control.put("/roles/changeloop.integration", json={"roles": ["sn_incident_read"]}).raise_for_status()

    refused = _upload(api, incident, "new.txt", b"new")
    assert refused.status_code == 403
    assert refused.json()["error"]["detail"] == "ACL Exception Insert Failed due to security constraints"
    assert api.delete(f"/api/now/attachment/{meta['sys_id']}").status_code == 403
    assert api.get(f"/api/now/attachment/{meta['sys_id']}/file").content == b"kept"  # reading is allowed


def test_the_attachment_api_needs_authentication(emulator) -> None:
    response = httpx.get(f"{emulator.url}/api/now/attachment")
    assert response.status_code == 401 and response.json()["status"] == "failure"
