"""deploy/servicenow/changeloop_update_set.xml: parses as an update set unload and embeds exactly the shipped
scripts, properties and REST message; it is what build_update_set.py makes of the scripts today."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from sandbox.outbound_rules import PROPERTIES, REST_MESSAGE, REST_METHOD, RULES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "servicenow"
UPDATE_SET = DEPLOY / "changeloop_update_set.xml"


def payloads() -> list[tuple[ET.Element, ET.Element]]:
    """(sys_update_xml, the record its payload embeds) for every update."""
    root = ET.parse(UPDATE_SET).getroot()
    assert root.tag == "unload"
    found = []
    for update in root.findall("sys_update_xml"):
        record_update = ET.fromstring(update.findtext("payload") or "")
        assert record_update.tag == "record_update"
        (record,) = list(record_update)
        assert record.tag == record_update.get("table") == update.findtext("table")
        assert update.findtext("name") == f"{record.tag}_{record.findtext('sys_id')}"
        found.append((update, record))
    return found


def test_the_unload_has_one_remote_update_set_that_every_update_belongs_to() -> None:
    root = ET.parse(UPDATE_SET).getroot()
    (update_set,) = root.findall("sys_remote_update_set")
    assert (update_set.findtext("name"), update_set.findtext("state")) == ("changeloop", "loaded")
    assert {u.findtext("remote_update_set") for u, _ in payloads()} == {update_set.findtext("sys_id")}


def test_it_embeds_exactly_the_shipped_scripts_byte_for_byte() -> None:
    scripts = {r.findtext("name"): r for u, r in payloads() if r.tag == "sys_script"}
    assert set(scripts) == {rule.name for rule in RULES}
    for rule in RULES:
        record = scripts[rule.name]
        shipped = (DEPLOY / rule.script_file).read_bytes().decode("utf-8")
        assert record.findtext("script") == shipped
        assert (record.findtext("collection"), record.findtext("when"), record.findtext("condition")) == (
            rule.collection,
            rule.when,
            rule.condition,
        )
        assert (record.findtext("action_insert"), record.findtext("action_update"), record.findtext("active")) == (
            str(rule.on_insert).lower(),
            str(rule.on_update).lower(),
            "true",
        )


def test_it_embeds_the_properties_with_empty_values_and_the_tokens_as_password2() -> None:
    properties = {r.findtext("name"): r for _, r in payloads() if r.tag == "sys_properties"}
    assert {name: (r.findtext("type"), r.findtext("value") or "") for name, r in properties.items()} == {
        name: (kind, "") for name, (kind, _) in PROPERTIES.items()
    }
    assert {properties[n].findtext("read_roles") for n, (kind, _) in PROPERTIES.items() if kind == "password2"} == {
        "admin"
    }


def test_it_embeds_the_rest_message_the_rules_send_through() -> None:
    records = [r for _, r in payloads()]
    (message,) = [r for r in records if r.tag == "sys_rest_message"]
    (method,) = [r for r in records if r.tag == "sys_rest_message_fn"]
    assert message.findtext("name") == REST_MESSAGE
    assert (method.findtext("function_name"), method.findtext("rest_message")) == (
        REST_METHOD,
        message.findtext("sys_id"),
    )


def test_the_xml_is_what_the_generator_makes_of_the_scripts() -> None:
    check = subprocess.run(
        [sys.executable, str(DEPLOY / "build_update_set.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
