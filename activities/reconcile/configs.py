"""The worker's own reconciliation config, as a run names it: refused when unknown, changed or not this worker's.

A run pins its config's name and digest (RESOLVE_RECONCILE); every later activity reads the worker's file again by
name and refuses it when the digest changed. A site worker checks only the source it scans (its name and the
digest of its definition), so a site's config may hold its own sources alone. The secrets a config names must be
listed by the worker that scans the sources naming them: the central worker lists the secrets of the sources
without a site, a site worker those of its site's sources.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from config.reconcile import (
    ReconcileConfig,
    ReconcileConfigError,
    Source,
    config_digest,
    load_named_config,
    same_site,
    source_digest,
)
from config.secrets import NamedSecrets, SecretsError
from config.settings import Settings
from workflows.reconcile.models import RECONCILE_CONFIG_CHANGED, ConfigRef


def refused(message: str) -> ApplicationError:
    return ApplicationError(message, type=RECONCILE_CONFIG_CHANGED, non_retryable=True)


def worker_config(settings: Settings, secrets: NamedSecrets, ref: ConfigRef) -> ReconcileConfig:
    """The worker's config `ref.name`; refused (never retried) when unknown, changed since the run resolved it, or
    naming a secret this worker does not list for the sources it scans."""
    try:
        config = load_named_config(settings.reconcile, ref.name)
        sources = config.sources_at(settings.site)
        secrets.check(config.secret_names(sources), f"reconciliation config {ref.name!r}")
    except (ReconcileConfigError, SecretsError) as exc:
        raise refused(str(exc)) from None
    if ref.digest and config_digest(config) != ref.digest:
        raise refused(
            f"reconciliation config {ref.name!r} changed since the run started: nothing more of this run is done "
            "with it; start a new run"
        )
    return config


def worker_source(settings: Settings, config: ReconcileConfig, ref: ConfigRef, name: str, digest: str = "") -> Source:
    """Source `name` of the config, when this worker scans it (its site, or none for a central worker) and, given
    `digest`, its definition is the one the run resolved."""
    source = config.source(name)
    if source is None:
        raise refused(f"reconciliation config {ref.name!r} has no source {name!r}")
    if not same_site(source.site, settings.site):
        where = f"site {source.site!r}'s worker" if source.site else "a central worker"
        raise refused(f"source {name!r} of {ref.name!r} is scanned by {where}, not here")
    if digest and source_digest(source) != digest:
        raise refused(
            f"source {name!r} of reconciliation config {ref.name!r} differs from the one the run resolved: this "
            "worker's config must define it the same way"
        )
    return source
