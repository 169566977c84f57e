"""A patch wave's change is found whole by `ChangeNumber = '<number>'`: the change, its `wave-<number>` child (started
by the change with the attribute) and every host workflow the wave started."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from config.settings import Settings
from tests.changes import Changes
from tests.helpers import listed_for_change
from tests.wave.conftest import FLEET, FleetControl, run_wave
from workflows import search_attributes as sa
from workflows.change.models import change_workflow_id
from workflows.wave.models import patch_host_workflow_id, wave_workflow_id


async def test_a_change_number_search_lists_the_change_its_wave_and_every_host(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    wave = await run_wave(temporal_client, wave_settings, changes)
    number = wave.number
    expected = {change_workflow_id(number), wave_workflow_id(number)}
    expected |= {patch_host_workflow_id(number, name) for name in FLEET}

    found = await listed_for_change(temporal_client, number, expected)
    assert found.keys() == expected
    described = await temporal_client.get_workflow_handle(wave_workflow_id(number)).describe()
    assert described.typed_search_attributes.get(sa.CHANGE_NUMBER) == number
    assert described.typed_search_attributes.get(sa.CMDB_CI) == ["fleet"]
