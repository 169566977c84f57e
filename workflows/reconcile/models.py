"""The reconciliation workflow's contract: its input and summary, and the small activity payloads.

A run names its configuration (config/reconcile.py): the worker reads it from its own CHANGELOOP_RECONCILE, answers
what the workflow needs (`ReconcilePlan`: source names, kinds, timeouts, the CMDB scope; never an argv, a URL or a
header) with the config's digest, and every later activity of the run reads the config again and refuses it when
the digest changed. Inventories and the CMDB pull never travel: only counts, references to a run's stored scan
and, batch by batch, the delta.

The stages that read and write a run's files (scan, pull, diff, batches) run on one worker, through that worker's
own task queue (`PipelineWorker`, Temporal's worker-specific task queue pattern), so no disk is shared. A source
bound to a site is scanned by that site's worker, whose records reach the pipeline's worker through history in
compressed chunks (`RecordChunk`), at most `site_transfer_bytes` of them per source.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from config.reconcile import (
    DEFAULT_NAME,
    DEFAULT_SITE_TRANSFER_BYTES,
    CmdbScope,
    ReconcileConfig,
    config_digest,
    source_digest,
)
from config.runbooks import Duration
from workflows.site.models import site_queue

RECONCILE_SCHEDULE = "changeloop-reconcile"
# Runs before configs travelled by reference carried the whole config in their input: their histories replay on the
# old path; a new execution with a config in its input is refused (runs nothing).
RECONCILE_BY_REFERENCE = "reconcile-by-reference"
RECONCILE_CONFIG_CHANGED = "ReconcileConfigChanged"
INLINE_CONFIG_REFUSED = "InlineConfigRefused"
# Runs before the pipeline held its files on one worker scheduled every stage on the shared queue (a shared state
# dir): their histories replay on that path.
PIPELINE_ON_ONE_WORKER = "reconcile-pipeline-on-one-worker"
RECONCILE_WORKER_LOST = "ReconcileWorkerLost"
PIPELINE_STARTS = 5  # a run whose pipeline loses its worker this often fails (and reports its incident)
CHUNK_BYTES = 192_000  # compressed records per chunk: base64 makes it 256 KB, far below Temporal's 2 MB payload limit


SAMPLE_LIMIT = 25  # names listed per category in a summary; the counts are always complete


def reconcile_workflow_id(date: str, *, dry_run: bool = False) -> str:
    """`reconcile-<date>` (docs/architecture.md, "Contract"); a dry run gets its own ID so it never blocks or hides a real run."""
    return f"reconcile-{date}" + ("-dry-run" if dry_run else "")


class InventoryRecord(BaseModel):
    """One live resource, the same shape whatever source saw it."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    ci_class: str = Field(alias="class")
    key: str
    ip: str = ""
    os: str = ""
    source: str
    attributes: dict[str, str] = {}


class ConfigRef(BaseModel):
    """A reconciliation config by reference: its name on the worker and, once resolved, its digest ('' = the config
    as the worker has it now: the schedule starts runs so, and the run pins what it resolved)."""

    name: str = DEFAULT_NAME
    digest: str = ""


class ReconcileInput(BaseModel):
    # The config's name. A dict is a whole config as versions before by-reference carried it: read for the replay
    # of their histories only; a new execution with one is refused and runs nothing.
    config: str | dict[str, Any] = DEFAULT_NAME
    digest: str = ""
    dry_run: bool = False

    @property
    def inline(self) -> bool:
        return isinstance(self.config, dict)

    @property
    def ref(self) -> ConfigRef:
        if isinstance(self.config, dict):
            return ConfigRef()  # an older run continuing on this worker goes on with the worker's own config
        return ConfigRef(name=self.config, digest=self.digest)


class SourcePlan(BaseModel):
    """What the workflow needs of one source: how to call its scan, never what the scan runs or reads."""

    name: str
    kind: str
    key_field: str
    timeout: Duration = timedelta(minutes=10)
    attempts: int = 3
    site: str = ""  # scanned by this site's worker ...
    task_queue: str = ""  # ... on this queue (`<task queue>-<site>`); empty: by the pipeline's worker
    digest: str = ""  # the source's definition (source_digest): what a site worker checks its own config against


class ReconcilePlan(BaseModel):
    config: ConfigRef
    sources: list[SourcePlan]
    cmdb: CmdbScope
    worker_lost_after: Duration = timedelta(minutes=1)
    site_transfer_bytes: int = DEFAULT_SITE_TRANSFER_BYTES

    @classmethod
    def of(cls, config: ReconcileConfig, ref: ConfigRef, task_queue: str = "") -> ReconcilePlan:
        """`task_queue`: the central queue, whose site queues (`<task queue>-<site>`) scan site-bound sources."""
        pinned = ConfigRef(name=ref.name, digest=config_digest(config))
        sources = [
            SourcePlan(
                name=s.name,
                kind=s.kind,
                key_field=s.key_field,
                timeout=s.timeout,
                attempts=s.attempts,
                site=s.site or "",
                task_queue=site_queue(task_queue, s.site) if s.site and task_queue else "",
                digest=source_digest(s),
            )
            for s in config.sources
        ]
        return cls(
            config=pinned,
            sources=sources,
            cmdb=config.cmdb,
            worker_lost_after=config.worker_lost_after,
            site_transfer_bytes=config.site_transfer_bytes,
        )


class PipelineWorker(BaseModel):
    """The worker that holds a run's files: its own task queue (only it polls there) and its identity (pid@host)."""

    task_queue: str
    identity: str = ""


# -- activity payloads ---------------------------------------------------------------------------------------------
class ScanRequest(BaseModel):
    config: ConfigRef
    source: str  # the source's name in that config
    source_digest: str = ""  # a site worker's check: its own config's source is the one the run resolved
    max_bytes: int = 0  # a site scan: compressed bytes its records may take in history (0: no records travel)


class ScanReport(BaseModel):
    source: str
    kind: str
    ok: bool
    records: int = 0
    error: str = ""
    site: str = ""  # scanned at this site, by its worker
    chunks: int = 0  # stored on the pipeline's worker in this many chunks (a site scan); 0: stored whole


class RecordChunk(BaseModel):
    """Records on their way from a site worker to the pipeline's worker: JSON lines, zlib, base64 (CHUNK_BYTES)."""

    source: str
    index: int
    records: int
    data: str


class SiteScan(BaseModel):
    """A site worker's scan: the report, the first chunk, and the site worker's own queue holding the others."""

    report: ScanReport
    first: RecordChunk
    task_queue: str = ""  # empty when every record fits in `first`


class ChunkRequest(BaseModel):
    source: str
    index: int


class PullRequest(BaseModel):
    scope: CmdbScope
    key_fields: list[str]


class PullReport(BaseModel):
    cis: int
    by_class: dict[str, int] = {}


class DiffRequest(BaseModel):
    config: ConfigRef
    scans: list[ScanReport]


class Tally(BaseModel):
    """One row of the summary: what one source saw of one class."""

    source: str
    ci_class: str
    scanned: int = 0
    matched: int = 0
    new: int = 0  # live, not in the CMDB
    missing: int = 0  # in the CMDB, not live
    unknown: int = 0  # in the CMDB, its source failed
    drifted: int = 0
    created: int = 0
    incidents: int = 0


class DiffReport(BaseModel):
    tallies: list[Tally] = []
    batches: int = 0
    new: list[str] = []  # samples (SAMPLE_LIMIT), names
    missing: list[str] = []
    unknown: list[str] = []
    drifted: list[str] = []
    unknown_total: int = 0
    not_covered: int = 0  # declared CIs of a class no source covers


class NewCi(BaseModel):
    record: InventoryRecord
    key_field: str


class MissingCi(BaseModel):
    sys_id: str
    name: str
    ci_class: str
    sources: list[str]  # the sources that scanned fine and did not see it
    busines_criticality: str = ""
    support_group: str = ""
    managed_by_group: str = ""


class DriftedCi(BaseModel):
    sys_id: str
    name: str
    ci_class: str
    source: str
    changes: dict[str, tuple[str, str]]  # CI field -> (CMDB value, live value)


class DeltaBatch(BaseModel):
    index: int
    new: list[NewCi] = []
    missing: list[MissingCi] = []
    drifted: list[DriftedCi] = []


class ApplyRequest(BaseModel):
    batch: DeltaBatch
    config: ConfigRef


class Created(BaseModel):
    name: str
    sys_id: str
    source: str
    ci_class: str


class Opened(BaseModel):
    number: str
    ci: str
    source: str
    ci_class: str
    assignment_group: str = ""


class BatchOutcome(BaseModel):
    created: list[Created] = []
    already_in_cmdb: int = 0  # found by key at write time (a re-run, or a retried create)
    incidents: list[Opened] = []
    incidents_already_open: int = 0
    drift_written: int = 0
    failed: list[str] = []  # items the instance refused (400/403/404): "name: reason"


class ReconcileStatus(BaseModel):
    """Answer of the `status` query."""

    phase: str = "scanning"  # scanning | pulling | diffing | applying | reporting | done
    batches_done: int = 0
    batches_total: int = 0
    worker: str = ""  # the identity (pid@host) of the worker holding the pipeline's files
    pipeline_starts: int = 0  # more than one: a worker was lost and the pipeline started again on another


class ReconcileSummary(BaseModel):
    """The workflow's result and the Slack message's content."""

    run: str
    dry_run: bool
    sources: list[ScanReport] = []
    cmdb_cis: int = 0
    tallies: list[Tally] = []
    created: list[str] = []  # samples: "name (sys_id)"
    incidents: list[str] = []  # samples: "INC… for name"
    unknown: list[str] = []
    missing: list[str] = []
    new: list[str] = []
    drifted: list[str] = []
    created_total: int = 0
    already_in_cmdb: int = 0
    incidents_total: int = 0
    incidents_already_open: int = 0
    unknown_total: int = 0
    drift_written: int = 0
    failed: list[str] = []
    batches: int = 0
    slack: str = ""  # "posted", "not configured" or the failure
    pipeline_workers: list[str] = []  # the workers (pid@host) that held the pipeline, in order: more than one = moved
