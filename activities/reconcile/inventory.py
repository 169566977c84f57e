"""Reality sources: live infrastructure turned into `InventoryRecord`s, one shape whatever the source.

- `aws_ec2`: boto3 `describe_instances`, every page, every configured region (in parallel threads: boto3 is sync);
- `kubernetes`: the nodes of `kubectl get nodes -o json`, or a file holding that JSON;
- `command`: any argv that prints a JSON list (Terraform state, Proxmox, a script), through a field mapping;
- `http`: a JSON endpoint, through the same mapping;
- `proxmox`: Proxmox VE's cluster resources with an API token (activities/reconcile/proxmox.py).

A source either answers completely or raises `SourceError`: a half-read inventory would turn every host it did not
reach into a "missing" CI, so there is no partial success.

Credentials are the worker's named secrets (config/secrets.py), filled in here; commands get a minimal environment
plus their declared `env` (activities/processes.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from activities.heartbeat import paced_heartbeats
from activities.processes import run_process
from config.reconcile import AwsEc2Source, CommandSource, FieldMapping, HttpSource, KubernetesSource, Source
from config.secrets import NamedSecrets, SecretsError, Value
from workflows.reconcile.models import InventoryRecord


class SourceError(Exception):
    """The source could not be read completely; `misconfigured` when no retry can help."""

    def __init__(self, message: str, *, misconfigured: bool = False) -> None:
        super().__init__(message)
        self.misconfigured = misconfigured


def pick(item: Any, path: str) -> Any:
    """The value at a dotted path (`tags.Name`, `addresses.0.address`), or None when any step is absent."""
    if not path:
        return item
    current = item
    for step in path.split("."):
        if isinstance(current, dict):
            current = current.get(step)
        elif isinstance(current, list) and step.isdigit() and int(step) < len(current):
            current = current[int(step)]
        else:
            return None
        if current is None:
            return None
    return current


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def records_from_items(items: Any, mapping: FieldMapping, source: str, default_class: str) -> list[InventoryRecord]:
    """Map a JSON list through a field mapping; an item without a name is refused, so a wrong mapping fails loudly
    instead of reporting the whole CMDB missing."""
    if not isinstance(items, list):
        raise SourceError(f"{source}: expected a JSON list, got {type(items).__name__}", misconfigured=True)
    records = []
    for index, item in enumerate(items):
        name = _text(pick(item, mapping.name)).strip()
        if not name:
            raise SourceError(f"{source}: item {index} has no name at {mapping.name!r}", misconfigured=True)
        attributes = {field: _text(pick(item, path)) for field, path in mapping.attributes.items()}
        records.append(
            InventoryRecord(
                name=name,
                ci_class=_text(pick(item, mapping.ci_class)) or default_class,
                key=_text(pick(item, mapping.key)),
                ip=_text(pick(item, mapping.ip)),
                os=_text(pick(item, mapping.os)),
                source=source,
                attributes={k: v for k, v in attributes.items() if v},
            )
        )
    return records


def _parse_json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{what} did not print JSON: {exc}", misconfigured=True) from exc


# -- aws_ec2 -------------------------------------------------------------------------------------------------------
def _instance_record(instance: dict[str, Any], region: str, source: AwsEc2Source) -> InventoryRecord:
    tags = {t.get("Key", ""): t.get("Value", "") for t in instance.get("Tags", [])}
    platform = instance.get("PlatformDetails") or ("Windows" if instance.get("Platform") == "windows" else "Linux/UNIX")
    attributes = {
        "object_id": instance["InstanceId"],
        "instance_type": instance.get("InstanceType", ""),
        "region": region,
        "availability_zone": instance.get("Placement", {}).get("AvailabilityZone", ""),
        "image_id": instance.get("ImageId", ""),
        "state": instance.get("State", {}).get("Name", ""),
        "public_ip": instance.get("PublicIpAddress", ""),
        "fqdn": instance.get("PrivateDnsName", ""),
    }
    return InventoryRecord(
        name=tags.get("Name") or instance["InstanceId"],
        ci_class=source.ci_class,
        key=instance["InstanceId"],
        ip=instance.get("PrivateIpAddress", ""),
        os=platform,
        source=source.name,
        attributes={k: v for k, v in attributes.items() if v},
    )


def _ec2_region(source: AwsEc2Source, region: str) -> list[InventoryRecord]:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    try:
        session = boto3.session.Session(profile_name=source.profile, region_name=region)
        client = session.client("ec2", endpoint_url=source.endpoint_url, config=config)
        pages = client.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": source.states}],
            PaginationConfig={"PageSize": source.page_size},
        )
        return [
            _instance_record(instance, region, source)
            for page in pages
            for reservation in page.get("Reservations", [])
            for instance in reservation.get("Instances", [])
        ]
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"{source.name}: EC2 {region}: {exc}") from exc


def _filled(secrets: NamedSecrets, values: Mapping[str, Value], what: str) -> dict[str, str]:
    try:
        return secrets.fill(values)
    except SecretsError as exc:
        raise SourceError(f"{what}: {exc}", misconfigured=True) from None


async def scan_aws_ec2(source: AwsEc2Source, secrets: NamedSecrets) -> list[InventoryRecord]:
    per_region = await asyncio.gather(*(asyncio.to_thread(_ec2_region, source, r) for r in source.regions))
    return [record for records in per_region for record in records]


# -- kubernetes ----------------------------------------------------------------------------------------------------
def nodes_from_kubectl(document: Any, source: KubernetesSource) -> list[InventoryRecord]:
    """`kubectl get nodes -o json` → one record per node, keyed by the node's uid."""
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise SourceError(f"{source.name}: not the JSON of `kubectl get nodes -o json`", misconfigured=True)
    records = []
    for node in document["items"]:
        meta, status = node.get("metadata", {}), node.get("status", {})
        info = status.get("nodeInfo", {})
        addresses = {a.get("type"): a.get("address", "") for a in status.get("addresses", [])}
        labels = meta.get("labels", {})
        attributes = {
            "kernel_release": info.get("kernelVersion", ""),
            "kubelet_version": info.get("kubeletVersion", ""),
            "architecture": info.get("architecture", ""),
            "provider_id": node.get("spec", {}).get("providerID", ""),
            "instance_type": labels.get("node.kubernetes.io/instance-type", ""),
            "fqdn": addresses.get("Hostname", ""),
        }
        records.append(
            InventoryRecord(
                name=meta["name"],
                ci_class=source.ci_class,
                key=meta.get("uid", ""),
                ip=addresses.get("InternalIP", ""),
                os=info.get("osImage", ""),
                source=source.name,
                attributes={k: v for k, v in attributes.items() if v},
            )
        )
    return records


async def scan_kubernetes(source: KubernetesSource, secrets: NamedSecrets) -> list[InventoryRecord]:
    if source.file:
        try:
            text = await asyncio.to_thread(Path(source.file).read_text)
        except OSError as exc:
            raise SourceError(f"{source.name}: cannot read {source.file}: {exc}", misconfigured=True) from exc
    else:
        argv = [*source.kubectl, "get", "nodes", "-o", "json"]
        argv += ["--context", source.context] if source.context else []
        env = _filled(secrets, source.env, source.name)
        text = await run_argv(argv, source.timeout.total_seconds(), source.name, env)
    return nodes_from_kubectl(_parse_json(text, source.name), source)


# -- command -------------------------------------------------------------------------------------------------------
async def run_argv(argv: list[str], seconds: float, what: str, env: Mapping[str, str] | None = None) -> str:
    """Run an argv (never a shell) and answer its stdout; a non-zero exit or a timeout is a SourceError."""
    try:
        finished = await run_process(argv, what, within=seconds, separate_stderr=True, env=env)
    except OSError as exc:
        raise SourceError(f"{what}: cannot run {argv[0]!r}: {exc}", misconfigured=True) from exc
    except TimeoutError as exc:
        raise SourceError(f"{what}: {argv[0]} did not finish within {seconds:.0f} s") from exc
    if finished.returncode != 0:
        tail = finished.errors.decode(errors="replace").strip()[-500:]
        raise SourceError(f"{what}: {argv[0]} exited {finished.returncode}: {tail}")
    return finished.output.decode()


async def scan_command(source: CommandSource, secrets: NamedSecrets) -> list[InventoryRecord]:
    env = _filled(secrets, source.env, source.name)
    text = await run_argv(source.argv, source.timeout.total_seconds(), source.name, env)
    items = pick(_parse_json(text, source.name), source.items_path)
    return records_from_items(items, source.mapping, source.name, source.ci_class)


# -- http ----------------------------------------------------------------------------------------------------------
async def scan_http(source: HttpSource, secrets: NamedSecrets) -> list[InventoryRecord]:
    headers = _filled(secrets, source.headers, source.name)
    if source.bearer_token:
        token = _filled(secrets, {"Authorization": source.bearer_token}, source.name)["Authorization"]
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with httpx.AsyncClient(timeout=source.timeout.total_seconds()) as http:
            response = await http.get(source.url, headers=headers)
    except httpx.HTTPError as exc:
        raise SourceError(f"{source.name}: GET {source.url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise SourceError(
            f"{source.name}: GET {source.url} answered {response.status_code}",
            misconfigured=response.status_code in (400, 401, 403, 404),
        )
    items = pick(_parse_json(response.content, source.name), source.items_path)
    return records_from_items(items, source.mapping, source.name, source.ci_class)


async def _scan_proxmox(source: Any, secrets: NamedSecrets) -> list[InventoryRecord]:
    from activities.reconcile.proxmox import scan_proxmox  # it imports SourceError from here

    return await scan_proxmox(source, secrets)


_SCANNERS: dict[str, Callable[[Any, NamedSecrets], Awaitable[list[InventoryRecord]]]] = {
    "aws_ec2": scan_aws_ec2,
    "kubernetes": scan_kubernetes,
    "command": scan_command,
    "http": scan_http,
    "proxmox": _scan_proxmox,
}


async def scan(source: Source, secrets: NamedSecrets | None = None) -> list[InventoryRecord]:
    """Every live resource the source knows of, or SourceError."""
    return await _SCANNERS[source.kind](source, secrets or NamedSecrets([], {}))


async def scan_in_activity(source: Source, secrets: NamedSecrets) -> list[InventoryRecord]:
    """`scan` inside an activity (the central pipeline's or a site worker's): heartbeats while the source answers,
    and a SourceError fails the activity, for good when the source is misconfigured (no retry can help)."""
    try:
        async with paced_heartbeats():
            return await scan(source, secrets)
    except SourceError as exc:
        raise ApplicationError(
            str(exc),
            type="SourceMisconfigured" if exc.misconfigured else "SourceScanFailed",
            non_retryable=exc.misconfigured,
        ) from exc
