"""Records through history: a site worker's scan packed into chunks the pipeline's worker unpacks and stores.

A site worker shares no disk and no network path with the central workers (it has no inbound port), so Temporal
is the only way its records travel: as activity results, which history keeps. Each chunk is the records as JSON
lines, zlib-compressed (inventories are repetitive: about a tenth of their JSON), base64 for the JSON payload, at
most CHUNK_BYTES compressed; a source's chunks together stay within the run's `site_transfer_bytes`, so a run's
history stays bounded however large a site's inventory grows. A source over the bound fails as a whole (its CIs
are unknown, never missing), with the number to raise.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Iterator

from workflows.reconcile.models import CHUNK_BYTES, InventoryRecord, RecordChunk

RAW_GUESS = 8  # raw bytes per compressed byte to aim a first cut at (inventories compress about 10:1); worse: split


class TooLarge(Exception):
    """The records do not fit the bound a run allows one site source."""


def _packed(lines: list[str]) -> bytes:
    return zlib.compress("\n".join(lines).encode(), 6)


def _cut(lines: list[str], limit: int) -> Iterator[tuple[int, bytes]]:
    """`lines` as (count, compressed blob of at most `limit` bytes), halving a group until it fits."""
    if not lines:
        yield 0, b""
        return
    packed = _packed(lines)
    if len(packed) <= limit:
        yield len(lines), packed
        return
    if len(lines) == 1:
        raise TooLarge(f"one record takes {len(packed)} compressed bytes, more than a chunk ({limit})")
    middle = len(lines) // 2
    yield from _cut(lines[:middle], limit)
    yield from _cut(lines[middle:], limit)


def pack(
    source: str, records: Iterable[InventoryRecord], *, max_bytes: int, limit: int = CHUNK_BYTES
) -> list[RecordChunk]:
    """The records in chunks (at least one, empty when there is no record); TooLarge past `max_bytes` in total."""
    groups: list[list[str]] = [[]]
    size = 0
    for record in records:
        line = record.model_dump_json(by_alias=True)
        if size + len(line) > limit * RAW_GUESS and groups[-1]:
            groups.append([])
            size = 0
        groups[-1].append(line)
        size += len(line) + 1
    blobs = [cut for group in groups for cut in _cut(group, limit)]
    total = sum(len(blob) for _, blob in blobs)
    if total > max_bytes:
        raise TooLarge(
            f"{source}: its records take {total} compressed bytes, more than site_transfer_bytes ({max_bytes}) "
            "allows one site source: raise it, or split the source"
        )
    return [
        RecordChunk(source=source, index=index, records=count, data=base64.b64encode(blob).decode())
        for index, (count, blob) in enumerate(blobs)
    ]


def unpack(chunk: RecordChunk) -> list[InventoryRecord]:
    blob = base64.b64decode(chunk.data)
    if not blob:
        return []
    return [InventoryRecord.model_validate_json(line) for line in zlib.decompress(blob).decode().split("\n")]
