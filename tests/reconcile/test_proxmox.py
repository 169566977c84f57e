"""The `proxmox` source against a local stand-in of Proxmox VE's API: guests mapped to InventoryRecord (vmid as the
key), the API token's secret one of the worker's named secrets, refusals that no retry mends, and a reconciliation that
finds a VM the CMDB does not list."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError
from temporalio.client import Client

from activities.reconcile.inventory import SourceError, scan
from config.reconcile import ProxmoxSource, ReconcileConfig
from config.registry import load_registry
from config.secrets import NamedSecrets
from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.changes import TEST_REGISTRY
from tests.reconcile.conftest import Scenario
from tests.reconcile.proxmox_standin import TOKEN_ID, TOKEN_SECRET, ProxmoxStandIn, guest
from worker import build_worker

SECRET = "PVE_INVENTORY_TOKEN"


@pytest.fixture
def secrets() -> NamedSecrets:
    """The worker's named secrets: the token's secret under the name the config gives."""
    return NamedSecrets([SECRET], {SECRET: TOKEN_SECRET})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def proxmox_settings(
    temporal_client: Client, reconcile_settings: Settings, sandbox: Any
) -> AsyncIterator[Settings]:
    """A reconcile worker that lists the token's secret (CHANGELOOP_SECRET_NAMES) and read it from its environment."""
    settings = reconcile_settings.model_copy(update={"task_queue": "proxmox-test", "secret_names": [SECRET]})
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET, TOKEN_SECRET)
        sn = ServiceNowClient.from_settings(settings)
        worker = build_worker(temporal_client, settings, load_registry(TEST_REGISTRY), sn)
    async with sn, worker:
        yield settings


@pytest.fixture
def cluster() -> Iterator[ProxmoxStandIn]:
    guests = [
        guest(101, "db-01", tags="prod;db", pool="core"),
        guest(102, "web-01", node="pve2", status="stopped"),
        guest(201, "cache-01", kind="lxc", maxmem=512 * 1024**2),
        guest(9000, "ubuntu-template", template=1),
    ]
    with ProxmoxStandIn(guests) as standin:
        yield standin


def _source(url: str, **options: object) -> ProxmoxSource:
    body = {"name": "pve", "kind": "proxmox", "url": url, "token_id": TOKEN_ID, "token_secret": {"secret": SECRET}}
    return ProxmoxSource.model_validate(body | options)


async def test_guests_become_records_keyed_by_vmid(cluster: ProxmoxStandIn, secrets: NamedSecrets) -> None:
    records = await scan(_source(cluster.url), secrets)

    by_key = {r.key: r for r in records}
    assert set(by_key) == {"101", "102", "201"}, "templates, nodes and storages are no guests"
    db = by_key["101"]
    assert (db.name, db.ci_class, db.source, db.ip, db.os) == ("db-01", "cmdb_ci_server", "pve", "", "")
    assert db.attributes == {
        "object_id": "101",
        "node": "pve1",
        "status": "running",
        "guest_type": "qemu",
        "pool": "core",
        "tags": "prod;db",
        "cpu_count": "2",
        "ram": "4096",
    }
    assert by_key["102"].attributes["status"] == "stopped" and by_key["102"].attributes["node"] == "pve2"
    assert by_key["201"].attributes["guest_type"] == "lxc" and by_key["201"].attributes["ram"] == "512"
    [(path, query, authorization)] = cluster.requests
    assert path == "/api2/json/cluster/resources" and query == {"type": ["vm"]}
    assert authorization == f"PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"


async def test_templates_are_read_when_asked(cluster: ProxmoxStandIn, secrets: NamedSecrets) -> None:
    records = await scan(_source(cluster.url, include_templates=True), secrets)
    assert "9000" in {r.key for r in records}


async def test_a_refused_token_fails_the_source_for_good_without_naming_the_secret(cluster: ProxmoxStandIn) -> None:
    revoked = NamedSecrets([SECRET], {SECRET: "00000000-0000-0000-0000-000000000000"})
    with pytest.raises(SourceError, match="401") as refused:
        await scan(_source(cluster.url), revoked)
    assert refused.value.misconfigured and TOKEN_SECRET not in str(refused.value)


async def test_a_secret_the_worker_does_not_hold_is_named_and_nothing_is_sent(cluster: ProxmoxStandIn) -> None:
    with pytest.raises(SourceError, match=SECRET) as refused:
        await scan(_source(cluster.url), NamedSecrets([], {}))
    assert refused.value.misconfigured and cluster.requests == []


async def test_an_unreachable_cluster_is_retryable(secrets: NamedSecrets) -> None:
    with pytest.raises(SourceError, match="ConnectError") as failed:
        await scan(_source("http://127.0.0.1:9"), secrets)
    assert not failed.value.misconfigured


def test_the_config_names_the_token_and_never_holds_its_secret() -> None:
    with pytest.raises(ValidationError, match="token_id"):
        _source("https://pve.example:8006", token_id="changeloop")  # no realm, no token name
    with pytest.raises(ValidationError, match="token_secret"):
        _source("https://pve.example:8006", token_secret=TOKEN_SECRET)  # a value, not a named secret
    config = ReconcileConfig.model_validate({"sources": [_source("https://pve.example:8006").model_dump()]})
    assert config.secret_names() == {SECRET}, "the worker must list the token's secret"


async def test_a_reconciliation_finds_a_vm_the_cmdb_does_not_list(
    sn_client: ServiceNowClient,
    temporal_client: Client,
    proxmox_settings: Settings,
    cluster: ProxmoxStandIn,
    tmp_path: Path,
) -> None:
    s = Scenario(sn_client, temporal_client, proxmox_settings, tmp_path)
    listed = await s.ci("db-01", ci_class="cmdb_ci_server", object_id="101")
    await s.ci("gone-01", ci_class="cmdb_ci_server", object_id="150")
    cluster.guests = [guest(101, s.name("db-01")), guest(102, s.name("web-01"), node="pve2")]
    source = _source(cluster.url, covers=["cmdb_ci_server"]).model_dump(mode="json")
    config = ReconcileConfig.model_validate(
        {"sources": [source], "cmdb": {"name_prefix": s.prefix, "classes": ["cmdb_ci_server"]}}
    )

    summary = await s.run(config, dry_run=True)

    assert summary.new == [s.name("web-01")], "the VM Proxmox runs and the CMDB does not list"
    assert summary.missing == [s.name("gone-01")]
    (row,) = summary.tallies
    assert (row.source, row.scanned, row.matched, row.new, row.missing) == ("pve", 2, 1, 1, 1)
    assert listed["name"] not in summary.new
    assert [a for _, _, a in cluster.requests] == [f"PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"], "the worker's secret"
