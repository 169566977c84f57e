"""A reconciliation run's data outside workflow history: its scans, its CMDB pull and its delta batches.

One directory per execution (`<state dir>/<workflow id>__<run id>/`), JSON lines for the large parts. Every worker
polling the task queue must see the same state dir (one worker, or a shared volume); the run's last activity
removes the directory.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from temporalio.exceptions import ApplicationError

from workflows.reconcile.models import DeltaBatch, InventoryRecord


def run_key(workflow_id: str, run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{workflow_id}__{run_id}")


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
            raise ApplicationError(
                f"{path} is gone: every worker of this task queue must share CHANGELOOP_RECONCILE_STATE_DIR",
                type="ReconcileStateMissing",
                non_retryable=True,
            )
        with path.open() as rows:
            yield from (line for line in rows if line.strip())

    def save_scan(self, source: str, records: Iterable[InventoryRecord]) -> int:
        return self._write_lines(f"scan-{source}.jsonl", (r.model_dump_json(by_alias=True) for r in records))

    def scan(self, source: str) -> Iterator[InventoryRecord]:
        return (InventoryRecord.model_validate_json(line) for line in self._read_lines(f"scan-{source}.jsonl"))

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
