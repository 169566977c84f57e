"""The host operator's drivers, called directly: the http driver against the sandbox fleet, the command driver
against local argv templates (no shell)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.wave.hosts import CommandOperator, HostActivities, HttpOperator
from config.hosts import CommandDriverConfig, HostsConfig, HttpDriverConfig
from config.settings import Settings
from tests.helpers import wait_for
from tests.wave.conftest import BASELINE, TARGET, FleetControl
from workflows.wave.models import CiRef

HOST = CiRef(sys_id="x", name="fleet-20", sys_class_name="cmdb_ci_linux_server", site="Dublin DC2")


@pytest.fixture
def http(settings: Settings) -> HttpOperator:
    return HttpOperator(HttpDriverConfig(driver="http", base_url="{servicenow_url}/fleet"), settings)


async def test_http_patch_of_a_host_at_target_is_a_no_op_that_says_so(http: HttpOperator, fleet: FleetControl) -> None:
    first = await http.patch(HOST, TARGET)
    second = await http.patch(HOST, TARGET)

    assert first.changed and first.level == TARGET
    assert not second.changed and second.message == f"already at {TARGET}"
    assert (await fleet.host("fleet-20"))["counters"]["patches_applied"] == 1


async def test_http_snapshot_is_keyed_by_label_and_rollback_restores_it(
    http: HttpOperator, fleet: FleetControl
) -> None:
    taken = await http.snapshot(HOST, "CHG-label")
    again = await http.snapshot(HOST, "CHG-label")
    await http.patch(HOST, TARGET)
    await http.rollback(HOST, taken.snapshot_id)

    assert again.snapshot_id == taken.snapshot_id and again.message == "snapshot already existed"
    assert (await fleet.host("fleet-20"))["patch_level"] == BASELINE


async def test_http_unreachable_host_is_a_retryable_error_and_a_refused_patch_is_not(
    http: HttpOperator, fleet: FleetControl
) -> None:
    await fleet.set_faults("fleet-20", unreachable=True)
    with pytest.raises(ApplicationError) as unreachable:
        await http.health_check(HOST)
    await fleet.set_faults("fleet-20", patch_fails=True)
    with pytest.raises(ApplicationError) as refused:
        await http.patch(HOST, TARGET)

    assert unreachable.value.type == "HostUnreachable" and not unreachable.value.non_retryable
    assert refused.value.type == "HostOperationFailed" and refused.value.non_retryable


async def test_cancelling_a_slow_operation_stops_it_at_once(http: HttpOperator, fleet: FleetControl) -> None:
    await fleet.set_faults("fleet-20", slow_seconds=30)
    task = asyncio.ensure_future(http.health_check(HOST))
    await wait_for(lambda: _health_calls(fleet), timeout=20, message="the slow health check reached the host")

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)


async def _health_calls(fleet: FleetControl) -> int:
    return int((await fleet.host("fleet-20"))["counters"]["health_calls"])


async def test_run_action_reaches_the_host_agent(http: HttpOperator, fleet: FleetControl) -> None:
    result = await http.run_action(HOST, "restart", {"service": "app"})

    assert result.message == "fleet-20: restart service=app: ok"


def _command_driver(state: Path) -> CommandDriverConfig:
    py = sys.executable
    write = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
    return CommandDriverConfig(
        driver="command",
        vars={"state": str(state)},
        snapshot=[py, "-c", "print('ignored'); print('snap-' + __import__('sys').argv[1])", "{host}"],
        level=[py, "-c", "import sys, pathlib; print(pathlib.Path(sys.argv[1]).read_text())", "{state}"],
        patch=[py, "-c", write, "{state}", "{level}"],
        health_check=[py, "-c", "import sys; sys.exit(0 if open(sys.argv[1]).read() != 'bad' else 3)", "{state}"],
        rollback=[py, "-c", write, "{state}", "{snapshot}"],
    )


async def test_command_driver_runs_argv_templates_and_skips_a_patch_already_at_target(tmp_path: Path) -> None:
    state = tmp_path / "level"
    state.write_text(BASELINE)
    operator = CommandOperator(_command_driver(state))

    snapshot = await operator.snapshot(HOST, "CHG1")
    first = await operator.patch(HOST, TARGET)
    second = await operator.patch(HOST, TARGET)
    healthy = await operator.health_check(HOST)
    state.write_text("bad")
    unhealthy = await operator.health_check(HOST)

    assert snapshot.snapshot_id == "snap-fleet-20", "the last line printed is the snapshot id"
    assert first.changed and not second.changed and "nothing to do" in second.message
    assert healthy.healthy and not unhealthy.healthy


async def test_command_driver_refuses_a_host_name_that_would_add_words(tmp_path: Path) -> None:
    operator = CommandOperator(_command_driver(tmp_path / "level"))
    hostile = HOST.model_copy(update={"name": "web-01; rm -rf /"})

    with pytest.raises(ApplicationError) as refused:
        await operator.snapshot(hostile, "CHG1")

    assert refused.value.type == "UnsafeVariable"


def test_driver_is_chosen_per_ci_class_and_site(settings: Settings, tmp_path: Path) -> None:
    config = HostsConfig.model_validate(
        {
            "default": "agent",
            "drivers": {
                "agent": {"driver": "http", "base_url": "http://agent.example"},
                "ssh_dublin": _command_driver(tmp_path).model_dump(),
            },
            "rules": [{"ci_class": "cmdb_ci_linux_server", "site": "Dublin DC2", "driver": "ssh_dublin"}],
        }
    )
    hosts = HostActivities(config, settings)

    assert isinstance(hosts.operator(HOST), CommandOperator)
    assert isinstance(hosts.operator(HOST.model_copy(update={"site": "Frankfurt DC1"})), HttpOperator)
    with pytest.raises(ApplicationError, match="no host driver"):
        HostActivities(HostsConfig(), settings).operator(HOST)
