"""What `changeloop doctor` answers: one check per line, with its status, whether it blocks changes, and the fix.

The run fails (exit 1) only when a blocking check fails. Warnings, information, checks that could not be verified
(`unknown`: a read was refused) and checks skipped because one they depend on failed never fail it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class Status(StrEnum):
    OK = "ok"
    FAIL = "fail"
    WARN = "warn"
    INFO = "info"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


MARKS = {
    Status.OK: "✓",
    Status.FAIL: "✗",
    Status.WARN: "!",
    Status.INFO: "i",
    Status.UNKNOWN: "?",
    Status.SKIPPED: "-",
}

# The first part of a check's id names its area, which groups the lines.
AREAS = {
    "registry": "runbook registry",
    "servicenow": "ServiceNow",
    "update_set": "update set",
    "shim": "shim",
    "temporal": "Temporal",
}


class Check(BaseModel):
    id: str  # stable, dotted: scripts select checks by it
    status: Status
    blocking: bool  # a failure of this check blocks changes
    summary: str  # what was found
    fix: str = ""  # what to do about it

    @property
    def area(self) -> str:
        return AREAS.get(self.id.split(".", 1)[0], self.id.split(".", 1)[0])

    def line(self) -> str:
        text = f"{MARKS[self.status]} {self.summary}"
        return f"{text}: {self.fix}" if self.fix and self.status != Status.OK else text


class Report(BaseModel):
    checks: list[Check] = []

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.blocking and c.status == Status.FAIL]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def get(self, check_id: str) -> Check:
        found = [c for c in self.checks if c.id == check_id]
        if len(found) != 1:
            raise KeyError(f"{len(found)} checks with id {check_id!r}: {[c.id for c in self.checks]}")
        return found[0]

    # -- recording, as the checks run ------------------------------------------------------------------------

    def _add(self, check_id: str, status: Status, blocking: bool, summary: str, fix: str) -> None:
        self.checks.append(Check(id=check_id, status=status, blocking=blocking, summary=summary, fix=fix))

    def ok(self, check_id: str, summary: str, *, blocking: bool = True) -> None:
        self._add(check_id, Status.OK, blocking, summary, "")

    def problem(self, check_id: str, summary: str, fix: str, *, blocking: bool = True) -> None:
        """A failure when the check blocks changes, a warning otherwise."""
        self._add(check_id, Status.FAIL if blocking else Status.WARN, blocking, summary, fix)

    def info(self, check_id: str, summary: str) -> None:
        self._add(check_id, Status.INFO, False, summary, "")

    def unknown(self, check_id: str, summary: str, fix: str) -> None:
        self._add(check_id, Status.UNKNOWN, False, summary, fix)

    def skipped(self, check_id: str, summary: str) -> None:
        self._add(check_id, Status.SKIPPED, False, summary, "")
