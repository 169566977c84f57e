#!/usr/bin/env python3
"""Build changeloop_update_set.xml from the Business Rule scripts next to this file (Python standard library only).

    python deploy/servicenow/build_update_set.py          # write changeloop_update_set.xml
    python deploy/servicenow/build_update_set.py --check  # exit 1 when the XML is not what the scripts make

The XML is a ServiceNow update set in its unload format (what "Export to XML" writes and "Import Update Set from
XML" reads: application-development/system-update-sets/t_SaveAnUpdateSetAsAnXMLFile.md): one
`sys_remote_update_set` and one `sys_update_xml` per record, whose `payload` is the record itself as XML. It holds:
- the four Business Rules (`sys_script`), each script byte for byte from its `.js` file, the rule's fields from the
  `@name/@table/@when/@order/@insert/@update/@condition` tags in the script's header comment;
- the three system properties (`sys_properties`), values empty: the admin fills them in after the commit;
- the REST message `changeloop shim` (`sys_rest_message`) with its HTTP method `post` (`sys_rest_message_fn`),
  through which the rules send (api-reference/web-services/t_ConfiguringARESTMessage.md).
sys_ids are derived from names and the dates are fixed, so the file changes only when a script or this file does.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "changeloop_update_set.xml"
NAME = "changeloop"
RECORDED = "2025-01-01 00:00:00"  # fixed: the file must not change unless its content does
DESCRIPTION = (
    "changeloop: Business Rules that notify the changeloop starter shim (change approved, approval decided, change "
    "canceled/on hold/rescheduled, incident resolved), their system properties and the REST message they use. "
    "After committing, set x_changeloop.shim_url, x_changeloop.webhook_token and x_changeloop.incident_token."
)

PROPERTIES = (
    ("x_changeloop.shim_url", "string", "Base URL of the changeloop starter shim, e.g. https://changeloop.example.com"),
    ("x_changeloop.webhook_token", "password2", "Bearer token of the `servicenow` principal (scope change:webhook)"),
    ("x_changeloop.incident_token", "password2", "Bearer token of the incident-resolve principal (incident:resolve)"),
)
REST_MESSAGE = "changeloop shim"
REST_METHOD = "post"
_TAGS = ("name", "table", "when", "order", "insert", "update", "condition")


def sys_id(*parts: str) -> str:
    return hashlib.md5(":".join((NAME, *parts)).encode(), usedforsecurity=False).hexdigest()


def script_tags(script: str) -> dict[str, str]:
    tags = dict(re.findall(r"^ \* @(\w+) +(.+?)\s*$", script, re.MULTILINE))
    missing = [t for t in _TAGS if t not in tags]
    if missing:
        raise SystemExit(f"script header lacks @{', @'.join(missing)}")
    return tags


def _element(name: str, value: str, attributes: str = "") -> str:
    return f"<{name}{attributes}/>" if value == "" else f"<{name}{attributes}>{escape(value)}</{name}>"


def _cdata(name: str, value: str) -> str:
    # A CDATA section keeps the script byte for byte; "]]>" inside it is split across two sections.
    return f"<{name}><![CDATA[{value.replace(']]>', ']]]]><![CDATA[>')}]]></{name}>"


def _record(table: str, record_id: str, fields: dict[str, str], scripts: tuple[str, ...] = ()) -> str:
    """The payload of one sys_update_xml: the record as the instance writes it."""
    body = {
        **fields,
        "sys_class_name": table,
        "sys_created_by": "admin",
        "sys_created_on": RECORDED,
        "sys_id": record_id,
        "sys_mod_count": "0",
        "sys_scope": "global",
        "sys_update_name": f"{table}_{record_id}",
        "sys_updated_by": "admin",
        "sys_updated_on": RECORDED,
    }
    inner = "".join(
        _cdata(k, v) if k in scripts else _element(k, v, ' display_value="Global"' if k == "sys_scope" else "")
        for k, v in sorted(body.items())
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><record_update table={quoteattr(table)}>'
        f'<{table} action="INSERT_OR_UPDATE">{inner}</{table}></record_update>'
    )


def _update(update_set: str, table: str, kind: str, target: str, record_id: str, payload: str) -> str:
    fields = [
        _element("action", "INSERT_OR_UPDATE"),
        _element("application", "global", ' display_value="Global"'),
        _element("category", "customer"),
        _element("comments", ""),
        _element("name", f"{table}_{record_id}"),
        f"<payload>{escape(payload)}</payload>",
        _element("remote_update_set", update_set, f" display_value={quoteattr(NAME)}"),
        _element("replace_on_upgrade", "false"),
        _element("sys_created_by", "admin"),
        _element("sys_created_on", RECORDED),
        _element("sys_id", sys_id("sys_update_xml", table, record_id)),
        _element("sys_mod_count", "0"),
        _element("sys_recorded_at", "18f7e2d4a000000001"),
        _element("sys_updated_by", "admin"),
        _element("sys_updated_on", RECORDED),
        _element("table", table),
        _element("target_name", target),
        _element("type", kind),
        _element("update_domain", "global"),
        _element("update_guid", sys_id("guid", table, record_id)),
        _element("update_set", "", ' display_value=""'),
        _element("view", ""),
    ]
    return '<sys_update_xml action="INSERT_OR_UPDATE">' + "".join(fields) + "</sys_update_xml>"


def business_rules() -> list[tuple[str, dict[str, str]]]:
    """(record sys_id, sys_script fields) for every .js file here, in file-name order."""
    rules = []
    for path in sorted(HERE.glob("*.js")):
        script = path.read_bytes().decode("utf-8")  # byte for byte: no newline translation
        tags = script_tags(script)
        fields = {
            "name": tags["name"],
            "collection": tags["table"],
            "when": tags["when"],
            "order": tags["order"],
            "action_insert": tags["insert"],
            "action_update": tags["update"],
            "action_delete": "false",
            "action_query": "false",
            "active": "true",
            "advanced": "true",
            "condition": tags["condition"],
            "script": script,
            "description": f"changeloop: see deploy/servicenow/{path.name}",
        }
        rules.append((sys_id("sys_script", tags["name"]), fields))
    return rules


def build() -> str:
    update_set = sys_id("sys_remote_update_set", NAME)
    updates: list[str] = []
    for record_id, fields in business_rules():
        payload = _record("sys_script", record_id, fields, scripts=("script",))
        updates.append(_update(update_set, "sys_script", "Business Rule", fields["name"], record_id, payload))
    for name, kind, description in PROPERTIES:
        record_id = sys_id("sys_properties", name)
        secret = kind == "password2"
        fields = {
            "name": name,
            "value": "",
            "type": kind,
            "description": description,
            "read_roles": "admin" if secret else "",
            "write_roles": "admin",
            "is_private": "true" if secret else "false",
            "ignore_cache": "false",
        }
        payload = _record("sys_properties", record_id, fields)
        updates.append(_update(update_set, "sys_properties", "System Property", name, record_id, payload))
    message_id = sys_id("sys_rest_message", REST_MESSAGE)
    message = {
        "name": REST_MESSAGE,
        "rest_endpoint": "${shim_url}",
        "authentication_type": "no_authentication",
        "description": "changeloop starter shim; the Business Rules set the endpoint from x_changeloop.shim_url",
    }
    payload = _record("sys_rest_message", message_id, message)
    updates.append(_update(update_set, "sys_rest_message", "REST Message", REST_MESSAGE, message_id, payload))
    method_id = sys_id("sys_rest_message_fn", REST_MESSAGE, REST_METHOD)
    method = {
        "rest_message": message_id,
        "function_name": REST_METHOD,
        "http_method": "post",
        "rest_endpoint": "${shim_url}",
    }
    payload = _record("sys_rest_message_fn", method_id, method)
    target = f"{REST_MESSAGE}: {REST_METHOD}"
    updates.append(_update(update_set, "sys_rest_message_fn", "HTTP Method", target, method_id, payload))
    header = "".join(
        [
            '<sys_remote_update_set action="INSERT_OR_UPDATE">',
            _element("application", "global", ' display_value="Global"'),
            _element("application_name", "Global"),
            _element("application_scope", "global"),
            _element("collisions", ""),
            _element("commit_date", ""),
            _element("description", DESCRIPTION),
            _element("name", NAME),
            _element("origin_sys_id", ""),
            _element("parent", "", ' display_value=""'),
            _element("release_date", ""),
            _element("remote_sys_id", update_set),
            _element("state", "loaded"),
            _element("summary", ""),
            _element("sys_class_name", "sys_remote_update_set"),
            _element("sys_created_by", "admin"),
            _element("sys_created_on", RECORDED),
            _element("sys_id", update_set),
            _element("sys_mod_count", "0"),
            _element("sys_updated_by", "admin"),
            _element("sys_updated_on", RECORDED),
            _element("update_set", "", ' display_value=""'),
            _element("update_source", "", ' display_value=""'),
            "</sys_remote_update_set>",
        ]
    )
    lines = [f'<?xml version="1.0" encoding="UTF-8"?><unload unload_date="{RECORDED}">', header, *updates, "</unload>"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    xml = build()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != xml:
            print(f"{OUTPUT.name} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(xml, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(xml)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
