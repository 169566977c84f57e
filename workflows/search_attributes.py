"""The custom search attributes (docs/architecture.md, "Contract") (pre-registered by `changeloop dev` and the test harness)."""

from temporalio.common import SearchAttributeKey

CHANGE_NUMBER = SearchAttributeKey.for_keyword("ChangeNumber")
CMDB_CI = SearchAttributeKey.for_keyword_list("CmdbCi")
RUNBOOK = SearchAttributeKey.for_keyword("Runbook")
TICKET_STATE = SearchAttributeKey.for_keyword("TicketState")

ALL = [CHANGE_NUMBER, CMDB_CI, RUNBOOK, TICKET_STATE]
