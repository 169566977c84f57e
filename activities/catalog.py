"""The one registration list: every activity the central worker runs, and the host operations a site worker runs.

Each activity registers under its name in workflows/calls.py; a test checks that every call there has exactly one
activity here. Activities that need ServiceNow, Temporal or the registry get them here, once per worker.

Every worker process also polls a queue of its own (worker.py): a central worker runs there the reconciliation
stages that touch the run's files on its disk (`pipeline_activities`), a site worker the fetching of its scans'
chunks (`site_own_activities`).
"""

from __future__ import annotations

import os
from typing import Any

from temporalio.client import Client

from activities.change.schedules import ScheduleActivities
from activities.change.tickets import TicketActivities
from activities.evidence.attachments import AttachmentActivities
from activities.evidence.confirmation import ConfirmationActivities
from activities.evidence.tasks import ChangeTaskActivities
from activities.flow.callbacks import CallbackActivities
from activities.gate.approvals import GateActivities
from activities.incident.records import IncidentActivities
from activities.poll.intake import IntakeActivities
from activities.reconcile.pipeline import ReconcileActivities
from activities.reconcile.site_scan import SiteScanActivities
from activities.runbook.lookup import RegistryActivities
from activities.runbook.steps import StepActivities
from activities.site.queues import SiteActivities
from activities.wave.children import ChildWatch
from activities.wave.hosts import HostActivities
from activities.wave.plan import WaveActivities
from config.registry import Registry
from config.secrets import NamedSecrets
from config.settings import Settings
from servicenow.client import ServiceNowClient


def worker_secrets(settings: Settings) -> NamedSecrets:
    """The worker's named secrets (CHANGELOOP_SECRET_NAMES), read from its environment once."""
    return NamedSecrets(settings.secret_names, os.environ)


def host_activities(settings: Settings, registry: Registry, secrets: NamedSecrets | None = None) -> list[Any]:
    """What touches hosts: runbook steps and the host operator. A site worker runs only these (no ServiceNow
    credentials in a site's network); the central worker runs them for CIs without a site."""
    secrets = secrets or worker_secrets(settings)
    hosts = HostActivities(registry.hosts, settings, secrets)
    steps = StepActivities(registry, settings, secrets)
    return [
        steps.run_step,
        hosts.host_snapshot,
        hosts.host_patch,
        hosts.host_health_check,
        hosts.host_rollback,
        hosts.host_run_action,
    ]


def site_activities(settings: Settings, registry: Registry, secrets: NamedSecrets, own_queue: str) -> list[Any]:
    """A site worker's shared queue: host operations and the scans of its site's reconciliation sources."""
    scans = SiteScanActivities(settings, secrets, own_queue)
    return [*host_activities(settings, registry, secrets), scans.scan_at_site]


def site_own_activities(settings: Settings, secrets: NamedSecrets, own_queue: str) -> list[Any]:
    """A site worker's own queue: the chunks of a scan it keeps until the pipeline's worker has them."""
    scans = SiteScanActivities(settings, secrets, own_queue)
    return [scans.fetch_scan_chunk, scans.drop_site_scan]


def pipeline_activities(reconcile: ReconcileActivities) -> list[Any]:
    """The reconciliation stages that read or write the run's files: on the worker's own queue (and the shared one,
    for runs from before the pipeline held its files on one worker)."""
    return [
        reconcile.scan_source,
        reconcile.pull_cmdb,
        reconcile.diff,
        reconcile.load_batch,
        reconcile.store_scan_chunk,
        reconcile.clean_up,
    ]


def central_activities(
    client: Client,
    settings: Settings,
    registry: Registry,
    sn: ServiceNowClient,
    secrets: NamedSecrets | None = None,
    *,
    reconcile: ReconcileActivities | None = None,
) -> list[Any]:
    """`reconcile`: the worker's reconciliation activities, knowing its own queue (worker.py); None: a worker that
    polls no queue of its own, whose pipeline stays on the queue it polls."""
    secrets = secrets or worker_secrets(settings)
    tickets = TicketActivities(sn, settings)
    schedules = ScheduleActivities(sn, settings)
    intake = IntakeActivities(sn, client, settings)
    lookups = RegistryActivities(registry)
    callbacks = CallbackActivities(settings)
    wave = WaveActivities(sn, settings)
    children = ChildWatch(client)
    sites = SiteActivities(sn, settings)
    incidents = IncidentActivities(sn, settings)
    reconcile = reconcile or ReconcileActivities(sn, settings, secrets)
    files = AttachmentActivities(sn, settings)
    tasks = ChangeTaskActivities(sn, settings)
    confirmation = ConfirmationActivities(sn, settings)
    gate = GateActivities(sn, settings)
    return [
        tickets.load_change,
        tickets.begin_implementation,
        tickets.add_work_note,
        tickets.close_change,
        tickets.read_ticket,
        tickets.watch_policy,
        schedules.check_schedules,
        files.attach_file,
        tasks.open_change_task,
        tasks.close_change_task,
        confirmation.notify_change_closed,
        lookups.resolve_runbook,
        lookups.resolve_flow,
        lookups.resolve_run,
        gate.gate_policy,
        gate.verify_decision,
        gate.check_approver,
        gate.check_servicenow_approvals,
        intake.find_approved_changes,
        intake.start_change_workflows,
        callbacks.post_callback,
        sites.resolve_site,
        wave.plan_wave,
        wave.load_wave_page,
        children.watch_hosts,
        incidents.incident_policy,
        incidents.incident_impact,
        incidents.open_incident_record,
        incidents.resolve_incident_record,
        incidents.notify_slack,
        reconcile.resolve_config,
        reconcile.claim_pipeline_worker,
        *pipeline_activities(reconcile),
        reconcile.apply_batch,
        reconcile.post_summary,
        *host_activities(settings, registry, secrets),
    ]
