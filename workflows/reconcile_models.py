"""The reconciliation contract: its configuration, the workflow's input and summary, and the small activity payloads.

A run's configuration travels in its input, so one execution's history says which sources it trusted and how. It
holds no secret: AWS credentials come from the worker's boto3 chain and an HTTP source names the environment
variable of its token (`bearer_token_env`), read by the worker. Inventories and the CMDB pull never travel: only
counts, references to a run's stored scan and, batch by batch, the delta.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workflows.models import Duration

RECONCILE_SCHEDULE = "changeloop-reconcile"

# A batch of the delta is one activity input and one activity result; history payloads must stay well under 256 KB.
DEFAULT_BATCH_BYTES = 96_000
SAMPLE_LIMIT = 25  # names listed per category in a summary; the counts are always complete


def reconcile_workflow_id(date: str, *, dry_run: bool = False) -> str:
    """`reconcile-<date>` (DESIGN.md §4); a dry run gets its own ID so it never blocks or hides a real run."""
    return f"reconcile-{date}" + ("-dry-run" if dry_run else "")


# -- reality sources -----------------------------------------------------------------------------------------------
class FieldMapping(BaseModel):
    """Where each record field sits in a source's JSON objects: dotted paths (`tags.Name`, `addresses.0.ip`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = "name"
    key: str = "id"
    ip: str = "ip_address"
    os: str = "os"
    ci_class: str = Field(default="sys_class_name", alias="class")
    # CI field -> path, copied into `attributes` (and onto a created CI when the field is in `copy_attributes`).
    attributes: dict[str, str] = {}


class SourceBase(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # used in file names and CI markers
    # CMDB classes this source can vouch for: their CIs are "missing" when it scans fine and does not see them,
    # "unknown" when it failed. Empty = every class in `cmdb.classes`.
    covers: list[str] = []
    ci_class: str = "cmdb_ci_server"  # class of a CI created from a record that names none
    key_field: str = "object_id"  # the CMDB field holding this source's stable key
    attempts: int = Field(default=3, ge=1, le=20)
    timeout: Duration = timedelta(minutes=10)


class AwsEc2Source(SourceBase):
    kind: Literal["aws_ec2"]
    regions: list[str] = Field(min_length=1)
    endpoint_url: str | None = None  # a moto server in tests, a VPC endpoint in production
    profile: str | None = None  # a named profile of the worker's AWS config (credentials never live here)
    states: list[str] = ["pending", "running", "stopping", "stopped"]  # terminated instances are gone
    page_size: int = Field(default=500, ge=5, le=1000)


class KubernetesSource(SourceBase):
    kind: Literal["kubernetes"]
    file: str | None = None  # JSON of `kubectl get nodes -o json` saved earlier; else kubectl runs
    kubectl: list[str] = ["kubectl"]
    context: str | None = None
    ci_class: str = "cmdb_ci_linux_server"
    key_field: str = "serial_number"  # node uid

    @field_validator("kubectl")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("kubectl must be a non-empty argv list")
        return value


class CommandSource(SourceBase):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)  # never a shell string
    items_path: str = ""  # where the list sits in the printed JSON ("" = the JSON is the list)
    mapping: FieldMapping = FieldMapping()


class HttpSource(SourceBase):
    kind: Literal["http"]
    url: str
    items_path: str = ""
    mapping: FieldMapping = FieldMapping()
    headers: dict[str, str] = {}
    bearer_token_env: str | None = None  # name of the worker's environment variable holding the token

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        # The config lands in workflow history: a credential here would be stored for the history's lifetime.
        for name in value:
            if name.lower() in {"authorization", "cookie", "x-api-key", "proxy-authorization"}:
                raise ValueError(f"header {name!r} carries a credential: use bearer_token_env instead")
        return value


Source = Annotated[AwsEc2Source | KubernetesSource | CommandSource | HttpSource, Field(discriminator="kind")]


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


# -- what to do about drift ----------------------------------------------------------------------------------------
class CmdbScope(BaseModel):
    """The declared CIs: which part of the CMDB this reconciliation answers for."""

    model_config = ConfigDict(extra="forbid")

    classes: list[str] = ["cmdb_ci_linux_server", "cmdb_ci_server"]
    name_prefix: str = ""  # narrows the scope to one slice (a team's, a test's)
    # Pulled and matched (a live host with a retired CI is not "new"), but never reported missing.
    inactive_install_status: list[str] = ["7", "100"]
    page_size: int = Field(default=2000, ge=1, le=10000)


class DriftMode(StrEnum):
    REPORT = "report"  # only in the summary
    NOTE = "note"  # append a note to the CI (note_field)
    UPDATE = "update"  # set the CI's ip_address / os to what the source sees


class CriticalityRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    impact: str
    urgency: str


class RoutingConfig(BaseModel):
    """Criticality -> impact/urgency, and who gets the incident. Priority is never set: the instance computes it."""

    model_config = ConfigDict(extra="forbid")

    # Keyed by the leading digit of busines_criticality ("1 - most critical" -> "1").
    criticality: dict[str, CriticalityRule] = {
        "1": CriticalityRule(impact="1", urgency="1"),
        "2": CriticalityRule(impact="2", urgency="2"),
        "3": CriticalityRule(impact="2", urgency="3"),
        "4": CriticalityRule(impact="3", urgency="3"),
    }
    unknown: CriticalityRule = CriticalityRule(impact="3", urgency="3")  # no criticality anywhere
    inherit_from_parents: bool = True  # a server without criticality takes its most critical application's
    default_group: str = "Service Desk"  # when the CI has neither support_group nor managed_by_group


class ReconcileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[Source] = Field(min_length=1)
    cmdb: CmdbScope = CmdbScope()
    match_by_name: bool = True  # after the stable key, match a record to a CI by name (case-insensitive)
    review_field: str = "u_review_needed"
    review_value: str = "true"
    discovery_source: str = "changeloop"  # written to discovery_source as "<this>:<source name>"
    copy_attributes: list[str] = ["os_version", "fqdn", "serial_number", "object_id", "kernel_release"]
    drift: DriftMode = DriftMode.REPORT
    note_field: str = "work_notes"
    routing: RoutingConfig = RoutingConfig()
    batch_bytes: int = Field(default=DEFAULT_BATCH_BYTES, ge=1_000, le=200_000)
    concurrency: int = Field(default=4, ge=1, le=32)  # ServiceNow writes in flight per batch
    every: Duration = timedelta(days=7)  # the schedule
    offset: Duration = timedelta(hours=98)  # intervals count from the epoch (a Thursday): +4 d 2 h = Monday 02:00 UTC

    @model_validator(mode="after")
    def _unique_sources(self) -> ReconcileConfig:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique: {names}")
        return self


class ReconcileInput(BaseModel):
    config: ReconcileConfig
    dry_run: bool = False


# -- activity payloads ---------------------------------------------------------------------------------------------
class ScanRequest(BaseModel):
    source: Source


class ScanReport(BaseModel):
    source: str
    kind: str
    ok: bool
    records: int = 0
    error: str = ""


class PullRequest(BaseModel):
    scope: CmdbScope
    key_fields: list[str]


class PullReport(BaseModel):
    cis: int
    by_class: dict[str, int] = {}


class DiffRequest(BaseModel):
    config: ReconcileConfig
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
    config: ReconcileConfig


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


class ReconcileAct:
    """Activity names of the reconciliation (workflows call activities by name)."""

    SCAN_SOURCE = "reconcile_scan_source"
    PULL_CMDB = "reconcile_pull_cmdb"
    DIFF = "reconcile_diff"
    LOAD_BATCH = "reconcile_load_batch"
    APPLY_BATCH = "reconcile_apply_batch"
    POST_SUMMARY = "reconcile_post_summary"
    CLEAN_UP = "reconcile_clean_up"
