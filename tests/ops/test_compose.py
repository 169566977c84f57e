"""The production stack's files, validated on a machine without a Docker engine.

The compose file is checked against the compose-spec JSON schema that the check-jsonschema package ships (no
download), then for what the schema cannot know: the services a deployment needs, official images, health checks,
one-shot set-up services, the search attributes of docs/architecture.md, mounted files that exist, CHANGELOOP_* names that
Settings knows, and a Dockerfile that runs as a non-root user. Where a compose CLI of at least MIN_COMPOSE (v2.24:
`env_file` with `required`) is installed, `config` runs too; an older one (Debian's docker-compose 1.29) rejects the
file's syntax, so it is not asked to judge it. The stack's safe defaults: no fallback database password, every port
on loopback, a read-only Temporal UI.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from config.settings import Settings
from tests.conftest import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
LONG_RUNNING = {"postgresql", "temporal", "temporal-ui", "worker", "shim"}
ONE_SHOT = {"temporal-schema", "temporal-setup"}
BUILT = {"worker", "shim", "worker-site", "sandbox"}
TYPE_NAMES = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "TEXT": "Text", "INT": "Int", "BOOL": "Bool"}
MIN_COMPOSE = (2, 24, 0)
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_file_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(compose)
    ]
    assert problems == []


def compose_version(output: str) -> tuple[int, int, int] | None:
    """The version a compose CLI prints (`Docker Compose version v2.29.1`, `docker-compose version 1.29.2, build
    unknown`, `2.24.6+ds1-0ubuntu1`), or None when it prints none."""
    found = re.search(r"\bv?(\d+)\.(\d+)\.(\d+)", output)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


@pytest.mark.parametrize(
    ("printed", "version"),
    [
        ("Docker Compose version v2.29.1", (2, 29, 1)),
        ("docker-compose version 1.29.2, build unknown", (1, 29, 2)),
        ("Docker Compose version 2.24.6+ds1-0ubuntu1", (2, 24, 6)),
        ("docker: 'compose' is not a docker command.", None),
    ],
)
def test_the_compose_cli_version_is_read_before_it_judges_the_file(
    printed: str, version: tuple[int, int, int] | None
) -> None:
    assert compose_version(printed) == version


def test_the_minimum_compose_version_is_stated_where_operators_read() -> None:
    assert "Compose v2.24" in README.read_text()
    assert "v2.24" in COMPOSE.read_text()


def test_compose_cli_accepts_the_file_where_a_recent_one_is_installed() -> None:
    """Not a skip: on a machine without a recent compose CLI the schema test above is the validation; an older CLI
    (docker-compose 1.x) would reject v2.24 syntax that the schema and every supported CLI accept."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        printed = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
        version = compose_version(printed.stdout) if printed.returncode == 0 else None
        if version is None or version < MIN_COMPOSE:
            continue  # the docker client without its compose plugin, or a compose too old for this file
        env = {"POSTGRES_PASSWORD": "checked-by-the-test"}  # required by the file; the CLI refuses it unset
        checked = subprocess.run(
            [*command, "-f", str(COMPOSE), "config", "-q"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            env={**os.environ, **env},
        )
        assert checked.returncode == 0, checked.stderr


def test_the_database_password_has_no_fallback(services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE.read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert len(uses) == 3 and all(use.startswith(":?") for use in uses), uses
    assert "POSTGRES_PASSWORD=\n" in ENV_EXAMPLE.read_text(), "the example leaves it to the operator"


def test_published_ports_listen_on_loopback_by_default(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for mapping in service.get("ports") or []:
            default = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(mapping))
            assert default.startswith("127.0.0.1:"), f"{name} publishes {mapping}"
    assert not re.search(r"^\s*TEMPORAL_PUBLISH=0\.0\.0\.0", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)


def test_the_temporal_ui_is_read_only_unless_the_operator_says_otherwise(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["temporal-ui"])
    switches = [key for key in env if key == "TEMPORAL_DISABLE_WRITE_ACTIONS" or key.endswith("_DISABLED")]
    assert "TEMPORAL_DISABLE_WRITE_ACTIONS" in switches and "TEMPORAL_WORKFLOW_SIGNAL_DISABLED" in switches
    for key in switches:
        assert env[key] == "${TEMPORAL_UI_DISABLE_WRITE_ACTIONS:-true}", key


def test_stack_has_temporal_on_postgres_the_ui_the_worker_and_the_shim(services: dict[str, dict[str, Any]]) -> None:
    assert LONG_RUNNING | ONE_SHOT <= set(services)
    assert services["postgresql"]["image"].startswith("postgres:")
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    for name in ONE_SHOT:
        assert services[name]["image"].startswith("temporalio/admin-tools:")
        assert str(services[name]["restart"]).startswith("on-failure"), f"{name} is one-shot: it must not loop"
    for name in BUILT:
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (ROOT / services[name]["build"]["context"] / services[name]["build"]["dockerfile"]).is_file()


def test_every_long_running_service_has_a_health_check_and_start_order_waits_for_it(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["temporal-schema"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert services["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert services["temporal-setup"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    for name in ("worker", "shim"):
        assert services[name]["depends_on"]["temporal-setup"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        for needed in service.get("depends_on") or {}:
            assert needed in services, f"{name} depends on unknown service {needed}"


def test_the_worker_and_shim_probe_their_own_ready_endpoints(services: dict[str, dict[str, Any]]) -> None:
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "changeloop", "probe", "http://127.0.0.1:9465/readyz"]
    assert services["shim"]["healthcheck"]["test"] == ["CMD", "changeloop", "probe", "http://127.0.0.1:8000/readyz"]
    assert services["worker-site"]["command"][:2] == ["worker", "--site"]


def test_the_custom_search_attributes_are_registered_at_start(services: dict[str, dict[str, Any]]) -> None:
    setup = services["temporal-setup"]
    pairs = dict(p.split("=") for p in environment(setup)["CHANGELOOP_SEARCH_ATTRIBUTES"].split())
    expected = {key.name: TYPE_NAMES[key.indexed_value_type.name] for key in SEARCH_ATTRIBUTES}
    assert pairs == expected
    script = (ROOT / "deploy" / "temporal" / "register.sh").read_text()
    assert "temporal operator search-attribute create" in script and "$CHANGELOOP_SEARCH_ATTRIBUTES" in script


def test_mounted_files_exist_and_shell_scripts_parse(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            source = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", source)  # the default of ${VAR:-default}
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    sh = shutil.which("sh")
    assert sh is not None
    for script in (ROOT / "deploy" / "temporal").glob("*.sh"):
        assert subprocess.run([sh, "-n", str(script)], capture_output=True).returncode == 0, script


def test_changeloop_variables_in_compose_and_the_env_example_are_settings(services: dict[str, dict[str, Any]]) -> None:
    known = {f"CHANGELOOP_{name.upper()}" for name in Settings.model_fields}
    used = {key for service in services.values() for key in environment(service) if key.startswith("CHANGELOOP_")}
    used -= {"CHANGELOOP_SEARCH_ATTRIBUTES"}  # the register script's input, not a setting
    assert used <= known, f"unknown settings: {sorted(used - known)}"
    example = {
        m.group(1) for m in re.finditer(r"^#?\s*(CHANGELOOP_[A-Z_]+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    }
    compose_only = {
        "CHANGELOOP_IMAGE_TAG",
        "CHANGELOOP_RUNBOOKS_FILE",
        "CHANGELOOP_SHIM_PUBLISH",
        "CHANGELOOP_EXAMPLE_SITE",
    }
    assert example - compose_only <= known, (
        f"unknown settings in .env.example: {sorted(example - compose_only - known)}"
    )
    for required in ("CHANGELOOP_SERVICENOW_URL", "CHANGELOOP_WEBHOOK_TOKEN", "CHANGELOOP_ENCRYPTION_KEYS"):
        assert required in example


def test_the_image_runs_as_a_non_root_user_with_a_health_check() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    users = [line.split()[1] for line in final_stage if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any(line.startswith("HEALTHCHECK") for line in final_stage)
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
