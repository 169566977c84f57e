"""What the shim's routes need, as FastAPI dependencies: the settings, the Temporal client and the runbook registry
that `create_app` put on `app.state` (one of each per process)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from config.principals import Principal
from config.registry import Registry
from config.settings import Settings


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _principal(request: Request) -> Principal:
    """Who is calling: the guard (starter/shim/guard.py) authenticated them before the route runs."""
    principal: Principal = request.state.principal
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]
SettingsDep = Annotated[Settings, Depends(_settings)]
TemporalDep = Annotated[Client, Depends(_temporal)]
RegistryDep = Annotated[Registry, Depends(_registry)]
