"""What a wave says: counts, per-CI rows, the work-note lines and the summary. Pure functions over WaveState,
so the workflow stays about orchestration (and these are deterministic by construction)."""

from __future__ import annotations

import csv
import io
from collections import Counter

from config.runbooks import WaveParams
from workflows.wave.models import (
    CiState,
    HostOutcome,
    HostReport,
    WaveCounts,
    WaveHost,
    WaveState,
    patch_host_workflow_id,
)

# The per-host CSV is attached from the workflow: each part stays far below Temporal's 2 MB payload limit.
CSV_PART_BYTES = 1_000_000
CSV_DETAIL_CHARS = 500
CSV_HEADER = ["ci", "outcome", "detail", "workflow_id", "execution_link"]
SUMMARY_LINES_PER_NOTE = 250
CLOSE_NOTES_HOSTS = 30  # close_notes name the first troubled hosts; the work notes have them all  # a journal entry stays readable and well under any field limit
STARTED = {CiState.RUNNING, CiState.PATCHED, CiState.ROLLED_BACK, CiState.FAILED, CiState.CANCELED}
TROUBLED = (CiState.ROLLED_BACK, CiState.FAILED, CiState.CANCELED)
LABELS = {
    CiState.PENDING: "pending",
    CiState.RUNNING: "running",
    CiState.PATCHED: "patched",
    CiState.ROLLED_BACK: "ROLLED BACK",
    CiState.FAILED: "FAILED",
    CiState.CANCELED: "CANCELED",
    CiState.SKIPPED: "skipped",
    CiState.NOT_ATTEMPTED: "not attempted",
}


def counts(state: WaveState) -> WaveCounts:
    seen = Counter(state.states.values())
    planned = state.plan.total if state.plan else 0
    # Until the last page is read, CIs the CMDB counted but no page brought yet are pending too - or, once the wave
    # was canceled, never attempted.
    unseen = 0 if state.exhausted else max(0, planned - len(state.states))
    ended = state.canceled or bool(state.stopped_kind)  # no page will bring them any more
    return WaveCounts(
        total=len(state.states) + unseen,
        pending=seen[CiState.PENDING] + (0 if ended else unseen),
        running=seen[CiState.RUNNING],
        patched=seen[CiState.PATCHED],
        rolled_back=seen[CiState.ROLLED_BACK],
        failed=seen[CiState.FAILED],
        canceled=seen[CiState.CANCELED],
        skipped=seen[CiState.SKIPPED],
        not_attempted=seen[CiState.NOT_ATTEMPTED] + (unseen if ended else 0),
        unchanged=len(state.unchanged),
    )


def link(state: WaveState, workflow_id: str) -> str:
    return f"{state.plan.link_base}{workflow_id}" if state.plan else ""


def hosts(state: WaveState, number: str) -> list[WaveHost]:
    rows = []
    for name in sorted(state.states):
        ci_state = state.states[name]
        workflow_id = patch_host_workflow_id(number, name) if ci_state in STARTED else ""
        rows.append(
            WaveHost(
                ci=name,
                state=ci_state,
                detail=detail(state, name),
                workflow_id=workflow_id,
                url=link(state, workflow_id) if workflow_id else "",
            )
        )
    return rows


def detail(state: WaveState, name: str) -> str:
    if name in state.details:
        return state.details[name]
    if state.states.get(name) == CiState.NOT_ATTEMPTED:
        return f"not attempted: {state.stopped}"
    return ""


def host_note(state: WaveState, number: str, report: HostReport) -> str:
    url = link(state, patch_host_workflow_id(number, report.ci))
    seconds = (report.ended_at - report.started_at).total_seconds() if report.ended_at and report.started_at else 0
    label = LABELS[CiState(report.outcome.value)]
    text = f"{report.ci}: {label} in {seconds:.1f} s"
    if report.detail and (report.outcome != HostOutcome.PATCHED or not report.changed):
        text += f" - {report.detail}"
    return f"{text}\n  {url}"


def plan_note(state: WaveState, params: WaveParams, workflow_id: str) -> str:
    assert state.plan is not None
    plan = state.plan
    budget = f"{params.failure_budget_percent:g}%" if params.failure_budget_percent < 100 else "none"
    return (
        f"Patch wave {workflow_id}: {plan.installed} installed CI(s) of {plan.total} related to {plan.application} "
        f"({', '.join(params.relationship_types)}; {', '.join(params.ci_classes) or 'any class'}).\n"
        f"Target level {params.target_level}, max_parallel {params.max_parallel}, canary {params.canary or 'none'}, "
        f"failure budget {budget}.\n"
        f"Live progress: changeloop wave status {workflow_id.removeprefix('wave-')}\n{link(state, workflow_id)}"
    )


def summary_notes(state: WaveState, number: str, workflow_id: str) -> list[str]:
    """Every CI with its outcome and execution link, in journal-sized chunks."""
    lines = []
    for row in hosts(state, number):
        text = f"{row.ci}: {LABELS[row.state]}"
        if row.detail:
            text += f" - {row.detail}"
        if row.url:
            text += f"\n  {row.url}"
        lines.append(text)
    chunks = [lines[i : i + SUMMARY_LINES_PER_NOTE] for i in range(0, len(lines), SUMMARY_LINES_PER_NOTE)] or [[]]
    how = " (canceled)" if state.canceled else " (stopped)" if state.stopped_kind else ""
    head = f"Patch wave {workflow_id} summary{how}: {headline(counts(state))}"
    return [
        f"{head} (part {i + 1}/{len(chunks)})\n" + "\n".join(chunk)
        if len(chunks) > 1
        else f"{head}\n" + "\n".join(chunk)
        for i, chunk in enumerate(chunks)
    ]


def headline(c: WaveCounts) -> str:
    parts = [f"{c.patched} patched"]
    if c.unchanged:
        parts[0] += f" ({c.unchanged} already at target)"
    parts += [f"{c.rolled_back} rolled back", f"{c.failed} failed"]
    if c.canceled:
        parts.append(f"{c.canceled} canceled")
    parts.append(f"{c.skipped} skipped")
    if c.not_attempted:
        parts.append(f"{c.not_attempted} not attempted")
    return ", ".join(parts) + f" of {c.total} CI(s)"


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()


def csv_name(workflow_id: str, part: int = 1) -> str:
    return f"{workflow_id}.csv" if part == 1 else f"{workflow_id}-part{part}.csv"


def csv_parts(state: WaveState, number: str, workflow_id: str) -> list[tuple[str, str]]:
    """The per-host report as CSV (file name, text): every CI with its outcome, detail and execution link, sorted
    by name; split in parts of at most CSV_PART_BYTES, each with the header, for a wave of many thousand CIs."""
    header = _csv_line(CSV_HEADER)
    parts: list[list[str]] = [[]]
    size = len(header)
    for row in hosts(state, number):
        detail = row.detail if len(row.detail) <= CSV_DETAIL_CHARS else row.detail[: CSV_DETAIL_CHARS - 1] + "…"
        line = _csv_line([row.ci, row.state.value, detail, row.workflow_id, row.url])
        if parts[-1] and size + len(line.encode()) > CSV_PART_BYTES:
            parts.append([])
            size = len(header)
        parts[-1].append(line)
        size += len(line.encode())
    return [(csv_name(workflow_id, n + 1), header + "".join(lines)) for n, lines in enumerate(parts)]


def close_summary(state: WaveState, number: str, workflow_id: str, csv_file: str = "") -> str:
    """The change's close_notes: the headline and the hosts that need a look; the full list is in the work notes
    (and in `csv_file`, attached to the change)."""
    verb = " canceled" if state.canceled else " stopped" if state.stopped_kind else ""
    lines = [f"Patch wave {workflow_id}{verb}: {headline(counts(state))}."]
    if state.stopped:
        lines.append(f"Stopped: {state.stopped}.")
    troubled = [name for name in sorted(state.states) if state.states[name] in TROUBLED]
    for name in troubled[:CLOSE_NOTES_HOSTS]:
        lines.append(f"- {name}: {LABELS[state.states[name]]} - {detail(state, name)}")
    if len(troubled) > CLOSE_NOTES_HOSTS:
        lines.append(f"- ... and {len(troubled) - CLOSE_NOTES_HOSTS} more")
    where = f"the wave summary work note and the attached {csv_file}" if csv_file else "the wave summary work note"
    lines.append(f"Every CI with its outcome and execution link: see {where}.")
    return "\n".join(lines)
