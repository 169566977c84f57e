"""The custom search attributes (docs/architecture.md, "Contract") (pre-registered by `changeloop dev` and the test harness)."""

from collections.abc import Sequence

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

CHANGE_NUMBER = SearchAttributeKey.for_keyword("ChangeNumber")
CMDB_CI = SearchAttributeKey.for_keyword_list("CmdbCi")
RUNBOOK = SearchAttributeKey.for_keyword("Runbook")
TICKET_STATE = SearchAttributeKey.for_keyword("TicketState")

ALL = [CHANGE_NUMBER, CMDB_CI, RUNBOOK, TICKET_STATE]


def of_change(number: str, ci_names: Sequence[str] = ()) -> TypedSearchAttributes | None:
    """ChangeNumber (and CmdbCi when known) for a workflow a change starts, so `ChangeNumber = '<number>'` finds
    every workflow of the change. Given when the parent *starts* the child: part of the start command the history
    already has, so old histories replay unchanged (an upsert inside the child would be a new command)."""
    if not number:
        return None
    pairs: list[SearchAttributePair] = [SearchAttributePair(CHANGE_NUMBER, number)]
    names = [name for name in ci_names if name]
    if names:
        pairs.append(SearchAttributePair(CMDB_CI, names))
    return TypedSearchAttributes(pairs)
