"""`/fleet/*`: a simulated fleet of hosts, the `http` host driver's target in dev and tests.

The fleet is what the CMDB lists, alive: every server CI (cmdb_ci_server and its subclasses) that is not retired
(install_status 7) or absent (100), plus seed.yaml's `fleet.unlisted` hosts (alive but missing from the CMDB) and
minus `fleet.gone` (in the CMDB but not alive) - the drift that reconciliation finds. Each host has a package
level, snapshots, service health, per-host faults and call counters.

Host agent API (what activities/hosts.py HttpOperator calls):
  POST /fleet/hosts/{name}/snapshots {"label"}       -> {"snapshot_id","created","level"}   (same label: same snapshot)
  POST /fleet/hosts/{name}/patch {"level","label"}   -> {"changed","level","previous_level","message"}; 422 patch fault
  GET  /fleet/hosts/{name}/level                     -> {"level","last_patch"}  (once no package transaction runs)
A host remembers its last package transaction as `last_patch` {"label","level","result","message"} (result applied,
unchanged or failed), as `dnf history` or apt's history.log do: how a caller whose answer was lost learns it.
  GET  /fleet/hosts/{name}/health                    -> {"healthy","level","services"}
  POST /fleet/hosts/{name}/rollback {"snapshot_id"}  -> {"level","message"}; 404 unknown snapshot
  POST /fleet/hosts/{name}/actions {"action","args"} -> {"output"}
An unreachable host answers 504 to all of these; a slow one answers late; `lose_answers` applies an operation and
then answers 502, as when the connection drops after the host did the work (the caller cannot tell).
Control (tests, bench, demo): GET /fleet/hosts (live inventory), GET /fleet/hosts/{name} (state + counters),
PUT /fleet/hosts/{name}/faults, GET|PUT /fleet/config, POST /fleet/reset. No auth, like /sandbox/*.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sandbox.instance import Instance
from sandbox.seed import read_seed
from sandbox.state import SandboxState

router = APIRouter(prefix="/fleet")

NOT_LIVE = {"7", "100"}  # retired, absent
INVENTORY_FIELDS = (
    "name",
    "ip_address",
    "fqdn",
    "os",
    "os_version",
    "serial_number",
    "object_id",
    "sys_class_name",
    "u_site",
)
SERVICES = ("sshd", "app")


class FleetConfig(BaseModel):
    baseline_level: str = "2025.01"  # every host's level after a reset
    latest_level: str = "2025.06"  # what patching to "latest" installs
    op_seconds: float = Field(default=0.0, ge=0)  # fixed duration of every host operation (bench, slow demos)


LosableOp = Literal["snapshot", "patch", "rollback"]


class HostFaults(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt fault must fail the test that sets it, not do nothing

    patch_fails: bool = False
    unhealthy_after_patch: bool = False  # health check fails while the host is above its baseline level
    unreachable: bool = False
    slow_seconds: float = Field(default=0.0, ge=0)
    # The next N calls of an operation do their work, then their answer is lost (502): a retry meets a changed host.
    lose_answers: dict[LosableOp, int] = {}


class Counters(BaseModel):
    """Calls per operation as the agent received them (a retried call counts twice), and level changes."""

    snapshot_calls: int = 0
    patch_calls: int = 0
    patches_applied: int = 0
    level_calls: int = 0
    health_calls: int = 0
    rollback_calls: int = 0
    action_calls: int = 0


@dataclass
class Host:
    inventory: dict[str, str]
    level: str
    baseline: str
    faults: HostFaults = field(default_factory=HostFaults)
    counters: Counters = field(default_factory=Counters)
    snapshots: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> {snapshot_id, level}
    last_patch: dict[str, str] | None = None  # the last package transaction: label, level asked, result, message
    # One package transaction at a time, like dpkg's lock: a retried patch waits, then finds the level reached.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.inventory["name"]

    def answer_lost(self, op: LosableOp) -> bool:
        """Whether this call's answer is lost (after its work is done); spends one of the fault's count."""
        left = self.faults.lose_answers.get(op, 0)
        if left > 0:
            self.faults.lose_answers[op] = left - 1
        return left > 0

    def healthy(self) -> bool:
        return not (self.faults.unhealthy_after_patch and self.level != self.baseline)

    def view(self) -> dict[str, Any]:
        return {
            **self.inventory,
            "patch_level": self.level,
            "baseline_level": self.baseline,
            "healthy": self.healthy(),
            "faults": self.faults.model_dump(),
            "counters": self.counters.model_dump(),
            "snapshots": list(self.snapshots.values()),
            "last_patch": self.last_patch,
        }


class Fleet:
    """Host state, created lazily from the live CMDB; reset puts every host back to its baseline."""

    def __init__(self, instance: Instance, seed_section: dict[str, Any]) -> None:
        self.instance = instance
        self.unlisted: list[dict[str, Any]] = list(seed_section.get("unlisted") or [])
        self.gone: set[str] = set(seed_section.get("gone") or [])
        self.config = FleetConfig()
        self.hosts: dict[str, Host] = {}
        self._known: dict[str, dict[str, str]] = {}
        self._ids = itertools.count(1)

    def inventory(self) -> dict[str, dict[str, str]]:
        """Name -> inventory record of every live host, read from the CMDB now."""
        live: dict[str, dict[str, str]] = {}
        for record in self.instance.store.rows("cmdb_ci_server"):
            name = record.get("name", "")
            if name and name not in self.gone and record.get("install_status", "") not in NOT_LIVE:
                live[name] = {key: record.get(key, "") for key in INVENTORY_FIELDS}
        for extra in self.unlisted:
            record = {key: str(extra.get(key, "")) for key in INVENTORY_FIELDS}
            record["sys_class_name"] = record["sys_class_name"] or "cmdb_ci_linux_server"
            live[record["name"]] = record
        return live

    def host(self, name: str) -> Host | None:
        if name not in self.hosts:
            # Read the CMDB again only for a name not seen yet: a bench asks for 10,000 hosts one by one.
            if name not in self._known:
                self._known = self.inventory()
            inventory = self._known.get(name)
            if inventory is None:
                return None
            level = str(next((u.get("patch_level") for u in self.unlisted if u.get("name") == name), "") or "")
            level = level or self.config.baseline_level
            self.hosts[name] = Host(inventory, level, level)
        return self.hosts[name]

    def reset(self) -> None:
        self.hosts.clear()
        self._known = {}
        self.config = FleetConfig()

    def next_snapshot_id(self, host: str) -> str:
        return f"snap-{host}-{next(self._ids)}"


def _fleet(request: Request) -> Fleet:
    app = request.app
    fleet: Fleet | None = getattr(app.state, "fleet", None)
    if fleet is None:
        state: SandboxState = app.state.sandbox
        section = (read_seed(state.config.seed_file).get("fleet") or {}) if state.config.seed else {}
        fleet = app.state.fleet = Fleet(state.instance, section)
    return fleet


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "detail": ""}, "status": "failure"}, status_code=status)


def _lost(name: str, op: str) -> JSONResponse:
    return _error(502, f"{name}: {op}: connection reset by peer before the agent answered")


async def _reach(fleet: Fleet, name: str, op: str) -> Host | JSONResponse:
    """The host, after the operation's simulated duration; or the error a caller would see."""
    host = fleet.host(name)
    if host is None:
        return _error(404, f"no host {name!r} in the fleet")
    await asyncio.sleep(fleet.config.op_seconds + host.faults.slow_seconds)
    if host.faults.unreachable:
        return _error(504, f"{name}: {op}: host unreachable (connection timed out)")
    return host


# -- inventory and control -----------------------------------------------------------------------------------------
@router.get("/hosts")
async def list_hosts(request: Request) -> list[dict[str, str]]:
    return list(_fleet(request).inventory().values())


@router.get("/hosts/{name}", response_model=None)
async def get_host(request: Request, name: str) -> dict[str, Any] | JSONResponse:
    host = _fleet(request).host(name)
    return host.view() if host else _error(404, f"no host {name!r} in the fleet")


@router.put("/hosts/{name}/faults", response_model=None)
async def put_faults(request: Request, name: str, faults: HostFaults) -> dict[str, Any] | JSONResponse:
    host = _fleet(request).host(name)
    if host is None:
        return _error(404, f"no host {name!r} in the fleet")
    host.faults = faults
    return host.view()


@router.get("/config")
async def get_config(request: Request) -> FleetConfig:
    return _fleet(request).config


@router.put("/config")
async def put_config(request: Request, config: FleetConfig) -> FleetConfig:
    fleet = _fleet(request)
    fleet.config = config
    return config


@router.post("/reset")
async def reset(request: Request) -> dict[str, Any]:
    """Every host back to the baseline level, no snapshots, faults or counts; config back to defaults."""
    fleet = _fleet(request)
    fleet.reset()
    return {"status": "ok", "hosts": len(fleet.inventory())}


# -- the host agent ------------------------------------------------------------------------------------------------
class SnapshotBody(BaseModel):
    label: str


class PatchBody(BaseModel):
    level: str = "latest"
    label: str = ""  # who asks (a change number): recorded with the transaction


class RollbackBody(BaseModel):
    snapshot_id: str


class ActionBody(BaseModel):
    action: str
    args: dict[str, str] = {}


@router.post("/hosts/{name}/snapshots", response_model=None)
async def snapshot(request: Request, name: str, body: SnapshotBody) -> dict[str, Any] | JSONResponse:
    fleet = _fleet(request)
    if (found := fleet.host(name)) is not None:
        found.counters.snapshot_calls += 1
    host = await _reach(fleet, name, "snapshot")
    if isinstance(host, JSONResponse):
        return host
    existing = host.snapshots.get(body.label)
    if existing is not None:
        return _lost(name, "snapshot") if host.answer_lost("snapshot") else {**existing, "created": False}
    taken = {"snapshot_id": fleet.next_snapshot_id(name), "label": body.label, "level": host.level}
    host.snapshots[body.label] = taken
    return _lost(name, "snapshot") if host.answer_lost("snapshot") else {**taken, "created": True}


@router.post("/hosts/{name}/patch", response_model=None)
async def patch(request: Request, name: str, body: PatchBody) -> dict[str, Any] | JSONResponse:
    fleet = _fleet(request)
    found = fleet.host(name)
    if found is None:
        return _error(404, f"no host {name!r} in the fleet")
    found.counters.patch_calls += 1
    target = fleet.config.latest_level if body.level == "latest" else body.level
    async with found.lock:
        host = await _reach(fleet, name, "patch")
        if isinstance(host, JSONResponse):
            return host
        record = {"label": body.label, "level": body.level}
        if host.faults.patch_fails:
            message = f"{name}: package transaction failed: dpkg: error processing package libssl3"
            host.last_patch = record | {"result": "failed", "message": message}
            return _lost(name, "patch") if host.answer_lost("patch") else _error(422, message)
        if host.level == target:
            answer = {"changed": False, "level": target, "previous_level": target, "message": f"already at {target}"}
        else:
            previous, host.level = host.level, target
            host.counters.patches_applied += 1
            answer = {
                "changed": True,
                "level": target,
                "previous_level": previous,
                "message": f"{previous} -> {target}",
            }
        host.last_patch = record | {
            "result": "applied" if answer["changed"] else "unchanged",
            "message": answer["message"],
        }
        return _lost(name, "patch") if host.answer_lost("patch") else answer


@router.get("/hosts/{name}/level", response_model=None)
async def level(request: Request, name: str) -> dict[str, Any] | JSONResponse:
    """The installed level, read once no package transaction runs (a patch in progress holds the host's lock)."""
    fleet = _fleet(request)
    if (found := fleet.host(name)) is not None:
        found.counters.level_calls += 1
    host = await _reach(fleet, name, "level")
    if isinstance(host, JSONResponse):
        return host
    async with host.lock:
        return {"level": host.level, "last_patch": host.last_patch}


@router.get("/hosts/{name}/health", response_model=None)
async def health(request: Request, name: str) -> dict[str, Any] | JSONResponse:
    fleet = _fleet(request)
    if (found := fleet.host(name)) is not None:
        found.counters.health_calls += 1
    host = await _reach(fleet, name, "health")
    if isinstance(host, JSONResponse):
        return host
    healthy = host.healthy()
    services = {service: "running" for service in SERVICES} | ({} if healthy else {"app": "failed"})
    return {"healthy": healthy, "level": host.level, "services": services}


@router.post("/hosts/{name}/rollback", response_model=None)
async def rollback(request: Request, name: str, body: RollbackBody) -> dict[str, Any] | JSONResponse:
    fleet = _fleet(request)
    if (found := fleet.host(name)) is not None:
        found.counters.rollback_calls += 1
    host = await _reach(fleet, name, "rollback")
    if isinstance(host, JSONResponse):
        return host
    taken = next((s for s in host.snapshots.values() if s["snapshot_id"] == body.snapshot_id), None)
    if taken is None:
        return _error(404, f"{name}: no snapshot {body.snapshot_id!r}")
    async with host.lock:
        previous, host.level = host.level, taken["level"]
    if host.answer_lost("rollback"):
        return _lost(name, "rollback")
    return {"level": host.level, "message": f"restored {body.snapshot_id}: {previous} -> {host.level}"}


@router.post("/hosts/{name}/actions", response_model=None)
async def action(request: Request, name: str, body: ActionBody) -> dict[str, Any] | JSONResponse:
    fleet = _fleet(request)
    if (found := fleet.host(name)) is not None:
        found.counters.action_calls += 1
    host = await _reach(fleet, name, body.action)
    if isinstance(host, JSONResponse):
        return host
    args = " ".join(f"{key}={value}" for key, value in sorted(body.args.items()))
    return {"output": f"{name}: {body.action} {args}".strip() + ": ok"}
