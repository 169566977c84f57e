"""The registry's `hosts:` section: which driver operates which host, chosen per CI class or per site.

    hosts:
      default: fleet                      # used when no rule matches (omit: unmatched hosts fail with NoHostDriver)
      drivers:
        fleet: {driver: http, base_url: "{servicenow_url}/fleet"}
        ssh:
          driver: command
          snapshot: [ssh, "{fqdn}", sudo, snapper, create, --print-number, -d, "{label}"]
          level: [ssh, "{fqdn}", cat, /etc/patch-level]
          patch: [ssh, "{fqdn}", sudo, apt-get, -y, upgrade]
          health_check: [ssh, "{fqdn}", systemctl, is-system-running]
          rollback: [ssh, "{fqdn}", sudo, snapper, undochange, "{snapshot}..0"]
      rules:                              # first match wins; a rule with both keys needs both
        - {ci_class: cmdb_ci_linux_server, site: Frankfurt DC1, driver: ssh}
        - {ci_class: cmdb_ci_linux_server, driver: fleet}

Pure pydantic, read by the worker with the registry; workflows never see it (it may name credentials' files).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.runbooks import Duration
from config.secrets import SecretRef, Value, literal_credentials


class HttpDriverConfig(BaseModel):
    """A host-agent (or hypervisor) REST API: `POST {base_url}/hosts/{name}/snapshots|patch|rollback|actions`,
    `GET {base_url}/hosts/{name}/health`. `{servicenow_url}` in base_url is the worker's CHANGELOOP_SERVICENOW_URL
    (the sandbox serves its simulated fleet under /fleet)."""

    model_config = ConfigDict(extra="forbid")

    driver: Literal["http"]
    base_url: str
    # Literal values, or `{secret: NAME}` filled in by the worker (an agent token); a credential written out is refused.
    headers: dict[str, Value] = {}
    request_timeout: Duration = timedelta(minutes=30)

    @model_validator(mode="after")
    def _no_literal_credentials(self) -> HttpDriverConfig:
        problems = literal_credentials(self.headers, "header")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class CommandDriverConfig(BaseModel):
    """argv templates, never shell strings. Placeholders: {host} {ip} {fqdn} {ci_class} {change} {level}
    {snapshot} {label} {action} {python} and each key of `vars`; values are typed (config/runbooks.py `ValueType`:
    {host} and {fqdn} are CI names or FQDNs, {ip} an address, the rest words that never start with '-').
    `env`: the child process's environment beyond PATH, HOME and LANG (literal values or `{secret: NAME}`).
    `level` (optional) prints the host's current level: when it equals the target, patch is a no-op.
    `snapshot` prints the snapshot id as its last line (none printed: the label is the id).
    `health_check` exit 0 = healthy. `actions` maps run_action names to argv templates."""

    model_config = ConfigDict(extra="forbid")

    driver: Literal["command"]
    snapshot: list[str]
    patch: list[str]
    health_check: list[str]
    rollback: list[str]
    level: list[str] | None = None
    actions: dict[str, list[str]] = {}
    vars: dict[str, str] = {}
    env: dict[str, Value] = {}

    @model_validator(mode="after")
    def _no_literal_credentials(self) -> CommandDriverConfig:
        problems = literal_credentials(self.env, "env")
        if problems:
            raise ValueError("; ".join(problems))
        return self


DriverConfig = Annotated[HttpDriverConfig | CommandDriverConfig, Field(discriminator="driver")]


class HostRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    driver: str
    ci_class: str | None = None
    site: str | None = None

    @model_validator(mode="after")
    def _needs_a_key(self) -> HostRule:
        if not self.ci_class and not self.site:
            raise ValueError("a hosts rule needs 'ci_class' and/or 'site'")
        return self

    def matches(self, ci_class: str, site: str) -> bool:
        return (not self.ci_class or self.ci_class == ci_class) and (not self.site or self.site == site)


class HostsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str | None = None
    drivers: dict[str, DriverConfig] = {}
    rules: list[HostRule] = []

    @model_validator(mode="after")
    def _names_exist(self) -> HostsConfig:
        named = [("default", self.default)] if self.default else []
        named += [(f"rules[{i}]", rule.driver) for i, rule in enumerate(self.rules)]
        for where, name in named:
            if name not in self.drivers:
                raise ValueError(f"{where} names driver {name!r}, which is not defined under 'drivers'")
        return self

    def secret_refs(self) -> list[SecretRef]:
        refs: list[SecretRef] = []
        for driver in self.drivers.values():
            values = driver.headers if isinstance(driver, HttpDriverConfig) else driver.env
            refs += [value for value in values.values() if isinstance(value, SecretRef)]
        return refs

    def driver_for(self, ci_class: str, site: str) -> str | None:
        """The driver name for a host: first matching rule, else the default."""
        for rule in self.rules:
            if rule.matches(ci_class, site):
                return rule.driver
        return self.default
