"""A local stand-in for Proxmox VE's API, on 127.0.0.1: `GET /api2/json/cluster/resources[?type=vm]` answered in the
documented shape (`{"data": [...]}`, one item per guest, node and storage), only to a request that carries the
configured API token (`Authorization: PVEAPIToken=<user>@<realm>!<tokenid>=<secret>`), as a real cluster does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

TOKEN_ID = "changeloop@pve!inventory"
TOKEN_SECRET = "4f1c2a9e-6b7d-4e21-9a0c-3d5e7f9b1a2c"


def guest(vmid: int, name: str, node: str = "pve1", kind: str = "qemu", **extra: Any) -> dict[str, Any]:
    item = {
        "id": f"{kind}/{vmid}",
        "type": kind,
        "vmid": vmid,
        "name": name,
        "node": node,
        "status": "running",
        "template": 0,
        "maxcpu": 2,
        "maxmem": 4 * 1024**3,
        "maxdisk": 32 * 1024**3,
        "uptime": 3600,
    }
    return item | extra


class ProxmoxStandIn:
    """The cluster's guests are `guests`; `requests` records each (path, query, authorization) it was asked."""

    def __init__(self, guests: list[dict[str, Any]]) -> None:
        self.guests = guests
        self.requests: list[tuple[str, dict[str, list[str]], str]] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                authorization = self.headers.get("Authorization", "")
                standin.requests.append((url.path, query, authorization))
                if authorization != f"PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}":
                    self._answer(401, {"data": None}, reason="authentication failure")
                elif url.path != "/api2/json/cluster/resources":
                    self._answer(501, {"data": None}, reason=f"Method 'GET {url.path}' not implemented")
                else:
                    self._answer(200, {"data": standin.resources(query.get("type", [""])[0])})

            def _answer(self, status: int, body: Any, reason: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status, reason)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def resources(self, kind: str) -> list[dict[str, Any]]:
        """`type=vm` is every guest (qemu and lxc); without a type the index also holds the nodes and storages."""
        if kind == "vm":
            return list(self.guests)
        nodes = sorted({g["node"] for g in self.guests})
        others = [{"id": f"node/{n}", "type": "node", "node": n, "status": "online"} for n in nodes]
        others += [{"id": f"storage/{n}/local", "type": "storage", "node": n, "storage": "local"} for n in nodes]
        return [*self.guests, *others]

    def __enter__(self) -> ProxmoxStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
