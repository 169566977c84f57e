"""The demo instance, loaded from sandbox/seed.yaml into an empty database (and again by `POST /sandbox/reset`).

sys_ids are derived from table + name (`seed_sys_id`), so they are the same in every run and every test.

| table | records (stable names) |
|---|---|
| sys_user | admin, changeloop.integration, alice.ops, bob.sre, carol.cab, dave.data, mallory (on no list) |
| sys_user_group | Payments SRE, Web Platform, Data Platform, Service Desk, Change Advisory Board |
| sys_user_grmember | CAB: carol.cab, alice.ops; Payments SRE: bob.sre; Web Platform: alice.ops; Data Platform: dave.data; |
|  | Service Desk: carol.cab |
| cmn_schedule (+ spans) | "Legacy batch business-hours freeze" (blackout, weekdays 08-18 UTC, only CI legacy-batch), |
|  | "Wiki maintenance window" (maintenance, daily 02-04 UTC, internal-wiki's maintenance_schedule) |
| cmn_location | Frankfurt DC1, Dublin DC2 |
| cmdb_rel_type | "Depends on::Used by", "Runs on::Runs" |
| cmdb_ci_appl | payments-api (1 - most critical, support Payments SRE), web-storefront (2, Web Platform), |
|  | reporting-etl (3, Data Platform), fleet (3, Web Platform), internal-wiki (4, no support_group, |
|  | managed_by_group Service Desk), legacy-batch (4, neither group) |
| cmdb_ci_linux_server | pay-web-01..04, web-01..03, data-01..02, fleet-01..fleet-20, wiki-01, batch-01, batch-02 (retired, 7) |
| cmdb_ci_server | win-report-01 (Windows, runs reporting-etl) |
| cmdb_rel_ci | app "Runs on::Runs" each of its servers (parent = app, child = server); |
|  | web-storefront and reporting-etl "Depends on::Used by" payments-api |
| std_change_producer_version | Restart application service, Patch Linux servers, Run maintenance steps (each with its |
|  | std_change_record_producer and sys_template of the same name: the template's field values) |
| change_request | CHG0030001 standard, Scheduled, approved, "Restart application service" on payments-api; |
|  | CHG0030002 normal, Assess, requested, on reporting-etl (a requested approval for dave.data); |
|  | CHG0030003 standard, Closed (successful), "Patch Linux servers" on fleet |

Servers inherit support_group / managed_by_group / location from their application, have install_status 1
(except batch-02), operational_status 1, ip_address `<subnet>.<n+10>`, fqdn `<name>.example.internal`.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sandbox import approvals
from sandbox.change_model import ChangeState
from sandbox.instance import Instance
from sandbox.tables import get_table

SEED_USER = "admin"


def seed_sys_id(table: str, name: str) -> str:
    """The fixed sys_id of a seeded record: tests may compute it instead of looking it up."""
    return hashlib.md5(f"{table}:{name}".encode(), usedforsecurity=False).hexdigest()


def read_seed(path: Path | None = None) -> dict[str, Any]:
    text = path.read_text() if path else resources.files("sandbox").joinpath("seed.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


class _Loader:
    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.counts: dict[str, int] = {}

    def add(self, table: str, key: str, body: dict[str, Any], *, id_table: str | None = None) -> str:
        sys_id = seed_sys_id(id_table or table, key)
        self.instance.create(table, body, SEED_USER, rules=False, sys_id=sys_id)
        self.counts[table] = self.counts.get(table, 0) + 1
        return sys_id

    @staticmethod
    def ref(table: str, name: str | None) -> str:
        return seed_sys_id(table, name) if name else ""


def load_seed(instance: Instance, path: Path | None = None) -> dict[str, int]:
    """Load the demo records; answers how many records went into each table."""
    data = read_seed(path)
    loader = _Loader(instance)
    ref = loader.ref
    for location in data.get("locations", []):
        loader.add("cmn_location", location["name"], location)
    for user in data.get("users", []):
        name = f"{user.get('first_name', '')} {user.get('last_name', '')}".strip()
        loader.add("sys_user", user["user_name"], {**user, "name": name, "active": "true"})
    for group in data.get("groups", []):
        body = {**group, "manager": ref("sys_user", group.get("manager")), "active": "true"}
        loader.add("sys_user_group", group["name"], body)
    for group, members in data.get("group_members", {}).items():
        for user in members:
            body = {"group": ref("sys_user_group", group), "user": ref("sys_user", user)}
            loader.add("sys_user_grmember", f"{group}|{user}", body)
    for schedule in data.get("schedules", []):
        _load_schedule(loader, schedule)
    for rel_type in data.get("rel_types", []):
        loader.add("cmdb_rel_type", rel_type["name"], rel_type)
    for app in data.get("applications", []):
        _load_application(loader, app)
    for dep in data.get("dependencies", []):
        _relate(loader, dep["parent"], dep["child"], "Depends on::Used by")
    for template in data.get("templates", []):
        _load_template(loader, template)
    for change in data.get("changes", []):
        _load_change(loader, change)
    return loader.counts


def _load_schedule(loader: _Loader, schedule: dict[str, Any]) -> None:
    body = {k: v for k, v in schedule.items() if k not in ("class", "spans")}
    sys_id = loader.add(schedule.get("class", "cmn_schedule"), schedule["name"], body, id_table="cmn_schedule")
    for span in schedule.get("spans", []):
        loader.add("cmn_schedule_span", f"{schedule['name']}|{span['name']}", {**span, "schedule": sys_id})


def _template_values(template: dict[str, Any]) -> dict[str, str]:
    """The change fields a template sets, references resolved to the seed's sys_ids."""
    references = get_table("change_request").references  # type: ignore[union-attr]
    values = {"type": "standard", "category": template["category"], "short_description": template["short_description"]}
    for name, value in (template.get("values") or {}).items():
        values[name] = seed_sys_id(references[name], value) if name in references else str(value)
    return values


def _load_template(loader: _Loader, template: dict[str, Any]) -> None:
    name, values = template["name"], _template_values(template)
    # sys_template.template is an encoded query string of field=value pairs (values never contain "^").
    encoded = "^".join(f"{field}={value}" for field, value in values.items())
    common = {"name": name, "short_description": template["short_description"]}
    loader.add("sys_template", name, {**common, "table": "change_request", "template": encoded, "active": "true"})
    producer_body = {**common, "template": loader.ref("sys_template", name), "active": "true"}
    producer = loader.add("std_change_record_producer", name, producer_body)
    version = {**common, "version": "1", "std_change_producer": producer, "template_value": encoded}
    loader.add("std_change_producer_version", name, {**version, "category": template["category"]})


def _ci_common(app: dict[str, Any]) -> dict[str, str]:
    ref = _Loader.ref
    return {
        "support_group": ref("sys_user_group", app.get("support_group")),
        "managed_by_group": ref("sys_user_group", app.get("managed_by_group")),
        "location": ref("cmn_location", app.get("location")),
        "operational_status": "1",
        "discovery_source": "ServiceNow",
    }


def _load_application(loader: _Loader, app: dict[str, Any]) -> None:
    common = _ci_common(app)
    body = {
        **common,
        "name": app["name"],
        "busines_criticality": app["busines_criticality"],
        "maintenance_schedule": _Loader.ref("cmn_schedule", app.get("maintenance_schedule")),
        "install_status": "1",
        "short_description": f"{app['name']} application",
        "version": "1.0",
    }
    loader.add("cmdb_ci_appl", app["name"], body, id_table="cmdb_ci")
    spec = app.get("servers") or {}
    retired = set(spec.get("retired", []))
    for n in range(1, int(spec.get("count", 0)) + 1):
        name = f"{spec['prefix']}{n:02d}"
        server = {
            "name": name,
            "ip_address": f"{spec['subnet']}.{n + 10}",
            "os": spec["os"],
            "os_version": spec["os_version"],
        }
        _load_server(loader, app, common, server, retired)
    for server in app.get("extra_servers", []):
        _load_server(loader, app, common, server, retired)


def _load_server(
    loader: _Loader, app: dict[str, Any], common: dict[str, str], server: dict[str, Any], retired: set[str]
) -> None:
    name = server["name"]
    body = {
        **common,
        **{k: v for k, v in server.items() if k != "server_class"},
        "install_status": "7" if name in retired else "1",
        "operational_status": "6" if name in retired else "1",
        "fqdn": f"{name}.example.internal",
        "serial_number": f"SN-{seed_sys_id('serial', name)[:10].upper()}",
        "object_id": f"i-{seed_sys_id('object', name)[:17]}",
        "u_site": app.get("location", ""),
        "short_description": f"{app['name']} server",
    }
    loader.add(server.get("server_class", "cmdb_ci_linux_server"), name, body, id_table="cmdb_ci")
    _relate(loader, app["name"], name, "Runs on::Runs")


def _relate(loader: _Loader, parent: str, child: str, rel_type: str) -> None:
    body = {
        "parent": seed_sys_id("cmdb_ci", parent),
        "child": seed_sys_id("cmdb_ci", child),
        "type": seed_sys_id("cmdb_rel_type", rel_type),
    }
    loader.add("cmdb_rel_ci", f"{parent}|{rel_type}|{child}", body)


def _load_change(loader: _Loader, change: dict[str, Any]) -> None:
    ref = loader.ref
    body = {
        **{k: v for k, v in change.items() if k not in ("number", "template")},
        "std_change_producer_version": ref("std_change_producer_version", change.get("template")),
        "cmdb_ci": ref("cmdb_ci", change.get("cmdb_ci")),
        "assignment_group": ref("sys_user_group", change.get("assignment_group")),
        "requested_by": ref("sys_user", change.get("requested_by")),
        "active": "false" if change.get("state") in ("3", "4") else "true",
    }
    sys_id = loader.add("change_request", change["number"], body)
    stored = loader.instance.lookup("change_request", sys_id) or {}
    # Numbers come from the instance's counter so the next POST continues the sequence; the YAML states the
    # number for readers, and this check keeps the two in step.
    if stored.get("number") != change["number"]:
        raise ValueError(f"seed change {change['number']} was numbered {stored.get('number')}: keep seed.yaml in order")
    if stored.get("state") in (ChangeState.ASSESS, ChangeState.AUTHORIZE) and stored.get("approval") == "requested":
        # A change seeded mid-approval has its stage's approval records, as if approval had been requested.
        created = approvals.start_stage(loader.instance, stored, stored["state"])
        loader.counts["sysapproval_approver"] = loader.counts.get("sysapproval_approver", 0) + len(created)
