"""Issue 12, item 2: values substituted into commands and URLs are typed by the registry.

`{host}` is a CMDB CI name or FQDN: never an option (`-oProxyCommand=...`), a target list (`a,b`, `all`), a file
(`@/f`) or a path (`..`). A free value never starts with '-' unless the step reads it after `--`. In a URL a value
fills a path segment or a query value: scheme, host and port come from the registry.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.runbook.steps import StepActivities, fill_url
from activities.wave.hosts import CommandOperator
from config.hosts import CommandDriverConfig
from config.registry import Registry, RegistryError, parse_registry
from config.runbooks import ValueType, runbook_digest, value_problem
from config.secrets import NamedSecrets
from config.settings import Settings
from tests.changes import Changes, start
from tests.security.conftest import marker
from workflows.flow.models import FlowRun
from workflows.runbook.models import RunbookResult, StepInput
from workflows.wave.models import CiRef

pytestmark = pytest.mark.usefixtures("hardened")

HOSTILE_HOSTS = [
    "-oProxyCommand=/tmp/evil.sh",
    "all",
    "ALL",
    "a,b",
    "@/etc/hosts",
    "..",
    "web/../../etc",
    "a:22",
    "x@y",
]


@pytest.mark.parametrize("value", HOSTILE_HOSTS)
def test_hostile_host_values_are_refused_by_the_host_type(value: str) -> None:
    assert value_problem(value, ValueType.HOST)


@pytest.mark.parametrize("value", ["payments-api", "lnx-web-01.prod.example.com", "SRV_42", ""])
def test_ci_names_and_fqdns_are_hosts(value: str) -> None:
    assert value_problem(value, ValueType.HOST) == ""


def test_free_values_never_start_with_a_dash_nor_hold_dot_dot() -> None:
    assert value_problem("-rf", ValueType.WORD)
    assert value_problem("../../bin/sh", ValueType.WORD)
    assert value_problem("hi; rm -rf /", ValueType.WORD)
    assert value_problem("-rf", ValueType.WORD, dash_ok=True) == ""
    assert value_problem("2025.06", ValueType.WORD) == ""


async def run_flow(client: Client, settings: Settings, flow: str, inputs: dict[str, str]) -> Any:
    return await client.execute_workflow(
        "FlowRunWorkflow",
        FlowRun(flow=flow, inputs=inputs),
        id=f"flow-{flow}-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        result_type=RunbookResult,
    )


@pytest.mark.parametrize("flow", ["ssh_restart", "ansible_limit"])
@pytest.mark.parametrize("host", ["-oProxyCommand=/tmp/evil.sh", "all", "a,b", "@/f", ".."])
async def test_a_hostile_host_never_reaches_the_command(
    temporal_client: Client, hardened_settings: Settings, tmp_path: Path, flow: str, host: str
) -> None:
    target = marker(tmp_path)
    with pytest.raises(WorkflowFailureError) as failure:
        await run_flow(temporal_client, hardened_settings, flow, {"host": host, "marker": str(target)})
    assert "UnsafeVariable" in str(failure.value.cause) or "is not allowed as a host" in str(failure.value.cause)
    assert not target.exists(), "the command never ran"


async def test_a_proper_host_runs_and_lands_as_one_argument(
    temporal_client: Client, hardened_settings: Settings, tmp_path: Path
) -> None:
    target = marker(tmp_path)
    await run_flow(
        temporal_client, hardened_settings, "ansible_limit", {"host": "lnx-web-01.example.com", "marker": str(target)}
    )
    assert "'-l', 'lnx-web-01.example.com'" in target.read_text()


async def test_a_cmdb_ci_named_like_an_option_is_refused_on_a_change(
    temporal_client: Client, hardened_settings: Settings, changes: Changes, tmp_path: Path
) -> None:
    """The CMDB is the attacker's field here: a CI whose name is an ssh option."""
    evil = f"-oProxyCommand=/tmp/{uuid.uuid4().hex[:6]}.sh"
    await changes.sn.create("cmdb_ci_linux_server", {"name": evil})
    change = await changes.create(category="SecSsh", ci=evil)
    handle = await start(temporal_client, hardened_settings, change["number"])
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    notes = "\n".join(await changes.work_notes(change["sys_id"]))
    assert "is not allowed as a host" in notes and evil in notes


async def test_a_path_value_cannot_walk_out_of_its_directory(
    temporal_client: Client, hardened_settings: Settings, tmp_path: Path
) -> None:
    target = marker(tmp_path)
    with pytest.raises(WorkflowFailureError):
        await run_flow(
            temporal_client, hardened_settings, "script_by_name", {"script": "../../bin/evil", "marker": str(target)}
        )
    assert not target.exists()
    await run_flow(
        temporal_client, hardened_settings, "script_by_name", {"script": "rotate-logs", "marker": str(target)}
    )
    assert "/opt/scripts/rotate-logs.sh" in target.read_text()


async def test_a_value_after_double_dash_may_start_with_a_dash(
    temporal_client: Client, hardened_settings: Settings
) -> None:
    result = await run_flow(temporal_client, hardened_settings, "grep_pattern", {"pattern": "-v"})
    assert result.steps[0].detail == "['--', '-v']"


def test_the_registry_refuses_a_dash_value_outside_a_double_dash_position() -> None:
    text = """
runbooks:
  bad:
    steps:
      - name: s
        after_double_dash: [pattern]
        command: [grep, "{pattern}", --, file]
"""
    with pytest.raises(RegistryError, match="only after a literal '--'"):
        parse_registry(text)


# -- the command host driver: {fqdn} of the documented ssh template ----------------------------------------------------
async def test_the_ssh_driver_refuses_an_fqdn_that_is_an_option(tmp_path: Path) -> None:
    target = marker(tmp_path)
    record = ["{python}", "-c", "import pathlib, sys; pathlib.Path(sys.argv[-1]).write_text('ran')"]
    driver = CommandDriverConfig(
        driver="command",
        snapshot=[*record, "{fqdn}", str(target)],
        patch=[*record, "{fqdn}", str(target)],
        health_check=[*record, "{fqdn}", str(target)],
        rollback=[*record, "{fqdn}", str(target)],
    )
    ci = CiRef(sys_id="x", name="fleet-01", fqdn="-oProxyCommand=/tmp/evil.sh")
    with pytest.raises(ApplicationError, match="starts with '-'"):
        await CommandOperator(driver).snapshot(ci, "CHG0000001")
    assert not target.exists()


# -- URLs -------------------------------------------------------------------------------------------------------------
def test_a_url_value_cannot_change_the_host() -> None:
    def type_of(name: str) -> ValueType:
        return ValueType.HOST if name == "host" else ValueType.WORD

    with pytest.raises(ApplicationError):
        fill_url("http://{host}/healthz", {"host": "127.0.0.1:45957/admin"}, "health", type_of)
    with pytest.raises(ApplicationError):
        fill_url("http://{host}/healthz", {"host": "evil.com@good.com"}, "health", type_of)
    url = fill_url(
        "https://api.example.com/items/{item}?q={query}",
        {"item": "evil.com:80/admin", "query": "a@b.com/x"},
        "get",
        type_of,
    )
    assert url == "https://api.example.com/items/evil.com%3A80%2Fadmin?q=a%40b.com%2Fx"


@pytest.mark.parametrize(
    "url",
    [
        "{scheme}://api.example.com/x",
        "https://api.example.com:{port}/x",
        "https://{user}@api.example.com/x",
        "https://api.{domain}/x",
        "https://api.example.com/x?{key}=1",
        "https://user:pw@api.example.com/x",
    ],
)
def test_the_registry_refuses_url_templates_whose_values_could_steer_the_request(url: str) -> None:
    text = f"""
runbooks:
  bad:
    types: {{domain: host}}
    steps:
      - name: s
        http: {{url: "{url}"}}
"""
    with pytest.raises(RegistryError):
        parse_registry(text)


def test_a_url_host_placeholder_must_be_typed_host() -> None:
    with pytest.raises(RegistryError, match="must be typed host"):
        parse_registry('runbooks:\n  bad:\n    steps:\n      - {name: s, http: {url: "https://{target}/x"}}\n')
    parse_registry(
        'runbooks:\n  ok:\n    types: {target: host}\n    steps:\n      - {name: s, http: {url: "https://{target}/x"}}\n'
    )


def test_literal_credentials_are_refused_in_headers_and_env() -> None:
    for step in (
        '{name: s, http: {url: "https://a.example.com/", headers: {Authorization: "Bearer abc"}}}',
        '{name: s, http: {url: "https://a.example.com/", headers: {X-Api-Key: "abc"}}}',
        "{name: s, command: [run], env: {DB_PASSWORD: hunter2}}",
    ):
        with pytest.raises(RegistryError, match="looks like a credential"):
            parse_registry(f"runbooks:\n  bad:\n    steps:\n      - {step}\n")
    parse_registry(
        "runbooks:\n  ok:\n    steps:\n"
        '      - {name: s, http: {url: "https://a.example.com/", headers: {Authorization: {secret: API_TOKEN, prefix: "Bearer "}}}}\n'
    )


async def test_an_http_step_reaches_an_allowed_host_with_the_port_of_the_registry(
    security_registry: Registry, settings: Settings
) -> None:
    """The same step, run by a worker that allows loopback (the session's settings): the host value fills the host
    name only, the port is the registry's."""
    steps = StepActivities(security_registry, settings, NamedSecrets([], {}))
    digest = runbook_digest(security_registry.runbooks["health_probe"])
    request = StepInput(runbook="health_probe", digest=digest, index=0, name="health", variables={"host": "127.0.0.1"})
    output = await ActivityEnvironment().run(steps.run_step, request)
    assert "ok" in output.output.lower()
