"""The sandbox fleet: the CMDB's live servers, plus seed.yaml's `fleet.unlisted`, minus `fleet.gone`.

That is the contract the reconciliation work relies on, so it is tested with a seed of its own, not with whatever
drift the shipped seed happens to carry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from sandbox.seed import read_seed
from sandbox.server import SandboxConfig, SandboxServer
from tests.wave.conftest import BASELINE, FleetControl


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    seed = read_seed()
    seed["fleet"] = {
        "unlisted": [{"name": "ghost-01", "ip_address": "10.99.0.1", "os": "Linux Ubuntu", "serial_number": "SN-G1"}],
        "gone": ["web-02"],
    }
    path: Path = tmp_path_factory.mktemp("seed") / "seed.yaml"
    path.write_text(yaml.safe_dump(seed))
    with SandboxServer(SandboxConfig(port=0, seed=True, seed_file=path)) as server:
        yield server.url


def test_fleet_is_the_cmdb_servers_plus_unlisted_minus_gone_and_retired(drifted: str) -> None:
    hosts = {h["name"]: h for h in httpx.get(f"{drifted}/fleet/hosts").json()}

    assert "ghost-01" in hosts and hosts["ghost-01"]["sys_class_name"] == "cmdb_ci_linux_server"
    assert "web-02" not in hosts, "gone: in the CMDB, not alive"
    assert "batch-02" not in hosts, "retired CIs are not running hosts"
    assert {"fleet-01", "fleet-20", "web-01", "win-report-01"} <= set(hosts)
    assert set(hosts["fleet-07"]) >= {"name", "ip_address", "os", "os_version", "serial_number", "sys_class_name"}
    assert hosts["fleet-07"]["ip_address"] == "10.40.1.17"


def test_fleet_endpoints_need_no_auth_and_stay_out_of_the_table_api(drifted: str) -> None:
    assert httpx.get(f"{drifted}/fleet/hosts/fleet-01").status_code == 200
    assert httpx.get(f"{drifted}/api/now/table/fleet").status_code in (400, 401, 404)


async def test_reset_puts_every_host_back_to_baseline_without_faults_or_counts(fleet: FleetControl) -> None:
    await fleet.set_faults("fleet-09", unhealthy_after_patch=True)
    await fleet.patch_by_hand("fleet-09", "2025.06")
    await fleet.configure(op_seconds=0.01)

    await fleet.reset()

    host = await fleet.host("fleet-09")
    assert host["patch_level"] == BASELINE and host["healthy"]
    assert host["counters"]["patch_calls"] == 0 and not host["faults"]["unhealthy_after_patch"]
    assert (await fleet.http.get("/config")).json()["op_seconds"] == 0
