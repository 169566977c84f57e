"""CMDB routing (activities/cmdb.py): the group that owns a CI, and impact/urgency from its criticality."""

from __future__ import annotations

from activities.incident.triage import Router, routing_for
from config.reconcile import CriticalityRule, RoutingConfig
from sandbox.seed import seed_sys_id
from servicenow.client import ServiceNowClient


def group(name: str) -> str:
    return seed_sys_id("sys_user_group", name)


def ci(name: str) -> str:
    return seed_sys_id("cmdb_ci", name)


async def test_an_application_routes_to_its_support_group_at_its_own_criticality(sn_client: ServiceNowClient) -> None:
    routing = await routing_for(sn_client, ci("payments-api"))
    assert (routing.assignment_group, routing.group_source) == (group("Payments SRE"), "support_group")
    assert (routing.impact, routing.urgency, routing.criticality_source) == ("1", "1", "ci")


async def test_a_server_takes_the_criticality_of_the_application_that_runs_on_it(sn_client: ServiceNowClient) -> None:
    routing = await routing_for(sn_client, ci("web-01"))
    assert (routing.criticality, routing.criticality_source) == ("2 - somewhat critical", "parent")
    assert (routing.impact, routing.urgency) == ("2", "2")
    assert routing.assignment_group == group("Web Platform")


async def test_without_support_group_the_managed_by_group_then_the_default_group_gets_it(
    sn_client: ServiceNowClient,
) -> None:
    wiki = await routing_for(sn_client, ci("wiki-01"))
    assert (wiki.assignment_group, wiki.group_source) == (group("Service Desk"), "managed_by_group")
    assert (wiki.impact, wiki.urgency) == ("3", "3")  # internal-wiki: 4 - not critical
    batch = await routing_for(sn_client, ci("batch-01"), RoutingConfig(default_group="Change Advisory Board"))
    assert (batch.assignment_group, batch.group_source) == (group("Change Advisory Board"), "default")


async def test_the_mapping_table_is_configurable(sn_client: ServiceNowClient) -> None:
    urgent = RoutingConfig(criticality={"1": CriticalityRule(impact="1", urgency="2")}, inherit_from_parents=False)
    router = Router(sn_client, urgent)
    assert (await router.route(ci("payments-api"))).urgency == "2"
    server = await router.route(ci("pay-web-01"))  # no criticality of its own, inheritance off: the `unknown` row
    assert (server.impact, server.urgency, server.criticality_source) == ("3", "3", "none")


async def test_prefetch_reads_parent_criticality_for_many_cis_in_one_go(sn_client: ServiceNowClient) -> None:
    router = Router(sn_client)
    await router.prefetch([ci("web-01"), ci("data-01"), ci("batch-01")])
    calls = sum(sn_client.calls.values())
    routed = {name: await router.route(ci(name)) for name in ("web-01", "data-01")}
    assert sum(sn_client.calls.values()) - calls == 2  # each route reads its CI, nothing about parents
    assert (routed["web-01"].impact, routed["web-01"].urgency) == ("2", "2")  # web-storefront: 2
    assert (routed["data-01"].impact, routed["data-01"].urgency) == ("2", "3")  # reporting-etl: 3
