"""The `proxmox` reality source: Proxmox VE's cluster-wide resource index, one record per VM and container.

`GET <url>/api2/json/cluster/resources?type=vm` answers `{"data": [...]}`, one item per guest of every node: `id`
(`qemu/101`), `type` (`qemu` or `lxc`), `vmid`, `name`, `node`, `status` (`running`, `stopped`), `template` (1 for
a template), `maxcpu`, `maxmem` (bytes), `pool`, `tags` (`;`-separated), `hastate`. The call is authenticated with an
API token, `Authorization: PVEAPIToken=<user>@<realm>!<tokenid>=<secret>`: the token's ID is in the config, its
secret is a named secret of the worker (`token_secret: {secret: NAME}`, listed in CHANGELOOP_SECRET_NAMES): never in
the config, in workflow history or in an error message.

The index lists only the guests the token may audit (VM.Audit): a token that sees part of the cluster would report
the rest of it missing, so give it PVEAuditor on `/` (README "Proxmox source"). A guest's IP address and OS are not
in the index (they need the guest agent, per VM), so records carry neither and drift compares neither.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from activities.reconcile.inventory import SourceError
from config.reconcile import ProxmoxSource
from config.secrets import NamedSecrets, SecretsError
from workflows.reconcile.models import InventoryRecord

RESOURCES = "/api2/json/cluster/resources"
GUEST_TYPES = ("qemu", "lxc")


def authorization(source: ProxmoxSource, secrets: NamedSecrets) -> str:
    """The token header; the secret is one of the worker's named secrets (CHANGELOOP_SECRET_NAMES)."""
    try:
        secret = secrets.value(source.token_secret)
    except SecretsError as exc:
        raise SourceError(f"{source.name}: {exc}", misconfigured=True) from None
    return f"PVEAPIToken={source.token_id}={secret}"


def _verify(source: ProxmoxSource) -> ssl.SSLContext | bool:
    if not source.ca_file:
        return source.verify_tls
    try:
        return ssl.create_default_context(cafile=source.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise SourceError(f"{source.name}: cannot use ca_file {source.ca_file}: {exc}", misconfigured=True) from exc


def guest_record(item: dict[str, Any], source: ProxmoxSource) -> InventoryRecord:
    vmid = str(item.get("vmid", "")).strip()
    if not vmid:
        raise SourceError(f"{source.name}: resource {item.get('id')!r} has no vmid", misconfigured=True)
    kind = str(item.get("type", ""))
    maxmem = item.get("maxmem")
    attributes = {
        "object_id": vmid,
        "node": item.get("node"),
        "status": item.get("status"),
        "guest_type": kind,
        "pool": item.get("pool"),
        "tags": item.get("tags"),
        "hastate": item.get("hastate"),
        "cpu_count": item.get("maxcpu"),
        "ram": int(maxmem) // (1024 * 1024) if isinstance(maxmem, int | float) else None,  # MB, as the CMDB keeps it
    }
    return InventoryRecord(
        # Proxmox names a guest created without one "VM <vmid>" in its UI; the index then has no name.
        name=str(item.get("name") or f"{kind or 'vm'}-{vmid}"),
        ci_class=source.ci_class,
        key=vmid,
        source=source.name,
        attributes={k: str(v) for k, v in attributes.items() if v not in (None, "")},
    )


def guests(document: Any, source: ProxmoxSource) -> list[InventoryRecord]:
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise SourceError(f"{source.name}: not the answer of {RESOURCES} (no data list)", misconfigured=True)
    return [
        guest_record(item, source)
        for item in data
        if isinstance(item, dict)
        and item.get("type") in GUEST_TYPES
        and (source.include_templates or not item.get("template"))
    ]


async def scan_proxmox(source: ProxmoxSource, secrets: NamedSecrets) -> list[InventoryRecord]:
    url = source.url.rstrip("/") + RESOURCES
    verify = _verify(source)
    try:
        async with httpx.AsyncClient(timeout=source.timeout.total_seconds(), verify=verify) as http:
            response = await http.get(
                url, params={"type": "vm"}, headers={"Authorization": authorization(source, secrets)}
            )
    except httpx.HTTPError as exc:
        # The message names the URL and the error class, never the header that carries the secret.
        raise SourceError(f"{source.name}: GET {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        # 401: the token is wrong, expired or revoked; 403: it lacks the privilege; no retry mends either.
        raise SourceError(
            f"{source.name}: GET {url} answered {response.status_code} {response.reason_phrase}",
            misconfigured=response.status_code in (400, 401, 403, 404),
        )
    try:
        document = response.json()
    except ValueError as exc:
        raise SourceError(f"{source.name}: {url} did not answer JSON: {exc}", misconfigured=True) from exc
    return guests(document, source)
