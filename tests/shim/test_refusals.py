"""Every refusal of the shim's contract (README "Starter shim API") answers the ServiceNow envelope with its code, and starts nothing."""

from __future__ import annotations

import httpx
from temporalio.client import Client

from config.settings import Settings
from tests.helpers import wait_for
from tests.shim.conftest import LiveServer, assert_envelope, change_number, count_on_queue, webhook_body

CHANGE = "/api/servicenow/change"


async def test_missing_wrong_or_non_bearer_token_is_401_and_starts_nothing(
    api: httpx.AsyncClient, temporal_client: Client, shim_settings: Settings
) -> None:
    body = webhook_body(change_number())
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic YTpi"}):
        response = await api.post(CHANGE, json=body, headers=headers)
        assert_envelope(response, 401)
        assert response.json()["error"]["message"] == "User Not Authenticated"
    # Unauthenticated callers don't even learn the schema: a bad body without a token is still 401.
    assert_envelope(await api.post(CHANGE, content=b"{not json", headers={"Authorization": ""}), 401)
    await _assert_only_sentinel_starts(api, temporal_client, shim_settings)


async def test_malformed_json_is_400(api: httpx.AsyncClient, temporal_client: Client, shim_settings: Settings) -> None:
    for raw in (b"{not json", b'{"number": "CHG0000001",', b"\xff\xfe"):
        response = await api.post(CHANGE, content=raw, headers={"Content-Type": "application/json"})
        assert_envelope(response, 400)
    await _assert_only_sentinel_starts(api, temporal_client, shim_settings)


async def test_body_over_1_mib_is_413_by_header_and_by_bytes_read(
    live_shim: LiveServer, token: str, temporal_client: Client, shim_settings: Settings, api: httpx.AsyncClient
) -> None:
    big = webhook_body(change_number(), short_description="x" * (1024 * 1024))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=live_shim.url, headers=headers, timeout=30) as http:
        declared = await http.post(CHANGE, json=big)
        assert_envelope(declared, 413, "1048576")

        async def chunks():  # no Content-Length: only counting the bytes read can catch it
            yield b'{"short_description": "'
            for _ in range(20):
                yield b"y" * 65536
            yield b'"}'

        streamed = await http.post(CHANGE, content=chunks(), headers={"Content-Type": "application/json"})
        assert_envelope(streamed, 413)
        # Exactly at the limit is still parsed (and refused on schema, not size).
        at_limit = b'{"pad": "' + b"z" * (1024 * 1024 - 11) + b'"}'
        assert len(at_limit) == 1024 * 1024
        assert_envelope(await http.post(CHANGE, content=at_limit), 422, "number", "sys_id")
    await _assert_only_sentinel_starts(api, temporal_client, shim_settings)


async def test_schema_errors_name_every_offending_field(
    api: httpx.AsyncClient, temporal_client: Client, shim_settings: Settings
) -> None:
    body = webhook_body("CHG123")
    del body["sys_id"]
    detail = assert_envelope(await api.post(CHANGE, json=body), 422, "number", "sys_id")
    assert "CHG" in detail

    # Only a change number is accepted: an incident number, an injection attempt or digits of another script
    # (`\d` would take Arabic-Indic ones) are refused, naming the field.
    for number in ("INC0010001", "CHG0000001^ORnumber!=x", "chg0000001", "", "CHG٠١٢٣٤٥٦", "CHG００１２３４５"):
        assert_envelope(await api.post(CHANGE, json=webhook_body(number)), 422, "number")
    assert_envelope(await api.post(CHANGE, json=webhook_body(change_number(), sys_id="nothex")), 422, "sys_id")
    assert_envelope(await api.post(CHANGE, json=[1, 2]), 422)

    approval = {"number": "CHG1", "approval": "maybe"}
    assert_envelope(await api.post("/api/servicenow/approval", json=approval), 422, "number", "approval")
    decision = {"comments": 5, "extra": True}
    assert_envelope(
        await api.post("/api/executions/change-CHG0000001/approve", json=decision), 422, "comments", "extra"
    )
    incident = {"resolved_by": "bob.sre"}
    assert_envelope(await api.post("/api/incidents/INC٠٠١٠٠٠١/resolve", json=incident), 422, "number")
    await _assert_only_sentinel_starts(api, temporal_client, shim_settings)


async def test_flow_refusals_name_unknown_flow_and_each_bad_input(
    api: httpx.AsyncClient, temporal_client: Client, shim_settings: Settings
) -> None:
    detail = assert_envelope(await api.post("/api/flows/no_such_flow/run", json={"inputs": {}}), 404, "no_such_flow")
    assert "restart_app_service" in detail  # the answer lists what exists

    run = {"inputs": {"Host": "web-01", "colour": "blue", "service": "app"}}
    detail = assert_envelope(await api.post("/api/flows/restart_app_service/run", json=run), 422)
    # Names are case-sensitive: `Host` is unknown, not a spelling of `host`.
    assert "inputs.Host" in detail and "inputs.colour" in detail and "inputs.service" not in detail

    bad = {"inputs": {"host": 1}, "callbackUrl": "ftp://example.com/x", "key": "has space", "other": 1}
    assert_envelope(
        await api.post("/api/flows/restart_app_service/run", json=bad),
        422,
        "inputs.host",
        "callbackUrl",
        "key",
        "other",
    )
    await _assert_only_sentinel_starts(api, temporal_client, shim_settings)


async def test_unknown_route_and_method_keep_the_envelope(api: httpx.AsyncClient) -> None:
    assert_envelope(await api.get("/api/nothing-here"), 404)
    assert_envelope(await api.get(CHANGE), 405)
    assert_envelope(await api.get("/api/executions/change-CHG0000000/status"), 404, "change-CHG0000000")
    # An approval hint for a change that no execution runs is not an error (an approval of a normal change is
    # decided before the change is Scheduled, so before its execution exists).
    approval = {"number": "CHG0000000", "approval": "approved", "approver": "alice.ops"}
    hint = await api.post("/api/servicenow/approval", json=approval)
    assert hint.status_code == 202 and hint.json()["status"] == "NO_EXECUTION"
    assert_envelope(await api.post("/api/executions/change-CHG0000000/approve", json={}), 404)
    # Only changeloop's executions are reachable here.
    assert_envelope(await api.get("/api/executions/some-other-workflow/status"), 422, "executionId")


async def _assert_only_sentinel_starts(api: httpx.AsyncClient, client: Client, settings: Settings) -> None:
    """Visibility is eventually consistent, so "count is 0" right after a refusal proves little. Start one valid
    execution and wait until the queue counts exactly it: had a refused request started anything, it would be
    counted by then too."""
    response = await api.post(CHANGE, json=webhook_body(change_number()))
    assert response.status_code == 202, response.text

    async def counted() -> int:
        return await count_on_queue(client, settings.task_queue)

    await wait_for(counted, timeout=10, message="the sentinel start is visible")
    assert await counted() == 1
