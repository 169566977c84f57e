"""The reconciliation's configuration: its reality sources, the CMDB scope it answers for, and what to do about drift.

Read by the worker from `CHANGELOOP_RECONCILE` (default: the `reconcile.yaml` beside this module) and validated when
it is read; a bad file names the field and the line. Runs name their config (`default`, or `<name>` for
`<name>.yaml` when CHANGELOOP_RECONCILE is a directory) and the worker reads it: a workflow input never carries a
source's argv, URL or headers. It holds no secret: AWS credentials come from the worker's boto3 chain, an HTTP
source's token and headers name a secret of the worker (`bearer_token: {secret: NAME}`, config/secrets.py), and a
command's environment is declared (`env`).
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.registry import line_of
from config.runbooks import Duration, canonical_json
from config.secrets import SecretRef, Value, literal_credentials

DEFAULT_CONFIG = Path(__file__).with_name("reconcile.yaml")
DEFAULT_NAME = "default"
CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")

# A batch of the delta is one activity input and one activity result; history payloads must stay well under 256 KB.
DEFAULT_BATCH_BYTES = 96_000
# A site-bound source's records cross history on their way to the pipeline's worker (compressed, in chunks of at most
# 192 KB: workflows/reconcile/models.py); this caps one source's share, so a run's history stays bounded.
DEFAULT_SITE_TRANSFER_BYTES = 4_000_000


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
    # Scanned by that site's worker (`changeloop worker --site`, activities/reconcile/site_scan.py), inside the
    # site's network, with the site worker's own config and secrets; unset: by the worker that holds the run.
    site: str | None = Field(default=None, pattern=r"[A-Za-z0-9]")


class AwsEc2Source(SourceBase):
    kind: Literal["aws_ec2"]
    regions: list[str] = Field(min_length=1)
    endpoint_url: str | None = None  # a moto server in tests, a VPC endpoint in production
    profile: str | None = None  # a named profile of the worker's AWS config (credentials never live here)
    states: list[str] = ["pending", "running", "stopping", "stopped"]  # terminated instances are gone
    page_size: int = Field(default=500, ge=5, le=1000)


def _env_problems(env: dict[str, Value]) -> dict[str, Value]:
    problems = literal_credentials(env, "env")
    if problems:
        raise ValueError("; ".join(problems))
    return env


class KubernetesSource(SourceBase):
    kind: Literal["kubernetes"]
    file: str | None = None  # JSON of `kubectl get nodes -o json` saved earlier; else kubectl runs
    kubectl: list[str] = ["kubectl"]
    context: str | None = None
    env: dict[str, Value] = {}  # kubectl's environment beyond PATH, HOME and LANG (KUBECONFIG, a token secret)
    ci_class: str = "cmdb_ci_linux_server"
    key_field: str = "serial_number"  # node uid

    @field_validator("kubectl")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("kubectl must be a non-empty argv list")
        return value

    _env = field_validator("env")(_env_problems)


class CommandSource(SourceBase):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)  # never a shell string
    items_path: str = ""  # where the list sits in the printed JSON ("" = the JSON is the list)
    mapping: FieldMapping = FieldMapping()
    env: dict[str, Value] = {}  # the command's environment beyond PATH, HOME and LANG

    _env = field_validator("env")(_env_problems)


class HttpSource(SourceBase):
    kind: Literal["http"]
    url: str
    items_path: str = ""
    mapping: FieldMapping = FieldMapping()
    # Literal values, or `{secret: NAME}`; a credential written out is refused.
    headers: dict[str, Value] = {}
    bearer_token: SecretRef | None = None  # sent as `Authorization: Bearer <value of the worker's secret>`

    @model_validator(mode="before")
    @classmethod
    def _bearer_token_env(cls, data: Any) -> Any:
        """`bearer_token_env: NAME` (before secrets were named) reads as `bearer_token: {secret: NAME}`: the name
        must now be one of the worker's CHANGELOOP_SECRET_NAMES."""
        if isinstance(data, dict) and "bearer_token_env" in data:
            data = dict(data)
            name = data.pop("bearer_token_env")
            if name:
                data.setdefault("bearer_token", {"secret": name})
        return data

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, value: dict[str, Value]) -> dict[str, Value]:
        problems = literal_credentials(value, "header")
        if problems:
            raise ValueError("; ".join(problems))
        return value


class ProxmoxSource(SourceBase):
    """Proxmox VE's cluster resources (`GET <url>/api2/json/cluster/resources?type=vm`): every QEMU VM and LXC
    container of the cluster, keyed by vmid, read with an API token (activities/reconcile/proxmox.py)."""

    kind: Literal["proxmox"]
    url: str  # the API's origin, e.g. https://pve1.example.com:8006
    token_id: str = Field(pattern=r"^[^\s@!=]+@[^\s@!=]+![^\s@!=]+$")  # user@realm!tokenid: a name, not a secret
    token_secret: (
        SecretRef  # `{secret: NAME}`: the worker's named secret holding the token's secret (config/secrets.py)
    )
    verify_tls: bool = True
    ca_file: str | None = None  # the cluster's CA (PEM): Proxmox signs its own certificate by default
    include_templates: bool = False  # a template is no running machine
    ci_class: str = "cmdb_ci_server"
    key_field: str = "object_id"  # the CMDB field holding the vmid


Source = Annotated[
    AwsEc2Source | KubernetesSource | CommandSource | HttpSource | ProxmoxSource, Field(discriminator="kind")
]


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
    # A pipeline stage whose worker has not picked it up, or has stopped heartbeating, for this long: that worker is
    # taken for lost and the run starts its pipeline again on another (workflows/reconcile/workflow.py).
    worker_lost_after: Duration = timedelta(minutes=1)
    site_transfer_bytes: int = Field(default=DEFAULT_SITE_TRANSFER_BYTES, ge=200_000, le=20_000_000)
    every: Duration = timedelta(days=7)  # the schedule
    offset: Duration = timedelta(hours=98)  # intervals count from the epoch (a Thursday): +4 d 2 h = Monday 02:00 UTC

    @model_validator(mode="after")
    def _unique_sources(self) -> ReconcileConfig:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique: {names}")
        return self

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)

    def sources_at(self, site: str | None) -> list[Source]:
        """The sources a worker scans: a site worker those of its site, a central worker those without a site."""
        return [s for s in self.sources if same_site(s.site, site)]

    def secret_names(self, sources: list[Source] | None = None) -> set[str]:
        """Every `{secret: NAME}` of `sources` (default: all of them); the worker that scans them must list each."""
        names: set[str] = set()
        for source in self.sources if sources is None else sources:
            if isinstance(source, HttpSource):
                names |= {v.secret for v in source.headers.values() if isinstance(v, SecretRef)}
                names |= {source.bearer_token.secret} if source.bearer_token else set()
            if isinstance(source, CommandSource | KubernetesSource):
                names |= {v.secret for v in source.env.values() if isinstance(v, SecretRef)}
            if isinstance(source, ProxmoxSource):
                names.add(source.token_secret.secret)
        return names


def same_site(one: str | None, other: str | None) -> bool:
    """ "Frankfurt DC1" and "frankfurt-dc1" name one site (workflows/site/models.py, site_slug); None: no site."""
    return _slug(one) == _slug(other)


def _slug(site: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (site or "").strip().lower()).strip("-")


# Fields added after digests were first pinned: left out of the digest while at their default, so a config that does
# not use them keeps the digest it had (a run in flight across the upgrade is not refused as "changed").
_LATER_FIELDS = {"worker_lost_after": "PT1M", "site_transfer_bytes": DEFAULT_SITE_TRANSFER_BYTES}


def _digest_view(config: ReconcileConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json", by_alias=True)
    for name, default in _LATER_FIELDS.items():
        if data.get(name) == default:
            data.pop(name)
    data["sources"] = [_source_view(s) for s in data["sources"]]
    return data


def _source_view(source: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if not (k == "site" and v is None)}


def config_digest(config: ReconcileConfig) -> str:
    """sha256 of the config in canonical JSON: a run pins the config it resolved, and each later step of the run
    refuses a config that changed meanwhile."""
    return hashlib.sha256(canonical_json(_digest_view(config))).hexdigest()


def source_digest(source: Source) -> str:
    """sha256 of one source's definition: a site worker scans a source of its own config only when it is the one the
    run resolved, whatever else its config holds."""
    return hashlib.sha256(canonical_json(_source_view(source.model_dump(mode="json", by_alias=True)))).hexdigest()


class ReconcileConfigError(ValueError):
    """The reconciliation config is unusable; the message names the file, field and line."""


def config_path(setting: Path | str | None, name: str = DEFAULT_NAME) -> Path:
    """Where config `name` lives: CHANGELOOP_RECONCILE a directory -> `<dir>/<name>.yaml`; a file (or unset: the
    shipped file) -> that file, named `default` (or by its stem). Nothing outside the operator's path is reachable."""
    if not CONFIG_NAME.match(name):
        raise ReconcileConfigError(f"{name!r} is not a reconciliation config name (letters, digits, '-', '_')")
    base = Path(setting) if setting else DEFAULT_CONFIG
    if base.is_dir():
        for suffix in (".yaml", ".yml"):
            if (base / f"{name}{suffix}").is_file():
                return base / f"{name}{suffix}"
        raise ReconcileConfigError(f"no reconciliation config named {name!r} in {base}")
    if name not in (DEFAULT_NAME, base.stem):
        raise ReconcileConfigError(f"no reconciliation config named {name!r}: {base} is the only one ({DEFAULT_NAME})")
    return base


def load_named_config(setting: Path | str | None, name: str = DEFAULT_NAME) -> ReconcileConfig:
    return load_reconcile_config(config_path(setting, name))


def load_reconcile_config(path: Path | str | None = None) -> ReconcileConfig:
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        text = path.read_text()
        data = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ReconcileConfigError(f"cannot read reconciliation config {path}: {exc}") from exc
    try:
        return ReconcileConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = line_of(text, loc)
            where = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{path}{f':{line}' if line else ''}: {where}: {err['msg']}")
        raise ReconcileConfigError("invalid reconciliation config:\n  " + "\n  ".join(problems)) from exc
