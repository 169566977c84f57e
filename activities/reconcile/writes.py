"""One delta batch written to ServiceNow: new CIs created for review, an incident per missing CI, attribute drift.

Exactly once per item, however often the batch runs (docs/architecture.md, "ServiceNow facts": POST is not
idempotent):
- every create looks its natural key up immediately before it writes (a CI by its key field, or by name and class;
  an incident by `correlation_id` among open incidents), so a batch retried after a lost answer or a failed sibling
  finds what an earlier attempt wrote instead of writing it again; a match the integration user may not read fails
  the item (activities/lookups.py), it is never created a second time;
- what an earlier attempt of this run wrote still counts as this run's work: a CI the diff found new (absent when
  the CMDB was pulled) that now carries this reconciliation's `discovery_source` was created by it, and an open
  incident whose description links this very run was opened by it. The summary then says "created 60" after a
  retry, not "created 29, 31 already in the CMDB";
- an item that fails with an error a retry can fix (5xx, a timeout, a 429) is tried again in place, a few times
  (ITEM_TRIES, backing off; a 429 waits its Retry-After): its look-up makes every try safe, so one flaky call does
  not fail a whole batch. When an item has used its tries, the batch fails: writes run at most `concurrency` at once,
  and the others are cancelled and awaited before the batch fails (`run_bounded`), so no write of a failed attempt is
  still running when Temporal's retry looks its keys up. A request the instance refuses for good (400/403/404) fails
  that one item only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import servicenow_errors
from activities.incident.triage import Router
from activities.lookups import find_first, journal_has
from config.reconcile import DriftMode, ReconcileConfig
from servicenow.client import ServiceNowClient
from servicenow.cmdb import ConfigurationItem
from servicenow.incident import IncidentState
from servicenow.query import Query
from workflows.reconcile.models import BatchOutcome, Created, DeltaBatch, DriftedCi, MissingCi, NewCi, Opened

LOOKUP_CHUNK = 100  # values per IN clause: keeps the request URL far below instance limits
CLOSED_INCIDENT = [IncidentState.RESOLVED.value, IncidentState.CLOSED.value, IncidentState.CANCELED.value]
CI_FIELDS = ["sys_id", "name", "sys_class_name", "discovery_source"]
ITEM_TRIES = 3  # tries of one item within one attempt of the batch
ITEM_BACKOFF = 0.5  # seconds before an item's second try, doubled for each further one
INCIDENT_FIELDS = ["sys_id", "number", "correlation_id", "description", "assignment_group"]

Job = Callable[[], Awaitable[None]]
Write = Callable[[bool], Awaitable[None]]  # one item's write; True when an earlier try may have written it


async def run_bounded(jobs: Sequence[Job], limit: int) -> None:
    """Run `jobs`, at most `limit` at once. The first exception cancels every job still running or waiting, waits
    until they have all ended, and is raised then: nothing a failed call started outlives it."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Job) -> None:
        async with gate:
            await job()

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(one(job))
    except BaseExceptionGroup as failed:
        raise _first(failed) from None


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error = group.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error


def _usable(values: list[str]) -> list[str]:
    """Values that can stand in an IN list (a ',' would split one; '^' and newlines are refused by Query)."""
    return sorted({v for v in values if v and "," not in v and "^" not in v and "\n" not in v})


class BatchWriter:
    """Writes one batch for one attempt of `reconcile_apply_batch`; `run_url` is the run's execution link."""

    def __init__(self, sn: ServiceNowClient, config: ReconcileConfig, run_url: str) -> None:
        self.sn = sn
        self.config = config
        self.run_url = run_url
        self.router = Router(sn, config.routing)
        self.outcome = BatchOutcome()
        self._cis: dict[tuple[str, str], dict[str, Any]] = {}  # (key field, key) -> CI found at batch start
        self._incidents: dict[str, dict[str, Any]] = {}  # correlation_id -> open incident found at batch start

    async def apply(self, batch: DeltaBatch) -> BatchOutcome:
        async with servicenow_errors():
            await self._prefetch(batch)
        writes: list[tuple[str, Write]] = [(i.record.name, partial(self._create, i)) for i in batch.new]
        writes += [(i.name, partial(self._open_incident, i)) for i in batch.missing]
        writes += [(i.name, partial(self._write_drift, i)) for i in batch.drifted]
        await run_bounded([self._item(name, write) for name, write in writes], self.config.concurrency)
        return self.outcome

    def _item(self, name: str, write: Write) -> Job:
        async def run() -> None:
            for tried in range(1, ITEM_TRIES + 1):
                try:
                    async with servicenow_errors():
                        await write(tried > 1 or self._retried_batch())
                    break
                except ApplicationError as exc:
                    if exc.non_retryable:
                        self.outcome.failed.append(f"{name}: {exc}")
                        break
                    if tried == ITEM_TRIES:
                        raise  # the batch fails and Temporal retries it; the look-ups make that safe
                    wait = exc.next_retry_delay.total_seconds() if exc.next_retry_delay else 0.0
                    await asyncio.sleep(max(wait, ITEM_BACKOFF * 2 ** (tried - 1)))
            activity.heartbeat()

        return run

    @staticmethod
    def _retried_batch() -> bool:
        return activity.in_activity() and activity.info().attempt > 1

    # -- look-ups --------------------------------------------------------------------------------------------------
    async def _prefetch(self, batch: DeltaBatch) -> None:
        """What the batch's keys already name, in one query per IN chunk instead of one per item (a real instance
        rate-limits the integration user). An item not found here is looked up again right before its write."""
        by_field: dict[str, list[str]] = {}
        for item in batch.new:
            if item.record.key:
                by_field.setdefault(item.key_field, []).append(item.record.key)
        for key_field, keys in by_field.items():
            for ci in await self._records("cmdb_ci", key_field, keys, [*CI_FIELDS, key_field]):
                self._cis.setdefault((key_field, str(ci.get(key_field, ""))), ci)
        correlations = [self._correlation(m) for m in batch.missing]
        for incident in await self._records(
            "incident", "correlation_id", correlations, INCIDENT_FIELDS, open_only=True
        ):
            self._incidents.setdefault(str(incident.get("correlation_id", "")), incident)
        await self.router.prefetch([m.sys_id for m in batch.missing if not m.busines_criticality])

    async def _records(
        self, table: str, field: str, values: list[str], fields: list[str], *, open_only: bool = False
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        usable = _usable(values)
        for start in range(0, len(usable), LOOKUP_CHUNK):
            query = Query().in_(field, usable[start : start + LOOKUP_CHUNK])
            if open_only:
                query = query.not_in("state", CLOSED_INCIDENT)
            found += await self.sn.list(table, query, fields=fields, exclude_reference_link=True)
        return found

    async def _find_ci(self, item: NewCi) -> dict[str, Any] | None:
        record = item.record
        if not record.key:
            query = Query().eq("name", record.name).eq("sys_class_name", record.ci_class)
            return await find_first(self.sn, "cmdb_ci", query, fields=CI_FIELDS)
        found = await find_first(
            self.sn, "cmdb_ci", Query().eq(item.key_field, record.key), fields=[*CI_FIELDS, item.key_field]
        )
        # An instance ignores a clause on a field it lacks and answers any row: trust only a row that carries the key.
        return found if found is not None and str(found.get(item.key_field, "")) == record.key else None

    async def _find_open_incident(self, correlation: str) -> dict[str, Any] | None:
        query = Query().eq("correlation_id", correlation).not_in("state", CLOSED_INCIDENT).order_by("sys_created_on")
        return await find_first(self.sn, "incident", query, fields=INCIDENT_FIELDS, exclude_reference_link=True)

    async def _noted(self, item: DriftedCi, note: str) -> bool:
        """Whether an earlier try appended this note already: a journal field (work_notes) appends on every write,
        so writing it again would show the note twice."""
        return await journal_has(self.sn, item.sys_id, self.config.note_field, note)

    # -- the writes ------------------------------------------------------------------------------------------------
    def _discovery_source(self, item: NewCi) -> str:
        return f"{self.config.discovery_source}:{item.record.source}"

    async def _create(self, item: NewCi, again: bool = False) -> None:
        record = item.record
        found = self._cis.get((item.key_field, record.key)) if record.key else None
        found = found or await self._find_ci(item)
        if found is not None:
            if str(found.get("discovery_source", "")) == self._discovery_source(item):
                # New at the pull, there now with our mark: an earlier attempt of this batch wrote it.
                self._created(item, str(found["sys_id"]))
            else:
                self.outcome.already_in_cmdb += 1
            return
        config = self.config
        body = {
            "name": record.name,
            "ip_address": record.ip,
            "os": record.os,
            item.key_field: record.key,
            "install_status": "1",
            "discovery_source": self._discovery_source(item),
            config.review_field: config.review_value,
        }
        body |= {k: v for k, v in record.attributes.items() if k in config.copy_attributes and k not in body}
        created = await self.sn.create(record.ci_class, {k: v for k, v in body.items() if v}, fields=["sys_id"])
        self._created(item, str(created["sys_id"]))

    def _created(self, item: NewCi, sys_id: str) -> None:
        record = item.record
        self.outcome.created.append(
            Created(name=record.name, sys_id=sys_id, source=record.source, ci_class=record.ci_class)
        )

    @staticmethod
    def _correlation(item: MissingCi) -> str:
        return f"drift-{item.sys_id}"

    async def _open_incident(self, item: MissingCi, again: bool = False) -> None:
        correlation = self._correlation(item)
        found = self._incidents.get(correlation) or await self._find_open_incident(correlation)
        if found is not None:
            if self.run_url in str(found.get("description", "")):
                # Its description links this run: an earlier attempt of this batch opened it.
                self._opened(item, str(found.get("number", "")), str(found.get("assignment_group", "")))
            else:
                self.outcome.incidents_already_open += 1
            return
        routing = await self.router.route(
            ConfigurationItem(
                sys_id=item.sys_id,
                name=item.name,
                busines_criticality=item.busines_criticality,
                support_group=item.support_group,
                managed_by_group=item.managed_by_group,
            )
        )
        body = {
            "short_description": f"CMDB drift: {item.name} ({item.ci_class}) not found in live infrastructure",
            "description": (
                f"The CMDB declares {item.name} ({item.ci_class}, sys_id {item.sys_id}) but none of the sources that "
                f"cover its class saw it: {', '.join(item.sources)}.\nEither the host is gone (retire the CI) or it "
                f"is unreachable (investigate).\nReconciliation run: {self.run_url}"
            ),
            "cmdb_ci": item.sys_id,
            "impact": routing.impact,
            "urgency": routing.urgency,
            "assignment_group": routing.assignment_group,
            "correlation_id": correlation,
            "correlation_display": "changeloop",
        }
        created = await self.sn.create("incident", body, fields=["number"])
        self._opened(item, str(created["number"]), routing.assignment_group)

    def _opened(self, item: MissingCi, number: str, group: str) -> None:
        self.outcome.incidents.append(
            Opened(number=number, ci=item.name, source=item.sources[0], ci_class=item.ci_class, assignment_group=group)
        )

    async def _write_drift(self, item: DriftedCi, again: bool = False) -> None:
        config = self.config
        if config.drift == DriftMode.UPDATE:
            body = {ci_field: live for ci_field, (_, live) in item.changes.items()}
        else:
            lines = [f"{f}: CMDB {old!r}, {item.source} sees {new!r}" for f, (old, new) in item.changes.items()]
            note = "changeloop reconciliation found attribute drift:\n" + "\n".join(lines)
            if again and await self._noted(item, note):
                self.outcome.drift_written += 1
                return
            body = {config.note_field: note}
        # A field update is idempotent: a retried batch writes the same values again.
        await self.sn.update(item.ci_class, item.sys_id, body, fields=["sys_id"])
        self.outcome.drift_written += 1
