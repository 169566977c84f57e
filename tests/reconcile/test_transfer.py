"""Records through history (activities/reconcile/transfer.py): a site's scan packed into chunks no larger than
CHUNK_BYTES, every record back exactly once, and a source past its bound refused as a whole."""

from __future__ import annotations

import base64
import uuid

import pytest

from activities.reconcile.transfer import TooLarge, pack, unpack
from workflows.reconcile.models import CHUNK_BYTES, InventoryRecord


def _records(count: int) -> list[InventoryRecord]:
    # Random names and keys: the worst case for compression, so the records take several chunks.
    return [
        InventoryRecord(
            name=f"host-{uuid.uuid4().hex}",
            ci_class="cmdb_ci_linux_server",
            key=uuid.uuid4().hex,
            ip=f"10.0.{n // 250}.{n % 250}",
            os="Linux",
            source="dc",
            attributes={"fqdn": f"{uuid.uuid4().hex}.example.com"},
        )
        for n in range(count)
    ]


def test_records_come_back_in_order_from_chunks_no_larger_than_a_chunk() -> None:
    records = _records(9_000)

    chunks = pack("dc", records, max_bytes=10_000_000)

    assert len(chunks) >= 3
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(len(base64.b64decode(c.data)) <= CHUNK_BYTES for c in chunks)
    assert sum(c.records for c in chunks) == len(records)
    assert [r for c in chunks for r in unpack(c)] == records


def test_no_record_is_one_empty_chunk() -> None:
    chunks = pack("dc", [], max_bytes=1_000)

    assert [(c.index, c.records) for c in chunks] == [(0, 0)]
    assert unpack(chunks[0]) == []


def test_a_source_past_its_bound_is_refused_naming_the_setting() -> None:
    with pytest.raises(TooLarge, match="site_transfer_bytes"):
        pack("dc", _records(3_000), max_bytes=50_000)
