"""Look-ups before creates, as the integration user sees the instance.

A POST is not idempotent, so every create looks its natural key up first (docs/architecture.md, "ServiceNow facts").
Under ACLs that look-up sees only the rows the integration user may read: the instance applies `sysparm_limit`
before its read ACLs (markdown/api-reference/rest-apis/c_TableAPI.md, sysparm_limit), and a row it may not read is
simply absent. The client pages past hidden rows (servicenow/client.py `first`), so a readable match is always
found; a match the user may NOT read would still look like "no record", and creating then duplicates a record the
user cannot see (an incident moved to a restricted group, a CI of a class it may not read).

The instance tells the two apart: `X-Total-Count` is the query's count before ACLs (every row it matches, readable
or not). So when nothing readable matches, `find_first` asks for the count, and a count above zero means the key
is taken by a hidden record: it refuses to let the caller create (`HIDDEN_RECORD`, never retried: only an admin
granting read access changes the answer).
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from servicenow.client import ServiceNowClient
from servicenow.query import Query

HIDDEN_RECORD = "HiddenRecord"
JOURNAL_RECENT = 20  # journal entries read back when a retried note looks for itself


def hidden_record(table: str, query: Query) -> ApplicationError:
    return ApplicationError(
        f"a {table} record matching {query.encode()} exists but the integration user may not read it "
        "(ACL): not creating another. Grant the integration user read access to it, or resolve it by hand.",
        type=HIDDEN_RECORD,
        non_retryable=True,
    )


async def find_first(
    sn: ServiceNowClient, table: str, query: Query, *, fields: list[str], **options: Any
) -> dict[str, Any] | None:
    """The first readable record matching `query`; None when the query matches no record at all. Raises
    `HIDDEN_RECORD` (non-retryable) when it matches only records the integration user may not read."""
    found = await sn.first(table, query, fields=fields, **options)
    if found is None and await sn.count(table, query) > 0:
        raise hidden_record(table, query)
    return found


async def journal_has(sn: ServiceNowClient, sys_id: str, element: str, text: str) -> bool:
    """Whether `text` is already among the record's latest `element` journal entries (work_notes, comments), for a
    note retried after its answer was lost. A matching entry the user may not read counts as there: the instance
    counts entries of the same first line that the user cannot see, and writing again would duplicate one."""
    base = Query().eq("element_id", sys_id).eq("element", element)
    recent = await sn.list(
        "sys_journal_field",
        base.order_by_desc("sys_created_on"),
        fields=["value"],
        limit=JOURNAL_RECENT,
        page_size=JOURNAL_RECENT,
    )
    if any(_same(entry, text) for entry in recent):
        return True
    first_line = text.strip().splitlines()[0].strip() if text.strip() else ""
    try:
        alike = base.startswith("value", first_line) if first_line else None
    except ValueError:
        alike = None  # a first line no query can carry ('^'): a hidden twin cannot be told apart
    if alike is None:
        return False
    readable = await sn.list("sys_journal_field", alike, fields=["value"], page_size=JOURNAL_RECENT)
    return await sn.count("sys_journal_field", alike) > len(readable)


def _same(entry: dict[str, Any], text: str) -> bool:
    return str(entry.get("value", "")).strip() == text.strip()
