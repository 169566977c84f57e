"""The runbook's log: every step's output as the step returned it, kept in the workflow (not in its `status`, whose
step records stay short) and attached to the change at the run's end as one text file, `<workflow id>.log`.

Each step's output arrives scrubbed and capped by the step itself (CHANGELOOP_STEP_OUTPUT_MAX_BYTES); the run keeps
at most LOG_BUDGET_BYTES of them in all, so the attachment's input stays well within Temporal's 2 MB payload limit:
past the budget the largest outputs lose their beginning (the end of an output is where a failure shows), each by
as little as the budget allows, and the file says how much was cut. Pure functions over pydantic models.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from workflows.evidence.text import share, size, tail
from workflows.status import StepOutcome, StepRecord

LOG_BUDGET_BYTES = 1_000_000
NOT_RUN = "not run"


def log_file_name(workflow_id: str) -> str:
    return f"{workflow_id}.log"


class StepLog(BaseModel):
    """One step's output in the run's log."""

    index: int
    record: StepRecord
    output: str = ""
    cut: int = 0  # bytes dropped from its beginning to keep the run's log within the budget


def keep(logs: list[StepLog], new: StepLog, budget: int = LOG_BUDGET_BYTES) -> None:
    """Add `new` to `logs`, then cut the largest outputs' beginnings until the whole fits `budget`."""
    logs.append(new)
    sizes = [size(log.output) for log in logs]
    if sum(sizes) <= budget:
        return
    most = share(sizes, budget)
    for log, length in zip(logs, sizes, strict=True):
        if length > most:
            log.output = tail(log.output, most)
            log.cut += length - size(log.output)


def _seconds(record: StepRecord) -> float:
    return ((record.ended_at or record.started_at) - record.started_at).total_seconds()


def _stamp(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"


def render(
    *, runbook: str, workflow_id: str, change_number: str, step_names: list[str], logs: list[StepLog], ended: str
) -> str:
    """The log file: a header, then each step in order with its outcome, times and output; steps never reached say
    so. `ended` says how the run ended (succeeded, failed at ..., canceled)."""
    total = len(step_names)
    lines = [
        f"changeloop: runbook '{runbook}'" + (f" for {change_number}" if change_number else "") + f", {ended}",
        f"Execution: {workflow_id}",
        "Each step's output as the step returned it: scrubbed of the worker's secrets, capped per step by the "
        "worker's CHANGELOOP_STEP_OUTPUT_MAX_BYTES.",
        "",
    ]
    by_index = {log.index: log for log in logs}
    for index, name in enumerate(step_names):
        log = by_index.get(index)
        if log is None:
            lines += [f"=== step {index + 1}/{total} '{name}' - {NOT_RUN} ===", ""]
            continue
        record = log.record
        outcome = record.outcome.value if record.outcome != StepOutcome.FAILED else "FAILED"
        attempts = f", {record.attempts} attempt(s)" if record.attempts else ""
        lines.append(
            # No ':' after the name: the scrubber reads "'... secret': x" as a credential assignment.
            f"=== step {index + 1}/{total} '{name}' - {outcome} in {_seconds(record):.1f} s{attempts} "
            f"({_stamp(record.started_at)} -> {_stamp(record.ended_at)}) ==="
        )
        if record.outcome == StepOutcome.FAILED and record.detail:
            lines.append(f"error: {record.detail}")
        if log.cut:
            lines.append(f"[... the first {log.cut} bytes of this output were cut to keep the log within its budget]")
        lines += [log.output.rstrip("\n") if log.output.strip() else "(no output)", ""]
    return "\n".join(lines)
