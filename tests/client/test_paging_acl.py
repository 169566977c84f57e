"""Paging under ACLs (issue 13 item 9): the instance cuts a page with sysparm_limit BEFORE its read ACLs run, so a
page can come back short or empty while more rows follow. The client must page by the limit it asked for, follow
`Link rel="next"` (X-Total-Count only when there is no Link) and never stop on a short page."""

from __future__ import annotations

import pytest

from servicenow.client import MissingHeader, ServiceNowClient
from servicenow.errors import ServiceNowError
from servicenow.query import Query


async def _by_sys_id(make_incidents, n: int) -> list[str]:
    """`n` incidents of the test, in the order the client pages them when no order is given (sys_id)."""
    return sorted(record["sys_id"] for record in await make_incidents(n))


async def test_a_hidden_block_of_rows_does_not_end_the_listing(
    sn_client: ServiceNowClient, make_incidents, scope_id, sandbox_acl
):
    rows = await _by_sys_id(make_incidents, 30)
    await sandbox_acl.hide("incident", rows[5:15])

    records = await sn_client.list("incident", Query().eq("correlation_id", scope_id), page_size=5)

    assert [r["sys_id"] for r in records] == rows[:5] + rows[15:]  # all 20 visible rows, once, in order


async def test_scattered_hidden_rows_neither_lose_nor_repeat_rows(
    sn_client: ServiceNowClient, make_incidents, scope_id, sandbox_acl
):
    rows = await _by_sys_id(make_incidents, 30)
    hidden = rows[1::3]
    await sandbox_acl.hide("incident", hidden)

    records = await sn_client.list("incident", Query().eq("correlation_id", scope_id), page_size=7)

    assert [r["sys_id"] for r in records] == [sys_id for sys_id in rows if sys_id not in hidden]


async def test_pages_advance_by_the_limit_asked_and_follow_the_next_link(
    sn_client: ServiceNowClient, make_incidents, scope_id, sandbox_acl, sandbox_control
):
    rows = await _by_sys_id(make_incidents, 30)
    await sandbox_acl.hide("incident", rows[5:15])
    before = await sandbox_control.requests_to("GET", "incident")

    pages = [
        page async for page in sn_client.iter_pages("incident", Query().eq("correlation_id", scope_id), page_size=5)
    ]

    assert [page.offset for page in pages] == [0, 5, 10, 15, 20, 25]
    assert [len(page.records) for page in pages] == [5, 0, 0, 5, 5, 5]
    assert [page.has_next for page in pages] == [True, True, True, True, True, False]
    assert [page.total for page in pages] == [30] * 6  # the query's count: hidden rows included
    assert await sandbox_control.requests_to("GET", "incident") - before == 6  # no page fetched twice, none after


async def test_a_limit_counts_visible_rows(sn_client: ServiceNowClient, make_incidents, scope_id, sandbox_acl):
    rows = await _by_sys_id(make_incidents, 30)
    await sandbox_acl.hide("incident", rows[5:15])

    records = await sn_client.list("incident", Query().eq("correlation_id", scope_id), page_size=5, limit=12)

    assert [r["sys_id"] for r in records] == rows[:5] + rows[15:22]


async def test_first_finds_the_first_visible_row_behind_hidden_ones(
    sn_client: ServiceNowClient, make_incidents, scope_id, sandbox_acl
):
    created = {r["short_description"]: r["sys_id"] for r in await make_incidents(30)}
    ordered = [created[f"{scope_id} #{i:02d}"] for i in range(30)]
    query = Query().eq("correlation_id", scope_id).order_by("short_description")

    await sandbox_acl.hide("incident", ordered[:1])
    first = await sn_client.first("incident", query)
    assert first is not None and first["short_description"] == f"{scope_id} #01"

    await sandbox_acl.hide("incident", ordered[:25])  # more hidden rows than one look-up page
    first = await sn_client.first("incident", query)
    assert first is not None and first["short_description"] == f"{scope_id} #25"

    await sandbox_acl.hide("incident", ordered)
    assert await sn_client.first("incident", query) is None


async def test_count_without_x_total_count_is_an_error_not_zero(
    sn_client: ServiceNowClient, make_incidents, scope_id, reset_faults
):
    await make_incidents(3)
    query = Query().eq("correlation_id", scope_id)
    assert await sn_client.count("incident", query) == 3

    await reset_faults.set_faults(strip_headers=["X-Total-Count"])
    with pytest.raises(MissingHeader, match="X-Total-Count") as raised:
        await sn_client.count("incident", query)
    assert isinstance(raised.value, ServiceNowError) and not raised.value.retryable


async def test_count_is_the_query_count_hidden_rows_included(
    sn_client: ServiceNowClient, make_incidents, scope_id, sandbox_acl
):
    rows = await _by_sys_id(make_incidents, 6)
    await sandbox_acl.hide("incident", rows[:2])
    assert await sn_client.count("incident", Query().eq("correlation_id", scope_id)) == 6


async def test_without_a_link_header_paging_falls_back_to_the_total(
    sn_client: ServiceNowClient, make_incidents, scope_id, sandbox_acl, reset_faults
):
    rows = await _by_sys_id(make_incidents, 30)
    await sandbox_acl.hide("incident", rows[5:15])
    await reset_faults.set_faults(strip_headers=["Link"])

    records = await sn_client.list("incident", Query().eq("correlation_id", scope_id), page_size=5)

    assert [r["sys_id"] for r in records] == rows[:5] + rows[15:]


async def test_without_link_nor_total_the_client_refuses_to_guess(
    sn_client: ServiceNowClient, make_incidents, scope_id, reset_faults
):
    await make_incidents(4)
    await reset_faults.set_faults(strip_headers=["Link", "X-Total-Count"])

    with pytest.raises(MissingHeader, match="Link"):
        await sn_client.list("incident", Query().eq("correlation_id", scope_id), page_size=2)
