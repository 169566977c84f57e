"""Reality sources: each turns live infrastructure into the same InventoryRecord shape, or fails as a whole."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from activities.reconcile.inventory import SourceError, pick, scan
from config.reconcile import AwsEc2Source, CommandSource, HttpSource, KubernetesSource
from config.secrets import NamedSecrets, SecretRef

KUBECTL_JSON = Path(__file__).with_name("kubectl_nodes.json")
SEED_FLEET = {
    "unlisted": ["edge-cache-01", "edge-cache-02", "win-build-01"],
    "gone": ["wiki-01", "batch-01", "win-report-01"],
}


# -- aws_ec2 ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ec2_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker's boto3 credential chain; moto accepts any. Nothing of this is in the source config.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _launch(endpoint: str, region: str, name: str, count: int = 1) -> list[str]:
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
    instances = ec2.run_instances(
        ImageId="ami-12345678",  # moto accepts any image id; no Windows AMI means no Platform field
        MinCount=count,
        MaxCount=count,
        InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
    )["Instances"]
    return [i["InstanceId"] for i in instances]


async def test_ec2_instances_are_found_across_two_regions_every_page(ec2_endpoint: str, aws_credentials: None) -> None:
    east = _launch(ec2_endpoint, "us-east-1", "ec2-east", count=7)
    west = _launch(ec2_endpoint, "eu-west-1", "ec2-west", count=2)
    ended = _launch(ec2_endpoint, "eu-west-1", "ec2-west-terminated")
    boto3.client("ec2", region_name="eu-west-1", endpoint_url=ec2_endpoint).terminate_instances(InstanceIds=ended)
    source = AwsEc2Source(
        name="aws", kind="aws_ec2", regions=["us-east-1", "eu-west-1"], endpoint_url=ec2_endpoint, page_size=5
    )

    records = await scan(source)

    by_key = {r.key: r for r in records}
    assert set(east + west) <= set(by_key)  # 7 in us-east-1 take two pages of 5
    assert ended[0] not in by_key  # terminated instances are gone, not live
    record = by_key[west[0]]
    assert (record.name, record.source, record.ci_class) == ("ec2-west", "aws", "cmdb_ci_server")
    assert record.ip and record.os == "Linux/UNIX"
    assert record.attributes["region"] == "eu-west-1" and record.attributes["instance_type"] == "t3.micro"
    assert record.attributes["object_id"] == west[0]


async def test_an_unreachable_ec2_endpoint_fails_the_source(aws_credentials: None) -> None:
    source = AwsEc2Source(name="aws", kind="aws_ec2", regions=["us-east-1"], endpoint_url="http://127.0.0.1:9")
    with pytest.raises(SourceError, match="us-east-1"):
        await scan(source)


# -- kubernetes ------------------------------------------------------------------------------------------------------
async def test_kubectl_nodes_json_is_parsed_from_a_file() -> None:
    records = await scan(KubernetesSource(name="k8s", kind="kubernetes", file=str(KUBECTL_JSON)))

    assert [r.name for r in records] == ["k8s-worker-a", "k8s-worker-b"]
    a = records[0]
    assert (a.key, a.ip, a.os, a.ci_class) == (
        "5f0c1a7e-3b1d-4c8e-9a51-0c6f1e2d7a01",
        "10.80.1.11",
        "Amazon Linux 2023.6.20241010",
        "cmdb_ci_linux_server",
    )
    assert a.attributes["kernel_release"] == "6.1.112-124.190.amzn2023.x86_64"
    assert a.attributes["instance_type"] == "m6i.xlarge"
    assert a.attributes["provider_id"] == "aws:///eu-west-1a/i-0a1b2c3d4e5f60001"


async def test_kubectl_is_run_with_its_context(tmp_path: Path) -> None:
    # A stand-in kubectl that prints the saved JSON only when called as `get nodes -o json --context prod`.
    fake = tmp_path / "kubectl.py"
    fake.write_text(
        "import sys\n"
        "assert sys.argv[1:] == ['get', 'nodes', '-o', 'json', '--context', 'prod'], sys.argv\n"
        f"sys.stdout.write(open({str(KUBECTL_JSON)!r}).read())\n"
    )
    source = KubernetesSource(name="k8s", kind="kubernetes", kubectl=[sys.executable, str(fake)], context="prod")
    assert len(await scan(source)) == 2


async def test_a_failing_kubectl_fails_the_source() -> None:
    source = KubernetesSource(
        name="k8s", kind="kubernetes", kubectl=[sys.executable, "-c", "import sys; sys.exit('Unable to connect')"]
    )
    with pytest.raises(SourceError, match="Unable to connect"):
        await scan(source)


# -- command ---------------------------------------------------------------------------------------------------------
async def test_a_command_printing_json_is_mapped_field_by_field(tmp_path: Path) -> None:
    state = {
        "resources": [{"values": {"hostname": "pve-vm-1", "vmid": 101, "net": [{"ip": "10.1.1.1"}], "ostype": "l26"}}]
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    source = CommandSource.model_validate(
        {
            "name": "proxmox",
            "kind": "command",
            "argv": [
                sys.executable,
                "-c",
                "import sys; sys.stdout.write(open(sys.argv[1]).read())",
                str(tmp_path / "state.json"),
            ],
            "items_path": "resources",
            "mapping": {
                "name": "values.hostname",
                "key": "values.vmid",
                "ip": "values.net.0.ip",
                "os": "values.ostype",
                "attributes": {"object_id": "values.vmid"},
            },
        }
    )
    (record,) = await scan(source)
    assert (record.name, record.key, record.ip, record.os, record.attributes) == (
        "pve-vm-1",
        "101",
        "10.1.1.1",
        "l26",
        {"object_id": "101"},
    )


async def test_a_mapping_that_finds_no_name_fails_loudly_instead_of_reporting_everything_missing() -> None:
    source = CommandSource(name="bad", kind="command", argv=[sys.executable, "-c", 'print(\'[{"host": "a"}]\')'])
    with pytest.raises(SourceError, match="no name") as failure:
        await scan(source)
    assert failure.value.misconfigured


def test_pick_walks_dotted_paths_through_dicts_and_lists() -> None:
    item = {"a": {"b": [{"c": 1}]}}
    assert pick(item, "a.b.0.c") == 1
    assert pick(item, "a.b.1.c") is None and pick(item, "a.x") is None and pick(item, "") == item


# -- http ------------------------------------------------------------------------------------------------------------
async def test_the_sandbox_fleet_is_an_http_source_with_the_seeded_drift(sandbox_url: str) -> None:
    source = HttpSource.model_validate(
        {
            "name": "fleet",
            "kind": "http",
            "url": f"{sandbox_url}/fleet/hosts",
            "key_field": "serial_number",
            "mapping": {"key": "serial_number", "attributes": {"os_version": "os_version"}},
        }
    )
    records = {r.name: r for r in await scan(source)}
    assert set(SEED_FLEET["unlisted"]) <= set(records)
    assert not set(SEED_FLEET["gone"]) & set(records)
    assert records["edge-cache-01"].key == "SN-EDGE-CACHE-01" and records["win-build-01"].ci_class == "cmdb_ci_server"
    assert records["fleet-01"].ip == "10.40.1.11"


async def test_an_http_source_sends_the_workers_token_and_fails_on_an_error_status(
    sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The token is one of the worker's named secrets (CHANGELOOP_SECRET_NAMES); `bearer_token_env` still names it.
    secrets = NamedSecrets(["RECONCILE_TEST_TOKEN"], {"RECONCILE_TEST_TOKEN": "t0ken-never-issued"})
    # The Table API wants basic auth or OAuth: a bearer it never issued is a 401, and so a misconfigured source.
    source = HttpSource(
        name="sn", kind="http", url=f"{sandbox_url}/api/now/table/cmdb_ci", bearer_token_env="RECONCILE_TEST_TOKEN"
    )
    with pytest.raises(SourceError, match="401") as failure:
        await scan(source, secrets)
    assert failure.value.misconfigured
    # A variable the worker does not list is never read, whatever the config names.
    monkeypatch.setenv("RECONCILE_OTHER_TOKEN", "t0ken-of-the-worker")
    other = source.model_copy(update={"bearer_token": SecretRef(secret="RECONCILE_OTHER_TOKEN")})
    with pytest.raises(SourceError, match="not one of the worker's secrets"):
        await scan(other, secrets)


def test_a_credential_in_http_headers_is_refused_because_the_config_lands_in_history() -> None:
    with pytest.raises(ValueError, match="name a secret"):
        HttpSource(name="x", kind="http", url="http://127.0.0.1/", headers={"Authorization": "Bearer abc"})
