"""`changeloop doctor`: before the first real change, what is missing, one check per line with the fix.

The checks, in order: the runbook registry; the instance (starter/doctor_servicenow.py: the integration user, its
access, tables and fields, the Change Management API, the rate limit, the update set and the shim it points at);
Temporal (reachable, the search attributes, the schedules, a worker on the task queue). The answer is a
`Report` (starter/doctor_report.py); the run fails only when a check that blocks changes fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from config.registry import Registry, load_registry
from config.settings import Settings
from ops.connect import connect
from starter import schedules
from starter.doctor_report import Report
from starter.doctor_servicenow import CHECK_TIMEOUT, AdminLogin, InstanceChecks
from workflows.search_attributes import CHANGE_NUMBER, CMDB_CI, RUNBOOK, TICKET_STATE


def _kind(value: int) -> str:
    """An indexed value type as the temporal CLI names it: KEYWORD_LIST -> KeywordList."""
    name = IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_")  # type: ignore[arg-type]
    return "".join(part.title() for part in name.split("_"))


def check_registry(settings: Settings, report: Report) -> Registry | None:
    where = str(settings.runbooks or "the shipped config/runbooks.yaml")
    try:
        registry = load_registry(settings.runbooks)
    except ValueError as exc:
        detail = " ".join(str(exc).split())
        report.problem("registry", f"the runbook registry {where} is invalid ({detail})", "correct the file")
        return None
    report.ok("registry", f"{where} is valid: {len(registry.runbooks)} runbooks, {len(registry.match)} matches")
    return registry


async def check_temporal(settings: Settings, report: Report) -> None:
    address, namespace = settings.temporal_address, settings.temporal_namespace
    try:
        client = await asyncio.wait_for(connect(settings), CHECK_TIMEOUT)
        await asyncio.wait_for(client.service_client.check_health(), CHECK_TIMEOUT)
    except Exception as exc:  # refused, TLS, timeout: the line says which
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        report.problem(
            "temporal.reachable",
            f"Temporal at {address} is not reachable ({detail})",
            "check CHANGELOOP_TEMPORAL_ADDRESS and the TLS / API key settings",
        )
        for check_id in ("temporal.search_attributes", "temporal.schedules", "temporal.worker"):
            report.skipped(check_id, f"{check_id}: skipped (Temporal is not reachable)")
        return
    report.ok("temporal.reachable", f"Temporal at {address} answers (namespace {namespace})")
    steps: list[tuple[str, Callable[[Client, Settings, Report], Awaitable[None]]]] = [
        ("temporal.search_attributes", check_search_attributes),
        ("temporal.schedules", check_schedules),
        ("temporal.worker", check_worker),
    ]
    for check_id, step in steps:
        try:
            await asyncio.wait_for(step(client, settings, report), CHECK_TIMEOUT)
        except Exception as exc:  # e.g. the namespace does not exist
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            report.problem(check_id, f"{check_id} could not be read in {namespace} ({detail})", "check the namespace")


async def check_search_attributes(client: Client, settings: Settings, report: Report) -> None:
    namespace = settings.temporal_namespace
    answer = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    have = dict(answer.custom_attributes)
    keys: tuple[SearchAttributeKey[Any], ...] = (CHANGE_NUMBER, CMDB_CI, RUNBOOK, TICKET_STATE)
    wrong = [
        (key.name, _kind(int(key.indexed_value_type)), "missing" if key.name not in have else "of another type")
        for key in keys
        if have.get(key.name) != int(key.indexed_value_type)
    ]
    if not wrong:
        names = ", ".join(key.name for key in keys)
        report.ok("temporal.search_attributes", f"search attributes {names} are registered in {namespace}")
        return
    commands = "; ".join(
        f"temporal operator search-attribute create --namespace {namespace} --name {name} --type {kind}"
        for name, kind, _ in wrong
    )
    found = ", ".join(f"{name} ({kind}) {why}" for name, kind, why in wrong)
    report.problem("temporal.search_attributes", f"search attributes in {namespace}: {found}", commands)


async def check_schedules(client: Client, settings: Settings, report: Report) -> None:
    # The poll catches a change whose webhook never arrived; reconciliation is a separate job.
    for found in await schedules.describe(client):
        blocking = found.id == schedules.CHANGE_POLL
        check_id = f"temporal.schedule.{found.id}"
        if not found.exists:
            summary = f"schedule {found.id} does not exist ({found.description})"
            report.problem(check_id, summary, "run `changeloop schedules apply`", blocking=blocking)
        elif found.paused:
            note = f" ({found.note})" if found.note else ""
            fix = f"`temporal schedule toggle --unpause --schedule-id {found.id}` once the reason is gone"
            report.problem(check_id, f"schedule {found.id} is paused{note}", fix, blocking=False)
        else:
            report.ok(check_id, f"schedule {found.id} runs every {found.every}", blocking=blocking)


async def check_worker(client: Client, settings: Settings, report: Report) -> None:
    queue = settings.task_queue
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    pollers = sorted({p.identity for p in answer.pollers})
    if pollers:
        report.ok("temporal.worker", f"{len(pollers)} worker(s) poll task queue {queue}", blocking=False)
    else:
        summary = f"no worker polls task queue {queue}: changes would wait for one"
        report.problem("temporal.worker", summary, "start `changeloop worker`", blocking=False)


async def run_doctor(
    settings: Settings,
    *,
    admin: AdminLogin | None = None,
    user: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Report:
    """Every check, in order. Never raises for what it finds: a problem is a line of the report."""
    report = Report()
    registry = check_registry(settings, report)
    instance = InstanceChecks(settings, report, registry=registry, admin=admin, user=user, transport=transport)
    await instance.run()
    await check_temporal(settings, report)
    return report


__all__ = ["AdminLogin", "Report", "run_doctor"]
