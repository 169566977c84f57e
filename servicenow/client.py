"""Async ServiceNow Table API client.

Retries inside the client are deliberately narrow, because Temporal retries activities and a POST is not
idempotent:
- 429 is retried for every method (the instance did nothing), after `Retry-After`, while that wait stays under
  `max_retry_after`; otherwise `RateLimited` is raised so the caller can schedule the retry itself;
- 5xx and transport errors are retried only for GET; a write that may have been applied is left to the caller,
  who looks the record up by its natural key before writing again;
- 401 re-authenticates once, then raises `NotAuthenticated`.

With a request budget (servicenow/budget.py, CHANGELOOP_SERVICENOW_BUDGET) every request, retries included, waits
for its token at the priority of the work it serves, and a 429 pauses the whole budget until Retry-After; a pause
longer than `max_retry_after` raises `RateLimited` at once, without a request, for the caller to schedule.

Paging follows the instance's contract (c_TableAPI.md): `sysparm_limit` cuts a page BEFORE the read ACLs run, so a
page can come back short or even empty while more rows follow. A listing therefore advances `sysparm_offset` by the
limit it asked for (never by the rows it received), continues while the answer's `Link` header has `rel="next"`
(`X-Total-Count` decides only when there is no Link header), and never stops on a short or empty page.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

import httpx

from servicenow.auth import Auth, BasicAuth, OAuth
from servicenow.budget import RequestBudget, current_spender
from servicenow.errors import (
    NotAuthenticated,
    RateLimited,
    ServiceNowError,
    TransportError,
    error_from_response,
)
from servicenow.query import Query

DisplayValue = Literal["true", "false", "all"] | bool

DEFAULT_PAGE_SIZE = 1000
# first(): the look-up page grows 1, 2, 4 … up to this many rows while the rows it meets are hidden by ACLs.
FIRST_MAX_PAGE = 64

_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.IGNORECASE)


class MissingHeader(ServiceNowError):
    """The answer lacks a header the call depends on (a proxy dropped it, or the instance was told to omit it).
    Not retryable: the same request gets the same answer."""


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]  # the rows the caller may read: fewer than asked (even none) when ACLs hide some
    offset: int  # the sysparm_offset this page was asked at
    total: int | None  # X-Total-Count: every row the query matches, hidden ones included
    has_next: bool  # the instance says more rows follow (Link rel="next"), and the caller's limit is not reached


@dataclass(frozen=True)
class _ListAnswer:
    """One list request's rows and the headers that say whether rows follow."""

    records: list[dict[str, Any]]
    offset: int
    size: int
    total: int | None
    link: str | None

    def next_offset(self) -> int | None:
        """Where the next page starts, or None when the instance says no rows follow."""
        if self.link is not None:
            match = _NEXT_LINK.search(self.link)
            if match is None:
                return None
            # The instance's next link carries offset + limit; take its word, but never go backwards.
            linked = _offset_of(match.group(1))
            return linked if linked is not None and linked > self.offset else self.offset + self.size
        if self.total is not None:
            return self.offset + self.size if self.offset + self.size < self.total else None
        raise MissingHeader(
            "List answer without Link or X-Total-Count",
            "cannot tell whether more rows follow: a short page is no proof of the end when ACLs hide rows",
        )


def _resource(path: str) -> str:
    """What a request spends on: the table of a Table API path, else the API (`attachment`, `sn_chg_rest`)."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "now", "table"] and len(parts) > 3:
        return parts[3]
    return parts[2] if parts[:2] == ["api", "now"] and len(parts) > 2 else (parts[1] if len(parts) > 1 else path)


def _offset_of(url: str) -> int | None:
    values = parse_qs(urlparse(url).query).get("sysparm_offset")
    return int(values[0]) if values and values[0].isdigit() else None


def _display(value: DisplayValue | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class ServiceNowClient:
    def __init__(
        self,
        base_url: str,
        auth: Auth,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_after: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.budget = budget
        self.calls: dict[str, int] = {}  # status class -> count; cheap numbers for metrics and benchmarks
        # (spender label, method, resource) -> requests sent: who spent the instance's rate limit on what
        self.spent: Counter[tuple[str, str, str]] = Counter()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ServiceNowClient:
        """Build from `settings.Settings`: OAuth when a client id is configured, basic auth otherwise."""
        password = settings.servicenow_password.get_secret_value() if settings.servicenow_password else None
        auth: Auth
        if settings.servicenow_client_id:
            secret = settings.servicenow_client_secret.get_secret_value() if settings.servicenow_client_secret else ""
            auth = OAuth(
                settings.servicenow_client_id,
                secret,
                username=settings.servicenow_username,
                password=password,
            )
        elif settings.servicenow_username and password is not None:
            auth = BasicAuth(settings.servicenow_username, password)
        else:
            raise ValueError(
                "ServiceNow credentials missing: set CHANGELOOP_SERVICENOW_USERNAME and _PASSWORD "
                "(and _CLIENT_ID/_CLIENT_SECRET for OAuth)"
            )
        rate = getattr(settings, "servicenow_budget", None)
        if rate and "budget" not in kwargs:
            kwargs["budget"] = RequestBudget(rate, getattr(settings, "servicenow_budget_burst", None))
        return cls(settings.servicenow_url, auth, **kwargs)

    async def __aenter__(self) -> ServiceNowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def record_link(self, table: str, sys_id: str) -> str:
        return f"{self.base_url}/nav_to.do?uri={table}.do?sys_id={sys_id}"

    # -- transport --------------------------------------------------------------------------------------------------
    def _count(self, key: str) -> None:
        self.calls[key] = self.calls.get(key, 0) + 1

    async def _spend(self, method: str, path: str) -> None:
        """Count the request for whoever spends it, and wait for its token when a budget is set."""
        spender = current_spender()
        if self.budget is not None:
            paused = self.budget.paused_for()
            if paused > self.max_retry_after:
                raise RateLimited(
                    "ServiceNow rate limit: the request budget is paused",
                    f"the instance answered 429; no request before {paused:.0f} s have passed",
                    retry_after=paused,
                )
            await self.budget.acquire(spender.priority)
        self.spent[(spender.label, method, _resource(path))] += 1

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call with the retry rules above. `content` + `headers` send a raw body (the Attachment API's upload
        carries the file itself, typed by its Content-Type) instead of `json`."""
        reauthenticated = False
        attempt = 0
        while True:
            attempt += 1
            await self._spend(method, path)
            sent = {**(headers or {}), "Authorization": await self.auth.authorization(self._http)}
            try:
                response = await self._http.request(
                    method, path, params=params, json=json, content=content, headers=sent
                )
            except httpx.TransportError as exc:
                self._count("transport_error")
                error: ServiceNowError = TransportError(
                    f"{method} {path} got no answer", f"{type(exc).__name__}: {exc}"
                )
                if method == "GET" and attempt <= self.max_retries:
                    await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
                    continue
                raise error from exc
            self._count(f"{response.status_code // 100}xx")
            if response.status_code < 300:
                return response
            error = error_from_response(response)
            if isinstance(error, NotAuthenticated) and not reauthenticated:
                reauthenticated = True
                self.auth.invalidate()
                continue
            if isinstance(error, RateLimited) and self.budget is not None:
                self.budget.pause(error.retry_after)  # the instance refuses the user: nobody sends until then
            if attempt <= self.max_retries:
                if isinstance(error, RateLimited):
                    # Never retry a 429 sooner than Retry-After; a long wait is the caller's to schedule.
                    if error.retry_after <= self.max_retry_after:
                        if self.budget is None:  # with a budget, the retry's token waits out the pause
                            await asyncio.sleep(error.retry_after)
                        continue
                elif method == "GET" and error.retryable:
                    await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
                    continue
            raise error

    @staticmethod
    def _params(
        *,
        query: Query | None = None,
        fields: list[str] | None = None,
        display_value: DisplayValue | None = None,
        exclude_reference_link: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, str]:
        params: dict[str, str] = {}
        if query is not None and query.encode():
            params["sysparm_query"] = query.encode()
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        if (dv := _display(display_value)) is not None:
            params["sysparm_display_value"] = dv
        if exclude_reference_link is not None:
            params["sysparm_exclude_reference_link"] = "true" if exclude_reference_link else "false"
        if limit is not None:
            params["sysparm_limit"] = str(limit)
        if offset is not None:
            params["sysparm_offset"] = str(offset)
        return params

    # -- Table API ---------------------------------------------------------------------------------------------------
    async def get(
        self,
        table: str,
        sys_id: str,
        *,
        fields: list[str] | None = None,
        display_value: DisplayValue | None = None,
        exclude_reference_link: bool | None = None,
    ) -> dict[str, Any]:
        params = self._params(fields=fields, display_value=display_value, exclude_reference_link=exclude_reference_link)
        response = await self.request("GET", f"/api/now/table/{table}/{sys_id}", params=params)
        return response.json()["result"]

    async def _list_page(
        self,
        table: str,
        query: Query,
        *,
        offset: int,
        size: int,
        fields: builtins.list[str] | None = None,
        display_value: DisplayValue | None = None,
        exclude_reference_link: bool | None = None,
    ) -> _ListAnswer:
        params = self._params(
            query=query,
            fields=fields,
            display_value=display_value,
            exclude_reference_link=exclude_reference_link,
            limit=size,
            offset=offset,
        )
        response = await self.request("GET", f"/api/now/table/{table}", params=params)
        total_header = response.headers.get("X-Total-Count")
        return _ListAnswer(
            records=response.json()["result"],
            offset=offset,
            size=size,
            total=int(total_header) if total_header and total_header.isdigit() else None,
            link=response.headers.get("Link"),
        )

    @staticmethod
    def _stable(query: Query | None) -> Query:
        """Without an ORDERBY the query is ordered by sys_id: offset paging over an unordered result lets rows shift
        between pages."""
        query = query or Query()
        return query if query.ordered else query.order_by("sys_id")

    async def iter_pages(
        self,
        table: str,
        query: Query | None = None,
        *,
        fields: builtins.list[str] | None = None,
        display_value: DisplayValue | None = None,
        exclude_reference_link: bool | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        limit: int | None = None,
        read_ahead: int = 0,
    ) -> AsyncIterator[Page]:
        """Every page of a query, lazily; `limit` caps the rows returned (rows the caller may read).

        Each page is asked at the previous page's offset plus the limit asked, and paging goes on while the instance
        says rows follow (Link rel="next"; X-Total-Count when there is no Link header), whatever the page held.
        Raises `MissingHeader` if an answer has neither header (nothing tells where the rows end).

        `read_ahead` (bulk reads, no `limit`): the rows are counted first (one request), then up to that many pages
        are asked at once, and the next while the caller reads; pages still come in order. A big page costs an
        instance seconds (its time grows with the rows it renders), and the pages of a full pull are independent."""
        query = self._stable(query)
        if read_ahead > 0 and limit is None:
            fetch = functools.partial(
                self._list_page,
                table,
                query,
                size=page_size,
                fields=fields,
                display_value=display_value,
                exclude_reference_link=exclude_reference_link,
            )
            count = functools.partial(self.count, table, query)
            async for page in self._pages_ahead(fetch, count, page_size, read_ahead):
                yield page
            return
        offset, seen = 0, 0
        while True:
            size = page_size if limit is None else min(page_size, limit - seen)
            if size <= 0:
                return
            answer = await self._list_page(
                table,
                query,
                offset=offset,
                size=size,
                fields=fields,
                display_value=display_value,
                exclude_reference_link=exclude_reference_link,
            )
            seen += len(answer.records)
            next_offset = None if limit is not None and seen >= limit else answer.next_offset()
            yield Page(answer.records, offset, answer.total, next_offset is not None)
            if next_offset is None:
                return
            offset = next_offset

    async def _pages_ahead(
        self, fetch: Callable[..., Awaitable[_ListAnswer]], count: Callable[[], Awaitable[int]], size: int, ahead: int
    ) -> AsyncIterator[Page]:
        """Pages in order, the next `ahead` offsets below the count asked before they are needed. The count comes
        first (one cheap request) so the first pages go out together; the instance's own answers still decide
        where each next page starts and whether one follows."""
        asked: dict[int, asyncio.Task[_ListAnswer]] = {}

        def plan(start: int, total: int) -> None:
            planned = start
            while len(asked) < ahead and planned < total:
                if planned not in asked:
                    asked[planned] = asyncio.ensure_future(fetch(offset=planned))
                planned += size

        offset: int | None = 0
        try:
            try:
                plan(0, max(1, await count()))
            except MissingHeader:
                pass  # no count: page by page, the Link header decides
            while offset is not None:
                task = asked.pop(offset, None) or asyncio.ensure_future(fetch(offset=offset))
                answer = await task
                offset = answer.next_offset()
                if offset is not None and answer.total is not None:
                    plan(offset, answer.total)
                yield Page(answer.records, answer.offset, answer.total, offset is not None)
        finally:
            # The caller stopped, a page failed, or the rows ended sooner than counted: nothing asked outlives it.
            for task in asked.values():
                task.cancel()
            await asyncio.gather(*asked.values(), return_exceptions=True)

    async def iter_records(
        self,
        table: str,
        query: Query | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        async for page in self.iter_pages(table, query, **kwargs):
            for record in page.records:
                yield record

    async def list(self, table: str, query: Query | None = None, **kwargs: Any) -> builtins.list[dict[str, Any]]:
        return [record async for record in self.iter_records(table, query, **kwargs)]

    async def first(
        self,
        table: str,
        query: Query,
        *,
        fields: builtins.list[str] | None = None,
        display_value: DisplayValue | None = None,
        exclude_reference_link: bool | None = None,
    ) -> dict[str, Any] | None:
        """The first record matching `query` that the caller may read (natural-key look-ups before a create), or None.

        One request for one row when nothing is hidden; when the instance's ACLs hide the rows met, the page grows
        (1, 2, 4 … FIRST_MAX_PAGE rows) and the look-up goes on while the instance says rows follow."""
        query = self._stable(query)
        offset, size = 0, 1
        while True:
            answer = await self._list_page(
                table,
                query,
                offset=offset,
                size=size,
                fields=fields,
                display_value=display_value,
                exclude_reference_link=exclude_reference_link,
            )
            if answer.records:
                return answer.records[0]
            next_offset = answer.next_offset()
            if next_offset is None:
                return None
            offset, size = next_offset, min(size * 2, FIRST_MAX_PAGE)

    async def count(self, table: str, query: Query | None = None) -> int:
        """How many rows the query matches: the instance's X-Total-Count (its `select count(*)`), which includes rows
        the caller's ACLs hide. Raises `MissingHeader` when the answer has no X-Total-Count (never a silent 0)."""
        params = self._params(query=query, fields=["sys_id"], limit=1)
        response = await self.request("GET", f"/api/now/table/{table}", params=params)
        header = response.headers.get("X-Total-Count")
        if header is None or not header.strip().isdigit():
            raise MissingHeader(
                "List answer without X-Total-Count",
                f"cannot count {table}: the instance (or a proxy) left the X-Total-Count header out",
            )
        return int(header)

    async def create(
        self, table: str, data: Mapping[str, Any], *, fields: builtins.list[str] | None = None
    ) -> dict[str, Any]:
        params = self._params(fields=fields, exclude_reference_link=True)
        response = await self.request("POST", f"/api/now/table/{table}", params=params, json=dict(data))
        return response.json()["result"]

    async def update(
        self, table: str, sys_id: str, data: Mapping[str, Any], *, fields: builtins.list[str] | None = None
    ) -> dict[str, Any]:
        params = self._params(fields=fields, exclude_reference_link=True)
        response = await self.request("PATCH", f"/api/now/table/{table}/{sys_id}", params=params, json=dict(data))
        return response.json()["result"]

    async def delete(self, table: str, sys_id: str) -> None:
        await self.request("DELETE", f"/api/now/table/{table}/{sys_id}")


__all__ = ["BasicAuth", "MissingHeader", "OAuth", "Page", "ServiceNowClient", "ServiceNowError"]
