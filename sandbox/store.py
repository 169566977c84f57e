"""Record storage: SQLite for durability, an in-memory copy for speed.

Every record is a JSON blob of string values keyed by sys_id. SQLite keeps the instance across restarts of
`changeloop sandbox`; queries run over the in-memory copy because the encoded-query evaluator is Python and a
benchmark later lists 100k CIs (parsing 100k JSON blobs per request would dominate). Insertion order is the
`seq` column and the dict order, which makes ORDERBY ties (same second) stable like the real instance.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from sandbox.tables import descendants, root_of

Record = dict[str, str]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sys_id TEXT UNIQUE NOT NULL,
    cls TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (tbl TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (sys_id TEXT PRIMARY KEY, data BLOB NOT NULL);
"""


def now_string() -> str:
    """The instance's date-time format, always UTC (the integration user's time zone)."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def new_sys_id() -> str:
    return uuid.uuid4().hex


class Store:
    """Thread-safe: uvicorn's loop, its thread pool and the test thread may all touch it."""

    def __init__(self, db_path: str = ":memory:") -> None:
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        if db_path != ":memory:":
            # WAL + NORMAL: a seed or a benchmark insert of 100k rows must not fsync per row.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        # root table -> sys_id -> record, in insertion order; class of each record kept apart.
        self._rows: dict[str, dict[str, Record]] = {}
        self._cls: dict[str, str] = {}
        self._load()

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def _load(self) -> None:
        for sys_id, cls, data in self._conn.execute("SELECT sys_id, cls, data FROM records ORDER BY seq"):
            self._rows.setdefault(root_of(cls), {})[sys_id] = json.loads(data)
            self._cls[sys_id] = cls

    def is_empty(self) -> bool:
        with self._lock:
            return not self._cls

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM records")
            self._conn.execute("DELETE FROM counters")
            self._conn.execute("DELETE FROM blobs")
            self._rows.clear()
            self._cls.clear()

    # --- reads -------------------------------------------------------------------------------------------------

    def rows(self, table: str) -> list[Record]:
        """Every record visible from `table` (its own class and every class extending it), in insertion order."""
        with self._lock:
            bucket = self._rows.get(root_of(table), {})
            if table == root_of(table):
                return list(bucket.values())
            classes = descendants(table)
            return [r for sid, r in bucket.items() if self._cls[sid] in classes]

    def get(self, table: str, sys_id: str) -> Record | None:
        with self._lock:
            cls = self._cls.get(sys_id)
            if cls is None or cls not in descendants(table):
                return None
            return self._rows[root_of(cls)][sys_id]

    def class_of(self, sys_id: str) -> str | None:
        with self._lock:
            return self._cls.get(sys_id)

    # --- writes ------------------------------------------------------------------------------------------------

    def insert(self, cls: str, record: Record) -> Record:
        return self.insert_many(cls, [record])[0]

    def insert_many(self, cls: str, records: Iterable[Record]) -> list[Record]:
        with self._lock:
            saved: list[Record] = []
            bucket = self._rows.setdefault(root_of(cls), {})
            self._conn.execute("BEGIN")
            try:
                for record in records:
                    record.setdefault("sys_id", new_sys_id())
                    self._conn.execute(
                        "INSERT INTO records (sys_id, cls, data) VALUES (?, ?, ?)",
                        (record["sys_id"], cls, json.dumps(record)),
                    )
                    saved.append(record)
                self._conn.execute("COMMIT")
            except Exception:
                self._conn.execute("ROLLBACK")
                raise
            for record in saved:
                bucket[record["sys_id"]] = record
                self._cls[record["sys_id"]] = cls
            return saved

    def update(self, sys_id: str, record: Record) -> None:
        with self._lock:
            cls = self._cls[sys_id]
            self._conn.execute("UPDATE records SET data = ? WHERE sys_id = ?", (json.dumps(record), sys_id))
            self._rows[root_of(cls)][sys_id] = record

    def delete(self, sys_id: str) -> None:
        with self._lock:
            cls = self._cls.pop(sys_id)
            self._conn.execute("DELETE FROM records WHERE sys_id = ?", (sys_id,))
            del self._rows[root_of(cls)][sys_id]

    def next_number(self, table: str, prefix: str, start: int) -> str:
        """CHG0030001, INC0010001 … : a per-table counter that survives restarts."""
        with self._lock:
            row = self._conn.execute("SELECT next FROM counters WHERE tbl = ?", (table,)).fetchone()
            value = row[0] if row else start
            self._conn.execute(
                "INSERT INTO counters (tbl, next) VALUES (?, ?) ON CONFLICT(tbl) DO UPDATE SET next = excluded.next",
                (table, value + 1),
            )
            return f"{prefix}{value:07d}"

    # --- attachment content: bytes kept out of the in-memory copy, read only when downloaded ------------------

    def put_blob(self, sys_id: str, data: bytes) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO blobs (sys_id, data) VALUES (?, ?)", (sys_id, data))

    def get_blob(self, sys_id: str) -> bytes | None:
        with self._lock:
            row = self._conn.execute("SELECT data FROM blobs WHERE sys_id = ?", (sys_id,)).fetchone()
            return bytes(row[0]) if row else None

    def delete_blob(self, sys_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM blobs WHERE sys_id = ?", (sys_id,))

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._cls))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
