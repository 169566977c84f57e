"""The patch wave's contract: wave parameters, CIs, host reports, the wave's status and continue-as-new state.

Kept apart from workflows/models.py (the change lifecycle's contract) so the wave can grow without churning it.
These shapes travel through Temporal: CI names and levels only, never a credential or a driver setting.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

from config.runbooks import Duration
from workflows.runbook.models import RunbookRun

# -- names ---------------------------------------------------------------------------------------------------------
SIGNAL_HOST_DONE = "host_done"


def wave_workflow_id(number: str) -> str:
    return f"wave-{number}"


def patch_host_workflow_id(number: str, ci: str) -> str:
    return f"patch-{number}-{ci}"


# Error types of host operations: unreachable is retried; the others are the host's answer, and a retry won't change it.
HOST_UNREACHABLE = "HostUnreachable"
HOST_OPERATION_FAILED = "HostOperationFailed"
HOST_NOT_FOUND = "HostNotFound"
NO_HOST_DRIVER = "NoHostDriver"


# -- CIs -----------------------------------------------------------------------------------------------------------
class CiRef(BaseModel):
    """A host as the CMDB describes it: enough to pick a driver and address it."""

    sys_id: str
    name: str
    sys_class_name: str = ""
    ip_address: str = ""
    fqdn: str = ""
    site: str = ""  # location display value
    task_queue: str = ""  # its site worker's queue, resolved by the central worker (activities/sites.py); "": central


class SkippedCi(BaseModel):
    name: str
    reason: str


class PlanInput(BaseModel):
    change_sys_id: str = ""
    application: str = ""
    relationship_types: list[str] = []
    ci_classes: list[str] = []


class WavePlan(BaseModel):
    application: str
    application_sys_id: str
    total: int  # related CIs of the configured classes, any install_status
    installed: int  # of those, install_status Installed: the failure budget's denominator
    link_base: str  # execution link of workflow ID x is link_base + x (the UI base lives in the worker)


class PageInput(BaseModel):
    application_sys_id: str
    relationship_types: list[str]
    ci_classes: list[str]
    after: str = ""  # keyset cursor: the last cmdb_rel_ci sys_id already read
    size: int = 500


class WavePage(BaseModel):
    cis: list[CiRef] = []
    skipped: list[SkippedCi] = []
    cursor: str = ""
    more: bool = False


# -- one host ------------------------------------------------------------------------------------------------------
class HostOps(BaseModel):
    """How long and how often a host operation may try."""

    timeout: Duration = timedelta(minutes=30)
    heartbeat_timeout: Duration = timedelta(seconds=30)
    retries: int = 3


class HostOpInput(BaseModel):
    ci: CiRef
    change_number: str = ""
    level: str = ""
    from_level: str = ""  # patch: the level the snapshot recorded, so a retried patch can tell its own work
    snapshot_id: str = ""
    label: str = ""
    action: str = ""
    args: dict[str, str] = {}


class HostOpResult(BaseModel):
    changed: bool = True
    message: str = ""
    snapshot_id: str = ""
    level: str = ""  # snapshot: the level it preserves; patch: the level reached ("" when the driver cannot tell)
    healthy: bool = True


class HostOutcome(StrEnum):
    PATCHED = "patched"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    CANCELED = "canceled"  # the host's workflow was cancelled: what it half did is undone (workflows/wave/host.py)


class PatchHostInput(BaseModel):
    change_number: str
    ci: CiRef
    target_level: str
    ops: HostOps = HostOps()
    report_to: str = ""  # the wave's workflow ID (no run ID: the wave continues as new)


class HostReport(BaseModel):
    ci: str
    outcome: HostOutcome
    detail: str = ""
    changed: bool = False  # False when the host already was at the target level
    started_at: datetime | None = None
    ended_at: datetime | None = None


class HostStatus(BaseModel):
    ci: str
    step: str = ""
    done: list[str] = []
    report: HostReport | None = None


# -- the wave ------------------------------------------------------------------------------------------------------
class CiState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PATCHED = "patched"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    NOT_ATTEMPTED = "not_attempted"


class WaveCounts(BaseModel):
    total: int = 0
    pending: int = 0
    running: int = 0
    patched: int = 0
    rolled_back: int = 0
    failed: int = 0
    canceled: int = 0
    skipped: int = 0
    not_attempted: int = 0
    unchanged: int = 0  # patched ones that already were at the target level (no-op)

    @property
    def finished(self) -> int:
        return self.patched + self.rolled_back + self.failed + self.canceled + self.skipped + self.not_attempted


class WaveHost(BaseModel):
    ci: str
    state: CiState
    detail: str = ""
    workflow_id: str = ""
    url: str = ""


class WaveState(BaseModel):
    """Everything a wave carries through continue-as-new. Per CI only a state (and a detail where one is worth
    keeping), so 10,000 CIs cost a few hundred kB, not the CMDB records."""

    plan: WavePlan | None = None
    cursor: str = ""
    exhausted: bool = False
    states: dict[str, CiState] = {}
    details: dict[str, str] = {}
    unchanged: list[str] = []
    canary: list[str] = []
    canary_passed: bool = False
    stopped: str = ""  # why no new host is started (canary failed, failure budget, canceled)
    stopped_phase: str = ""
    canceled: bool = False  # the wave was cancelled: it stopped, wound its hosts down and reports "canceled"
    # The ticket watch stopped it (workflows/change/watch.py): canceled_in_servicenow | window_ended; the wave
    # returns that to its change instead of failing.
    stopped_kind: str = ""
    pending_notes: list[str] = []
    last_flush: datetime | None = None
    started_at: datetime | None = None
    runs: int = 1
    # Evidence (runbook `tasks: per_step`): the wave's open change tasks by name (canary, summary) -> sys_id, and the
    # failed or rolled-back hosts whose task is not filed yet.
    tasks: dict[str, str] = {}
    troubled: list[str] = []


class WaveStatus(BaseModel):
    """Answer of the wave's `status` query."""

    number: str
    workflow_id: str
    url: str = ""
    application: str = ""
    phase: str = "planning"  # planning | canary | rolling | draining | canceling | summarising | done | canceled
    target_level: str = ""
    max_parallel: int = 0
    canary: list[str] = []
    canary_passed: bool = False
    failure_budget_percent: float = 100.0
    stopped: str = ""
    run: int = 1
    counts: WaveCounts = WaveCounts()
    hosts: list[WaveHost] = []
    report: list[str] = []  # the per-host CSV on the change: "<file name> (<bytes> bytes)" per part, or why not


class WatchInput(BaseModel):
    """Host workflows a wave run did not start itself (an earlier run did, before continue-as-new) and still waits
    for: the watch answers as soon as one of them closes, or with nothing after `wait`."""

    change_number: str
    cis: list[str]
    wait: Duration = timedelta(minutes=5)


class ClosedHost(BaseModel):
    ci: str
    status: str  # completed | failed | canceled | terminated | timed_out
    report: HostReport | None = None  # the host's own report, when it completed
    detail: str = ""  # otherwise: how it ended


class WatchResult(BaseModel):
    closed: list[ClosedHost] = []


class WaveRun(RunbookRun):
    """The wave's input: what a change sends any runbook workflow, plus the state that continue-as-new carries
    (the SDK decodes typed inputs only when the argument count matches, so the state rides inside one argument)."""

    state: WaveState | None = None
