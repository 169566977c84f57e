"""The diff of live inventories against the declared CIs: pure functions, no I/O.

Matching is by stable key first (the record's key against the CI field its source names, e.g. `object_id` for EC2
instance IDs), then, if `match_by_name`, by name (case-insensitive). Then:
- a live record matching no CI is *new* (a CI to create, once, even if two sources see it);
- a CI no live record matched is *missing* when every source covering its class scanned fine, and *unknown* when
  one of them failed: a failed scan proves nothing, so it never opens an incident;
- a matched CI whose IP or OS differs from what the source sees has *drifted*.
CIs in an inactive install status (retired, absent) are matched, so a live host with a retired CI is not "new", but
are never reported missing; where a name or key is shared, the active CI wins (`_Index`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from config.reconcile import DriftMode, ReconcileConfig
from workflows.reconcile.models import (
    SAMPLE_LIMIT,
    DeltaBatch,
    DiffReport,
    DriftedCi,
    InventoryRecord,
    MissingCi,
    NewCi,
    ScanReport,
    Tally,
)

CMDB_FIELDS = [
    "sys_id",
    "name",
    "sys_class_name",
    "install_status",
    "ip_address",
    "os",
    "busines_criticality",
    "support_group",
    "managed_by_group",
]
# InventoryRecord attribute -> CI field compared for attribute drift.
COMPARED = {"ip": "ip_address", "os": "os"}


@dataclass
class Delta:
    new: list[NewCi] = field(default_factory=list)
    missing: list[MissingCi] = field(default_factory=list)
    drifted: list[DriftedCi] = field(default_factory=list)
    report: DiffReport = field(default_factory=DiffReport)


def _sample(bucket: list[str], text: str) -> None:
    if len(bucket) < SAMPLE_LIMIT:
        bucket.append(text)


class _Index:
    """The declared CIs by key field value and by lower-cased name, each to every CI that carries it.

    A name (or a key) is not unique in a CMDB: a host rebuilt under its old name has a retired CI and an installed
    one. A live record matches the active CI when there is one, else a retired one (so it is not "new"); keeping
    only the first CI seen would match the retired CI and leave the installed one unmatched, reported missing.
    """

    def __init__(self, cis: Iterable[dict[str, Any]], key_fields: set[str], inactive: set[str]) -> None:
        self.inactive = inactive
        self.by_key: dict[str, dict[str, list[dict[str, Any]]]] = {f: {} for f in key_fields}
        self.by_name: dict[str, list[dict[str, Any]]] = {}
        self.all: list[dict[str, Any]] = []
        for ci in cis:
            self.all.append(ci)
            for key_field, index in self.by_key.items():
                if value := str(ci.get(key_field, "")):
                    index.setdefault(value, []).append(ci)
            self.by_name.setdefault(str(ci.get("name", "")).lower(), []).append(ci)

    def active(self, ci: dict[str, Any]) -> bool:
        return str(ci.get("install_status", "")) not in self.inactive

    def _best(self, candidates: list[dict[str, Any]], found: set[str]) -> dict[str, Any] | None:
        """An active CI not matched yet, else any active one, else an inactive one; None when there is none."""
        if not candidates:
            return None
        return min(candidates, key=lambda ci: (not self.active(ci), ci["sys_id"] in found))

    def match(self, record: InventoryRecord, key_field: str, by_name: bool, found: set[str]) -> dict[str, Any] | None:
        if record.key and (ci := self._best(self.by_key[key_field].get(record.key, []), found)):
            return ci
        return self._best(self.by_name.get(record.name.lower(), []), found) if by_name else None


class _Tallies:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Tally] = {}

    def __call__(self, source: str, ci_class: str) -> Tally:
        return self.rows.setdefault((source, ci_class), Tally(source=source, ci_class=ci_class))


def _drift(record: InventoryRecord, ci: dict[str, Any]) -> dict[str, tuple[str, str]]:
    changes = {}
    for attribute, ci_field in COMPARED.items():
        if ci_field not in ci:
            continue  # the CI's class has no such field
        live, declared = getattr(record, attribute).strip(), str(ci.get(ci_field, "")).strip()
        if live and live.lower() != declared.lower():
            changes[ci_field] = (declared, live)
    return changes


def diff(
    config: ReconcileConfig,
    scans: list[ScanReport],
    cmdb: Iterable[dict[str, Any]],
    inventory: Callable[[str], Iterable[InventoryRecord]],
) -> Delta:
    """`inventory(source name)` yields that source's stored records; it is only asked for sources that scanned."""
    ok = {s.source for s in scans if s.ok}
    sources = {s.name: s for s in config.sources}
    inactive = set(config.cmdb.inactive_install_status)
    index = _Index(cmdb, {s.key_field for s in config.sources}, inactive)
    tally, delta, report = _Tallies(), Delta(), DiffReport()
    delta.report = report
    found: set[str] = set()
    queued: set[str] = set()  # keys and names of new CIs already queued: two sources seeing one host create one CI

    for source in config.sources:
        if source.name not in ok:
            continue
        for record in inventory(source.name):
            ci = index.match(record, source.key_field, config.match_by_name, found)
            if ci is None:
                _new(config, source.key_field, record, queued, delta, tally)
                continue
            row = tally(source.name, str(ci.get("sys_class_name", "")))
            row.scanned += 1
            row.matched += 1
            if ci["sys_id"] in found:
                continue
            found.add(ci["sys_id"])
            if changes := _drift(record, ci):
                row.drifted += 1
                drifted = DriftedCi(
                    sys_id=ci["sys_id"],
                    name=ci["name"],
                    ci_class=ci["sys_class_name"],
                    source=source.name,
                    changes=changes,
                )
                _sample(
                    report.drifted,
                    f"{ci['name']}: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()),
                )
                if config.drift != DriftMode.REPORT:
                    delta.drifted.append(drifted)

    covers = {name: set(s.covers or config.cmdb.classes) for name, s in sources.items()}
    for ci in index.all:
        if ci["sys_id"] in found or not index.active(ci):
            continue
        ci_class = str(ci.get("sys_class_name", ""))
        covering = [name for name in sources if ci_class in covers[name]]
        failed = [name for name in covering if name not in ok]
        if not covering:
            report.not_covered += 1
        elif failed:
            tally(failed[0], ci_class).unknown += 1
            report.unknown_total += 1
            _sample(report.unknown, ci["name"])
        else:
            tally(covering[0], ci_class).missing += 1
            _sample(report.missing, ci["name"])
            delta.missing.append(
                MissingCi(
                    sys_id=ci["sys_id"],
                    name=ci["name"],
                    ci_class=ci_class,
                    sources=covering,
                    busines_criticality=str(ci.get("busines_criticality", "")),
                    support_group=str(ci.get("support_group", "")),
                    managed_by_group=str(ci.get("managed_by_group", "")),
                )
            )
    report.tallies = sorted(tally.rows.values(), key=lambda t: (t.source, t.ci_class))
    return delta


def _new(
    config: ReconcileConfig, key_field: str, record: InventoryRecord, queued: set[str], delta: Delta, tally: _Tallies
) -> None:
    if not record.name.startswith(config.cmdb.name_prefix):
        return  # outside the declared scope: not ours to create
    row = tally(record.source, record.ci_class)
    row.scanned += 1
    identities = {f"name:{record.name.lower()}"} | ({f"{key_field}:{record.key}"} if record.key else set())
    if identities & queued:
        return
    queued |= identities
    row.new += 1
    _sample(delta.report.new, record.name)
    delta.new.append(NewCi(record=record, key_field=key_field))


def batches(delta: Delta, limit_bytes: int) -> list[DeltaBatch]:
    """Split the delta so that no batch's JSON exceeds `limit_bytes` (one item larger than that still gets its own)."""
    result: list[DeltaBatch] = []
    current, size = DeltaBatch(index=0), 0
    items: list[tuple[str, Any]] = [
        *(("new", i) for i in delta.new),
        *(("missing", i) for i in delta.missing),
        *(("drifted", i) for i in delta.drifted),
    ]
    for kind, item in items:
        item_size = len(item.model_dump_json(by_alias=True)) + 1
        if size and size + item_size > limit_bytes:
            result.append(current)
            current, size = DeltaBatch(index=len(result)), 0
        getattr(current, kind).append(item)
        size += item_size
    if size:
        result.append(current)
    return result
