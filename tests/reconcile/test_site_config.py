"""A source bound to a site: which worker scans it, which secrets each worker must list, and the digests a run pins
(config/reconcile.py, activities/reconcile/configs.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError

from activities.reconcile.configs import worker_config, worker_source
from config.reconcile import ReconcileConfig, config_digest, source_digest
from config.runbooks import canonical_json
from config.secrets import NamedSecrets
from config.settings import Settings
from workflows.reconcile.models import ConfigRef, ReconcilePlan

TOKEN = "site-token-value-0001"
SOURCES: list[dict[str, Any]] = [
    {"name": "hq", "kind": "command", "argv": ["true"]},
    {
        "name": "fra",
        "kind": "http",
        "site": "Frankfurt DC1",
        "url": "http://inventory.fra1.example/hosts",
        "bearer_token": {"secret": "FRA_TOKEN"},
    },
]


def _worker(tmp_path: Path, site: str | None, config: dict[str, Any]) -> Settings:
    (tmp_path / "default.yaml").write_text(yaml.safe_dump(config))
    return Settings(_env_file=None, reconcile=tmp_path, site=site, task_queue="changeloop")


def test_the_plan_sends_a_site_bound_source_to_its_sites_queue() -> None:
    config = ReconcileConfig.model_validate({"sources": SOURCES})

    plan = ReconcilePlan.of(config, ConfigRef(), "changeloop")

    by_name = {s.name: s for s in plan.sources}
    assert (by_name["fra"].site, by_name["fra"].task_queue) == ("Frankfurt DC1", "changeloop-frankfurt-dc1")
    assert (by_name["hq"].site, by_name["hq"].task_queue) == ("", "")
    assert by_name["fra"].digest == source_digest(config.sources[1])


def test_a_config_without_sites_keeps_the_digest_it_had_before_sites_existed() -> None:
    """Fields added later stay out of the digest at their default: a run in flight across the upgrade goes on."""
    config = ReconcileConfig.model_validate({"sources": SOURCES[:1]})
    # sha256 of the canonical JSON as the version before sites wrote it (no `site`, `worker_lost_after`, ...).
    before = config.model_dump(mode="json", by_alias=True)
    for name in ("worker_lost_after", "site_transfer_bytes"):
        before.pop(name)
    before["sources"] = [{k: v for k, v in s.items() if k != "site"} for s in before["sources"]]

    assert config_digest(config) == hashlib.sha256(canonical_json(before)).hexdigest()
    moved = ReconcileConfig.model_validate({"sources": SOURCES[:1], "worker_lost_after": "5s"})
    assert config_digest(moved) != config_digest(config)


def test_the_central_worker_needs_no_secret_of_a_sites_source(tmp_path: Path) -> None:
    settings = _worker(tmp_path, None, {"sources": SOURCES})

    config = worker_config(settings, NamedSecrets([], {}), ConfigRef())

    with pytest.raises(ApplicationError, match="site 'Frankfurt DC1'"):
        worker_source(settings, config, ConfigRef(), "fra")
    assert worker_source(settings, config, ConfigRef(), "hq").name == "hq"


def test_a_site_worker_scans_its_own_sources_with_its_own_secrets(tmp_path: Path) -> None:
    central = ReconcileConfig.model_validate({"sources": SOURCES})
    settings = _worker(tmp_path, "frankfurt-dc1", {"sources": SOURCES[1:]})  # the site's config: its source only

    with pytest.raises(ApplicationError, match="FRA_TOKEN"):
        worker_config(settings, NamedSecrets([], {}), ConfigRef())
    config = worker_config(settings, NamedSecrets(["FRA_TOKEN"], {"FRA_TOKEN": TOKEN}), ConfigRef())
    assert worker_source(settings, config, ConfigRef(), "fra", source_digest(central.sources[1])).name == "fra"
    with pytest.raises(ApplicationError, match="no source 'hq'"):  # the central worker's, not in the site's config
        worker_source(settings, config, ConfigRef(), "hq")


def test_a_site_worker_refuses_a_source_defined_otherwise_than_the_run_resolved(tmp_path: Path) -> None:
    changed = [SOURCES[0], SOURCES[1] | {"url": "http://elsewhere.example/hosts"}]
    resolved = ReconcileConfig.model_validate({"sources": SOURCES}).sources[1]
    settings = _worker(tmp_path, "Frankfurt DC1", {"sources": changed})
    config = worker_config(settings, NamedSecrets(["FRA_TOKEN"], {"FRA_TOKEN": TOKEN}), ConfigRef())

    with pytest.raises(ApplicationError, match="differs from the one the run resolved"):
        worker_source(settings, config, ConfigRef(), "fra", source_digest(resolved))
