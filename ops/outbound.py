"""Where the worker may call out to: flow callbacks and HTTP runbook steps reach only hosts the operator allows.

CHANGELOOP_OUTBOUND_ALLOW lists host names (`api.example.com`, `*.example.com`) and addresses or networks
(`10.20.0.0/16`, `127.0.0.1`). A target passes when every address its name resolves to is either inside a listed
network, or public while the name itself is listed. Loopback, link-local (169.254.0.0/16: the cloud metadata
service), private, shared, reserved and multicast addresses pass only inside a listed network. An unlisted name is
refused without a DNS query, so refusals answer nothing about the internal network.

The request then goes to the address that was checked (the name rides in the Host header and as the TLS server
name, so certificates are verified as usual): a name that resolves to a public address at check time and to
127.0.0.1 a moment later (DNS rebinding) cannot steer the call. Redirects are never followed.

Refusals carry no detail about the target beyond "not allowed": no address, no status code, no body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(Exception):
    """The target is not allowed (or not a usable http(s) URL). The message is safe to show the caller."""


class OutboundUnreachable(Exception):
    """An allowed name did not resolve: maybe for a while. The message is safe to show the caller."""


def _special(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _special(address.ipv4_mapped)
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or not address.is_global
    )


@dataclass(frozen=True)
class Allowlist:
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # "*.example.com" -> ".example.com"
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            elif "/" in entry or ":" in entry or "*" in entry or " " in entry:
                raise ValueError(f"CHANGELOOP_OUTBOUND_ALLOW: {raw!r} is neither a host name nor an address/CIDR")
            else:
                names.add(entry)
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def name_listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    def address_listed(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == net.version and address in net for net in self.networks)


@dataclass(frozen=True)
class Target:
    """A checked destination: the URL with the checked address in place of the name, and what restores the name."""

    url: str
    host_header: str
    server_name: str | None  # TLS server name (https): the certificate is verified against the name

    def request_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"headers": {"Host": self.host_header}}
        if self.server_name:
            options["extensions"] = {"sni_hostname": self.server_name}
        return options


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _addresses(host: str, port: int) -> list[Address]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OutboundUnreachable(f"{host} does not resolve now") from exc
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


async def check(url: str, allow: Allowlist) -> Target:
    """The checked target of `url`, or OutboundRefused / OutboundUnreachable."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused("not a usable URL") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise OutboundRefused("only http(s) URLs without credentials may be called")
    literal = _literal(host)
    refused = OutboundRefused(f"{host} is not an allowed destination (CHANGELOOP_OUTBOUND_ALLOW)")
    if literal is None and not allow.name_listed(host):
        raise refused  # no DNS query for a name nobody listed
    addresses = [literal] if literal is not None else await _addresses(host, port)
    if not addresses:
        raise OutboundUnreachable(f"{host} does not resolve now")
    for address in addresses:
        if allow.address_listed(address):
            continue
        if _special(address) or literal is not None:
            raise refused
    chosen = addresses[0]
    shown = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    host_header = parts.netloc.rsplit("@", 1)[-1]
    server_name = host if parts.scheme == "https" and literal is None else None
    return Target(urlunsplit(parts._replace(netloc=netloc)), host_header, server_name)


async def send(http: httpx.AsyncClient, method: str, url: str, allow: Allowlist, **options: Any) -> httpx.Response:
    """One request to an allowed target, connected to the address that was checked; redirects are not followed."""
    target = await check(url, allow)
    extra = target.request_options()
    headers = {**(options.pop("headers", None) or {}), **extra.pop("headers")}
    return await http.request(method, target.url, headers=headers, follow_redirects=False, **options, **extra)
