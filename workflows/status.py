"""What every long-running workflow's `status` query shares: the query's name and the step records."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

QUERY_STATUS = "status"


class StepOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"  # stopped on request: its detail says what was done and undone


class StepRecord(BaseModel):
    name: str
    outcome: StepOutcome
    started_at: datetime
    ended_at: datetime | None = None
    detail: str = ""
    # Of a failed step, for the incident it opens: the activity's error type and how many attempts it made (0 unknown).
    activity: str = ""
    error_type: str = ""
    attempts: int = 0


class Progress(BaseModel):
    done: int = 0
    total: int = 0


class StepProgress(BaseModel):
    """What every status query says about steps: the current one, counters, and the steps done with their times."""

    step: str = ""
    progress: Progress = Progress()
    steps: list[StepRecord] = []

    def record_step(self, record: StepRecord) -> None:
        self.steps.append(record)
        self.step = record.name
        if record.outcome == StepOutcome.SUCCEEDED:
            self.progress.done += 1
