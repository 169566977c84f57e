"""Scans where the source is: a source bound to a site is scanned by that site's worker, inside its network.

The site worker (`changeloop worker --site`) reads the source from its own config (CHANGELOOP_RECONCILE, the run's
config name; the source's definition must be the one the run resolved) with its own secrets
(CHANGELOOP_SECRET_NAMES), and needs no ServiceNow credentials. Its records reach the pipeline's worker through
history (activities/reconcile/transfer.py): the first chunk in the scan's result, the others fetched from this
worker's own queue - the same worker-specific queue pattern as the pipeline's - and dropped once fetched.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.reconcile import inventory, transfer
from activities.reconcile.configs import worker_config, worker_source
from activities.reconcile.store import RunStore, prune, run_key
from config.secrets import NamedSecrets
from config.settings import Settings
from workflows import calls
from workflows.reconcile.models import ChunkRequest, ConfigRef, RecordChunk, ScanReport, ScanRequest, SiteScan


class SiteScanActivities:
    def __init__(self, settings: Settings, secrets: NamedSecrets, own_queue: str) -> None:
        self.settings = settings
        self.secrets = secrets
        self.own_queue = own_queue  # only this worker polls it: where the workflow fetches the other chunks

    def _store(self, source: str) -> RunStore:
        info = activity.info()
        key = run_key(info.workflow_id or "", info.workflow_run_id or "", source)
        return RunStore(self.settings.reconcile_state_dir, key)

    @activity.defn(name=calls.SCAN_AT_SITE.name)
    async def scan_at_site(self, request: ScanRequest) -> SiteScan:
        # The site's config may differ from the central one (its own sources, no one else's): the source's digest,
        # not the whole config's, says whether it is the source the run resolved.
        ref = ConfigRef(name=request.config.name)
        config = worker_config(self.settings, self.secrets, ref)
        source = worker_source(self.settings, config, ref, request.source, request.source_digest)
        records = await inventory.scan_in_activity(source, self.secrets)
        try:
            chunks = await asyncio.to_thread(transfer.pack, source.name, records, max_bytes=request.max_bytes)
        except transfer.TooLarge as exc:
            raise ApplicationError(str(exc), type="SourceTooLarge", non_retryable=True) from None
        if len(chunks) > 1:
            await asyncio.to_thread(prune, self.settings.reconcile_state_dir)
            await asyncio.to_thread(self._store(source.name).save_packed, chunks[1:])
        report = ScanReport(
            source=source.name,
            kind=source.kind,
            ok=True,
            records=len(records),
            site=self.settings.site or "",
            chunks=len(chunks),
        )
        return SiteScan(report=report, first=chunks[0], task_queue=self.own_queue if len(chunks) > 1 else "")

    @activity.defn(name=calls.FETCH_SCAN_CHUNK.name)
    async def fetch_scan_chunk(self, request: ChunkRequest) -> RecordChunk:
        return await asyncio.to_thread(self._store(request.source).packed, request.index)

    @activity.defn(name=calls.DROP_SITE_SCAN.name)
    async def drop_site_scan(self, source: str) -> None:
        await asyncio.to_thread(self._store(source).remove)
