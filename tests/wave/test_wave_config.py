"""A bad wave or hosts configuration stops the worker at start, naming what is wrong."""

from __future__ import annotations

import pytest

from config.registry import RegistryError, parse_registry

WAVE = """
runbooks:
  patch:
    workflow: PatchWaveWorkflow
    params: {max_parallel: "%s"}
"""


def test_wave_params_are_validated_when_the_registry_loads() -> None:
    parse_registry(WAVE % "25")
    with pytest.raises(RegistryError, match=r"runbook 'patch': params: max_parallel"):
        parse_registry(WAVE % "0")


def test_a_hosts_rule_naming_an_unknown_driver_is_refused() -> None:
    text = """
hosts:
  drivers:
    fleet: {driver: http, base_url: "http://agent.example"}
  rules:
    - {ci_class: cmdb_ci_linux_server, driver: ssh}
"""
    with pytest.raises(RegistryError, match=r"rules\[0\] names driver 'ssh'"):
        parse_registry(text)


def test_a_command_driver_must_be_an_argv_list_not_a_shell_string() -> None:
    text = """
hosts:
  default: ssh
  drivers:
    ssh: {driver: command, snapshot: "ssh {host} snap", patch: [a], health_check: [b], rollback: [c]}
"""
    with pytest.raises(RegistryError, match=r"hosts.drivers.ssh.command.snapshot"):
        parse_registry(text)
