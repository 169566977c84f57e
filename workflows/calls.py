"""Activity names: the only thing workflows know of activities/ (they call activities by name)."""

from __future__ import annotations


class Act:
    """Activity names, the only thing workflows know of activities/."""

    LOAD_CHANGE = "load_change"
    RESOLVE_RUNBOOK = "resolve_runbook"
    RESOLVE_FLOW = "resolve_flow"
    BEGIN_IMPLEMENTATION = "begin_implementation"
    ADD_WORK_NOTE = "add_work_note"
    CLOSE_CHANGE = "close_change"
    RUN_STEP = "run_step"
    POST_CALLBACK = "post_callback"
    FIND_APPROVED_CHANGES = "find_approved_changes"
    START_CHANGE_WORKFLOWS = "start_change_workflows"


class ReconcileAct:
    """Activity names of the reconciliation (workflows call activities by name)."""

    SCAN_SOURCE = "reconcile_scan_source"
    PULL_CMDB = "reconcile_pull_cmdb"
    DIFF = "reconcile_diff"
    LOAD_BATCH = "reconcile_load_batch"
    APPLY_BATCH = "reconcile_apply_batch"
    POST_SUMMARY = "reconcile_post_summary"
    CLEAN_UP = "reconcile_clean_up"


class WaveAct:
    """Activity names of the wave and the host operator (workflows know activities by name only)."""

    PLAN_WAVE = "plan_wave"
    LOAD_WAVE_PAGE = "load_wave_page"
    HOST_SNAPSHOT = "host_snapshot"
    HOST_PATCH = "host_patch"
    HOST_HEALTH_CHECK = "host_health_check"
    HOST_ROLLBACK = "host_rollback"
    HOST_RUN_ACTION = "host_run_action"


class IncidentAct:
    """Activity names of the incident path."""

    POLICY = "incident_policy"
    IMPACT = "incident_impact"
    OPEN = "open_incident_record"
    RESOLVE = "resolve_incident_record"
    SLACK = "notify_slack"


# Site routing (workflows/site/models.py): the central worker answers which site queue a CI's host operations use.
RESOLVE_SITE = "resolve_site"
