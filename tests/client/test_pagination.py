"""Listing pages through every matching record exactly once, with the instance's total."""

from __future__ import annotations

from servicenow.client import ServiceNowClient
from servicenow.query import Query


async def test_listing_pages_through_three_pages_with_the_total_and_every_record_once(
    sn_client: ServiceNowClient, make_incidents, scope_id
):
    created = await make_incidents(25)
    query = Query().eq("correlation_id", scope_id)

    pages = [page async for page in sn_client.iter_pages("incident", query, page_size=10)]

    assert [len(page.records) for page in pages] == [10, 10, 5]
    assert [page.offset for page in pages] == [0, 10, 20]
    assert [page.total for page in pages] == [25, 25, 25]  # X-Total-Count on every page
    assert [page.has_next for page in pages] == [True, True, False]
    seen = [record["sys_id"] for page in pages for record in page.records]
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == {record["sys_id"] for record in created}


async def test_paging_without_an_order_uses_sys_id_so_the_order_is_stable(
    sn_client: ServiceNowClient, make_incidents, scope_id
):
    await make_incidents(12)
    query = Query().eq("correlation_id", scope_id)

    first = [r["sys_id"] for r in await sn_client.list("incident", query, page_size=5)]
    second = [r["sys_id"] for r in await sn_client.list("incident", query, page_size=4)]

    assert first == second == sorted(first)


async def test_paging_honours_the_callers_order(sn_client: ServiceNowClient, make_incidents, scope_id):
    await make_incidents(12)
    query = Query().eq("correlation_id", scope_id).order_by_desc("short_description")

    records = await sn_client.list("incident", query, page_size=5)

    descriptions = [r["short_description"] for r in records]
    assert descriptions == [f"{scope_id} #{i:02d}" for i in reversed(range(12))]


async def test_limit_stops_listing_early_without_fetching_more_pages(
    sn_client: ServiceNowClient, make_incidents, scope_id, sandbox_control
):
    await make_incidents(25)
    before = await sandbox_control.requests_to("GET", "incident")

    records = await sn_client.list("incident", Query().eq("correlation_id", scope_id), page_size=10, limit=15)

    assert len(records) == 15
    assert await sandbox_control.requests_to("GET", "incident") - before == 2  # 10 + 5, no third page


async def test_fields_limits_what_each_listed_record_carries(sn_client: ServiceNowClient, make_incidents, scope_id):
    await make_incidents(3)

    records = await sn_client.list("incident", Query().eq("correlation_id", scope_id), fields=["sys_id", "number"])

    assert len(records) == 3
    assert all(set(record) == {"sys_id", "number"} for record in records)
    assert all(record["number"].startswith("INC") for record in records)


async def test_count_answers_the_total_and_first_the_first_match(sn_client: ServiceNowClient, make_incidents, scope_id):
    await make_incidents(7)
    query = Query().eq("correlation_id", scope_id)

    assert await sn_client.count("incident", query) == 7
    first = await sn_client.first("incident", query.order_by("short_description"))
    assert first is not None
    assert first["short_description"] == f"{scope_id} #00"
    assert await sn_client.first("incident", Query().eq("correlation_id", f"{scope_id}-nothing")) is None
    assert await sn_client.count("incident", Query().eq("correlation_id", f"{scope_id}-nothing")) == 0


async def test_reading_ahead_asks_the_next_pages_at_once_and_yields_the_same_pages_in_order(
    sn_client: ServiceNowClient, make_incidents, scope_id
):
    await make_incidents(23)
    query = Query().eq("correlation_id", scope_id)
    one_by_one = [page async for page in sn_client.iter_pages("incident", query, page_size=5)]
    asked_before = sn_client.spent[("", "GET", "incident")]

    ahead = [page async for page in sn_client.iter_pages("incident", query, page_size=5, read_ahead=3)]

    assert [(p.offset, p.has_next, [r["sys_id"] for r in p.records]) for p in ahead] == [
        (p.offset, p.has_next, [r["sys_id"] for r in p.records]) for p in one_by_one
    ]
    # The count, then five pages: nothing is asked past the rows the count announced.
    assert sn_client.spent[("", "GET", "incident")] - asked_before == 1 + 5


async def test_a_reader_that_stops_early_leaves_no_request_running(
    sn_client: ServiceNowClient, make_incidents, scope_id
):
    await make_incidents(30)
    query = Query().eq("correlation_id", scope_id)
    pages = sn_client.iter_pages("incident", query, page_size=5, read_ahead=2)

    first = await anext(pages)
    await pages.aclose()

    assert first.offset == 0 and first.has_next
    # The count, the page read, and at most two asked ahead of it (cancelled by aclose if still running).
    assert sn_client.spent[("", "GET", "incident")] <= 1 + 1 + 2
