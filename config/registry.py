"""The runbook registry: which runbook a change runs, read from a YAML file.

The file maps standard-change templates and/or categories to runbooks. It is validated with pydantic when the
worker or the shim starts; a bad file stops the process with a message naming the field and the line.
Default: the `runbooks.yaml` shipped beside this module; `CHANGELOOP_RUNBOOKS` points at another.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.hosts import HostsConfig
from config.runbooks import Duration, Runbook, WaveParams

DEFAULT_REGISTRY = Path(__file__).with_name("runbooks.yaml")


class RegistryError(ValueError):
    """The registry file is unusable; the message names the file, field and line."""


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runbook: str
    template: str | None = None
    category: str | None = None

    @model_validator(mode="after")
    def _needs_a_key(self) -> Match:
        if not self.template and not self.category:
            raise ValueError("a match needs 'template' and/or 'category'")
        return self


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    production: bool = True
    timeout: Duration = timedelta(hours=1)
    approval_timeout: Duration = timedelta(hours=24)


class PollFilter(BaseModel):
    """Which approved changes the scheduled poll picks up (on top of state Scheduled and approval approved)."""

    model_config = ConfigDict(extra="forbid")

    types: list[str] = ["standard"]
    interval: Duration = timedelta(minutes=5)


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Defaults = Defaults()
    runbooks: dict[str, Runbook] = {}
    match: list[Match] = []
    poll: PollFilter = PollFilter()
    hosts: HostsConfig = HostsConfig()  # which driver operates which host (activities/host_config.py)
    source: str = Field(default="", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        """Each runbook is keyed by its name and inherits the file's defaults unless it sets its own."""
        if not isinstance(data, dict):
            return data
        defaults = data.get("defaults") or {}
        runbooks = data.get("runbooks") or {}
        if isinstance(runbooks, dict):
            merged = {}
            for name, body in runbooks.items():
                body = dict(body or {})
                body.setdefault("name", name)
                for key in ("production", "timeout", "approval_timeout"):
                    if key in defaults:
                        body.setdefault(key, defaults[key])
                merged[name] = body
            data = {**data, "runbooks": merged}
        return data

    @model_validator(mode="after")
    def _matches_name_runbooks(self) -> Registry:
        for i, match in enumerate(self.match):
            if match.runbook not in self.runbooks:
                raise ValueError(f"match[{i}] names runbook {match.runbook!r}, which is not defined under 'runbooks'")
        return self

    @model_validator(mode="after")
    def _wave_params_are_valid(self) -> Registry:
        # A bad max_parallel must stop the worker at start, not fail a wave half-way through a maintenance window.
        for name, runbook in self.runbooks.items():
            if runbook.workflow == "PatchWaveWorkflow":
                try:
                    WaveParams.model_validate(runbook.params)
                except ValidationError as exc:
                    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                    raise ValueError(f"runbook {name!r}: params: {problems}") from exc
        return self

    def resolve(self, template: str = "", category: str = "") -> Runbook | None:
        """First match wins: a rule with both keys needs both to match; a template rule beats a category rule
        because rules are tried in file order and templates are the precise key."""
        for match in self.match:
            if match.template and match.template != template:
                continue
            if match.category and match.category != category:
                continue
            return self.runbooks[match.runbook]
        return None

    def flow(self, name: str) -> Runbook | None:
        return self.runbooks.get(name)

    def secret_names(self) -> set[str]:
        """Every `{secret: NAME}` the registry's steps and host drivers use (the worker must list each one)."""
        refs = [ref for runbook in self.runbooks.values() for step in runbook.steps for ref in step.secret_refs()]
        return {ref.secret for ref in [*refs, *self.hosts.secret_refs()]}


def line_of(text: str, path: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a field path in the YAML text, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            found = node.value[key]
        else:
            found = None
        if found is None:
            break
        node = found
    return node.start_mark.line + 1 if node is not None else None


def parse_registry(text: str, source: str = "<registry>") -> Registry:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RegistryError(f"{source}: not valid YAML: {exc}") from exc
    try:
        registry = Registry.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
            line = line_of(text, loc)
            where = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{source}{f':{line}' if line else ''}: {where}: {err['msg']}")
        raise RegistryError("invalid runbook registry:\n  " + "\n  ".join(problems)) from exc
    problems = [
        f"{source}{f':{line}' if (line := line_of(text, ('runbooks', name))) else ''}: runbooks.{name}.approvers: {why}"
        for name, why in unapprovable(registry)
    ]
    if problems:
        raise RegistryError("invalid runbook registry:\n  " + "\n  ".join(problems))
    registry.source = source
    return registry


def unapprovable(registry: Registry) -> list[tuple[str, str]]:
    """Destructive runbooks that nobody could approve. Checked when a registry file is loaded (not in the Runbook
    model: a runbook recorded in an old workflow history must still deserialize)."""
    return [
        (name, "a destructive runbook needs `approvers` (ServiceNow user names) or `approver_group` (a group)")
        for name, runbook in registry.runbooks.items()
        if runbook.destructive
        and not [a for a in runbook.approvers if a.strip()]
        and not runbook.approver_group.strip()
    ]


def load_registry(path: Path | str | None = None) -> Registry:
    path = Path(path) if path else DEFAULT_REGISTRY
    try:
        text = path.read_text()
    except OSError as exc:
        raise RegistryError(f"cannot read runbook registry {path}: {exc}") from exc
    return parse_registry(text, str(path))
