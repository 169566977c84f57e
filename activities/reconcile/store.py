"""A reconciliation run's data outside workflow history: its scans, its CMDB pull and its delta batches.

One directory per execution (`<state dir>/<workflow id>__<run id>/`), JSON lines for the large parts, on the local
disk of the worker that holds the run's pipeline: every stage that reads or writes it is sent to that worker's own
task queue (workflows/reconcile/workflow.py), so the state dir is never shared. The run's last activity removes the
directory; a worker removes what lost runs left behind (`prune`). A site worker keeps a scan's packed chunks here
until the pipeline's worker has fetched them (activities/reconcile/site_scan.py).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.exceptions import ApplicationError

from workflows.reconcile.models import DeltaBatch, InventoryRecord, RecordChunk

STALE = timedelta(days=2)  # a run directory untouched this long belongs to a run that lost this worker


def run_key(workflow_id: str, run_id: str, *parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "__".join([workflow_id, run_id, *parts]))


def prune(state_dir: Path, older_than: timedelta = STALE) -> int:
    """Remove run directories nobody touched for `older_than`: a run that lost this worker (it was stopped, or the
    run moved on) never comes back for them. Answers how many went."""
    if not state_dir.is_dir():
        return 0
    cutoff = time.time() - older_than.total_seconds()
    gone = 0
    for path in state_dir.iterdir():
        if path.is_dir() and path.stat().st_mtime < cutoff:
            shutil.rmtree(path, ignore_errors=True)
            gone += 1
    return gone


class RunStore:
    def __init__(self, state_dir: Path, key: str) -> None:
        self.path = state_dir / key

    def _file(self, name: str) -> Path:
        return self.path / name

    def _write_lines(self, name: str, rows: Iterable[str]) -> int:
        self.path.mkdir(parents=True, exist_ok=True)
        count = 0
        partial = self._file(name + ".partial")
        with partial.open("w") as out:
            for row in rows:
                out.write(row + "\n")
                count += 1
        partial.replace(self._file(name))  # a retried activity never reads half a file
        return count

    def _read_lines(self, name: str) -> Iterator[str]:
        path = self._file(name)
        if not path.exists():
            # Stages reach the worker that holds the files through its own queue: a missing file was removed by
            # hand, or this is a run from before that (which relied on a shared state dir) on another worker.
            raise ApplicationError(
                f"{path} is gone from this worker's state dir", type="ReconcileStateMissing", non_retryable=True
            )
        with path.open() as rows:
            yield from (line for line in rows if line.strip())

    def save_scan(self, source: str, records: Iterable[InventoryRecord]) -> int:
        return self._write_lines(f"scan-{source}.jsonl", (r.model_dump_json(by_alias=True) for r in records))

    def scan(self, source: str, chunks: int = 0) -> Iterator[InventoryRecord]:
        """A source's records: stored whole by its scan, or in `chunks` chunks (a site's), every one of them."""
        names = [f"scan-{source}.{index}.jsonl" for index in range(chunks)] if chunks else [f"scan-{source}.jsonl"]
        return (InventoryRecord.model_validate_json(line) for name in names for line in self._read_lines(name))

    def save_scan_chunk(self, source: str, index: int, records: Iterable[InventoryRecord]) -> int:
        return self._write_lines(f"scan-{source}.{index}.jsonl", (r.model_dump_json(by_alias=True) for r in records))

    def save_packed(self, chunks: Iterable[RecordChunk]) -> int:
        """A site scan's chunks, one file each (a fetch reads only its own)."""
        return sum(self._write_lines(f"packed-{c.index}.json", [c.model_dump_json()]) for c in chunks)

    def packed(self, index: int) -> RecordChunk:
        for line in self._read_lines(f"packed-{index}.json"):
            return RecordChunk.model_validate_json(line)
        raise ApplicationError(f"chunk {index} is empty", type="ReconcileStateMissing", non_retryable=True)

    def save_cmdb(self, cis: Iterable[dict[str, Any]]) -> int:
        return self._write_lines("cmdb.jsonl", (json.dumps(ci) for ci in cis))

    def cmdb(self) -> Iterator[dict[str, Any]]:
        return (json.loads(line) for line in self._read_lines("cmdb.jsonl"))

    def save_batches(self, batches: list[DeltaBatch]) -> int:
        return self._write_lines("delta.jsonl", (b.model_dump_json(by_alias=True) for b in batches))

    def batch(self, index: int) -> DeltaBatch:
        for number, line in enumerate(self._read_lines("delta.jsonl")):
            if number == index:
                return DeltaBatch.model_validate_json(line)
        raise ApplicationError(f"no delta batch {index}", type="ReconcileStateMissing", non_retryable=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
