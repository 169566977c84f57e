"""A user-registered workflow for the tests: it reports its failure itself, then fails, so the interceptor reports
the same failure a second time. One incident must come of it."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows import search_attributes as sa
    from workflows.incident.models import FailureReport
    from workflows.incident.reporting import open_incident


@workflow.defn(name="ReportTwiceWorkflow")
class ReportTwiceWorkflow:
    @workflow.run
    async def run(self, ci: str) -> None:
        workflow.upsert_search_attributes([sa.CMDB_CI.value_set([ci])])
        first = await open_incident(FailureReport(step="check disk", error_message="disk full", ci_names=[ci]))
        number = first.number if first else "none"
        raise ApplicationError(f"disk full on {ci} (reported as {number})", type="DiskFull", non_retryable=True)
