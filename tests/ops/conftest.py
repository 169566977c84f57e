"""Operations fixtures: settings on a task queue of the test's own, the ops registry, free ports."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from config.registry import Registry, load_registry
from config.settings import Settings

OPS_REGISTRY = Path(__file__).with_name("runbooks.yaml")


@pytest.fixture(scope="session")
def ops_registry() -> Registry:
    return load_registry(OPS_REGISTRY)


@pytest.fixture
def ops_settings(settings: Settings) -> Settings:
    """The session settings on a fresh task queue: no other test's worker can pick this test's tasks."""
    return settings.model_copy(update={"task_queue": f"ops-{uuid.uuid4().hex[:8]}", "runbooks": OPS_REGISTRY})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
