"""The pure pieces of the evidence a workflow composes: the runbook log's budget and layout, the wave's CSV in parts,
and the registry's `tasks` field (its digest unchanged for an entry that does not use it)."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from activities.evidence.confirmation import closed_text
from config.runbooks import LATER_RUNBOOK_FIELDS, LATER_STEP_FIELDS, Runbook, canonical_json, runbook_digest
from workflows.evidence.models import ChangeClosedInput
from workflows.evidence.text import share, size, tail
from workflows.runbook.log import LOG_BUDGET_BYTES, StepLog, keep, render
from workflows.status import StepOutcome, StepRecord
from workflows.wave import report
from workflows.wave.models import CiState, WavePlan, WaveState

T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


def _log(index: int, output: str, outcome: StepOutcome = StepOutcome.SUCCEEDED) -> StepLog:
    record = StepRecord(name=f"s{index}", outcome=outcome, started_at=T0, ended_at=T0 + timedelta(seconds=2))
    return StepLog(index=index, record=record, output=output)


def test_share_cuts_only_the_largest_items() -> None:
    assert share([10, 20, 30], 100) == 30, "everything fits"
    assert share([10, 20, 90], 60) == 30, "the small ones stay whole, the largest gets what is left"
    assert share([50, 50], 60) == 30


def test_the_log_keeps_within_its_budget_by_cutting_the_beginning_of_the_largest_outputs() -> None:
    logs: list[StepLog] = []
    keep(logs, _log(0, "small output\n"), budget=1000)
    keep(logs, _log(1, "head " + "x" * 3000 + " END-OF-BIG"), budget=1000)
    keep(logs, _log(2, "é" * 400), budget=1000)  # two bytes a character

    assert sum(size(log.output) for log in logs) <= 1000
    assert logs[0].output == "small output\n" and logs[0].cut == 0
    assert logs[1].output.endswith(" END-OF-BIG") and not logs[1].output.startswith("head")
    assert logs[1].cut == size("head " + "x" * 3000 + " END-OF-BIG") - size(logs[1].output)
    assert set(logs[2].output) == {"é"}, "a character cut in half is dropped, never garbled"


def test_the_log_names_every_step_its_outcome_and_what_was_cut() -> None:
    logs = [_log(0, "one\n"), _log(1, "two\n", StepOutcome.FAILED)]
    logs[1].record.detail, logs[1].record.attempts, logs[1].cut = "exited with 2", 3, 42

    text = render(
        runbook="rb", workflow_id="runbook-CHG1", change_number="CHG1", step_names=["s0", "s1", "s2"], logs=logs,
        ended="FAILED at step 's1'",
    )  # fmt: skip

    assert text.splitlines()[0] == "changeloop: runbook 'rb' for CHG1, FAILED at step 's1'"
    assert (
        "=== step 1/3 's0' - succeeded in 2.0 s (2025-06-02 08:00:00 UTC -> 2025-06-02 08:00:02 UTC) ===\none" in text
    )
    assert "=== step 2/3 's1' - FAILED in 2.0 s, 3 attempt(s)" in text and "error: exited with 2" in text
    assert "the first 42 bytes of this output were cut" in text
    assert "=== step 3/3 's2' - not run ===" in text


def test_tail_keeps_the_end_in_bytes() -> None:
    assert tail("abcdef", 3) == "def" and tail("abc", 10) == "abc" and tail("ab", 0) == ""


def _wave(cis: int) -> WaveState:
    plan = WavePlan(application="app", application_sys_id="x", total=cis, installed=cis, link_base="http://ui/wf/")
    states = {f"host-{n:05d}": CiState.PATCHED for n in range(cis)}
    states["host-00001"] = CiState.ROLLED_BACK
    states["host-00002"] = CiState.NOT_ATTEMPTED
    return WaveState(
        plan=plan,
        exhausted=True,
        states=states,
        details={"host-00001": 'health check failed, "app" down; rolled back\nsee log'},
        stopped="failure budget exceeded",
    )


def test_the_wave_csv_lists_every_ci_with_its_outcome_detail_and_link() -> None:
    [(name, text)] = report.csv_parts(_wave(3), "CHG1", "wave-CHG1")

    assert name == "wave-CHG1.csv"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["ci"], r["outcome"]) for r in rows] == [
        ("host-00000", "patched"),
        ("host-00001", "rolled_back"),
        ("host-00002", "not_attempted"),
    ]
    assert rows[1]["detail"] == 'health check failed, "app" down; rolled back\nsee log', "quoted, never split"
    assert (rows[1]["workflow_id"], rows[1]["execution_link"]) == (
        "patch-CHG1-host-00001",
        "http://ui/wf/patch-CHG1-host-00001",
    )
    assert rows[2]["detail"] == "not attempted: failure budget exceeded" and rows[2]["execution_link"] == ""


def test_a_wave_of_many_thousand_cis_is_attached_in_parts_that_each_fit_a_payload() -> None:
    parts = report.csv_parts(_wave(20_000), "CHG1", "wave-CHG1")

    assert len(parts) >= 2 and [name for name, _ in parts][:2] == ["wave-CHG1.csv", "wave-CHG1-part2.csv"]
    assert all(size(text) <= report.CSV_PART_BYTES for _, text in parts)
    rows = [row for _, text in parts for row in csv.DictReader(io.StringIO(text))]
    assert len(rows) == 20_000 and len({r["ci"] for r in rows}) == 20_000


def test_tasks_per_step_is_a_registry_field_that_leaves_other_digests_alone() -> None:
    plain = Runbook.model_validate({"name": "r", "steps": [{"name": "a", "command": ["true"]}]})
    with_tasks = plain.model_copy(update={"tasks": "per_step", "task_group": "Ops"})
    data = plain.model_dump(mode="json", by_alias=True)
    for name in LATER_RUNBOOK_FIELDS:  # every field added since digests were handed out, at its default
        del data[name]
    for step in data["steps"]:
        for name in LATER_STEP_FIELDS:
            del step[name]
    # The digest an older worker computed for this entry (before the fields existed) is still the digest.
    assert runbook_digest(plain) == hashlib.sha256(canonical_json(data)).hexdigest()
    assert runbook_digest(with_tasks) != runbook_digest(plain)
    with pytest.raises(ValidationError, match="named twice: a"):
        Runbook.model_validate(
            {
                "name": "r",
                "tasks": "per_step",
                "steps": [{"name": "a", "command": ["x"]}, {"name": "a", "command": ["y"]}],
            }
        )
    with pytest.raises(ValidationError):
        Runbook.model_validate({"name": "r", "tasks": "per_host"})


def test_the_log_budget_keeps_the_attachment_input_under_temporal_payload_limit() -> None:
    assert LOG_BUDGET_BYTES + 64 * 1024 < 2 * 1024 * 1024


def test_the_close_confirmation_shows_slack_markup_from_step_output_literally() -> None:
    """A failed run's first close line quotes its step's output: whatever a host printed must not ping the channel or
    disguise a link in the confirmation (the review's finding 6)."""
    summary = (
        "Runbook 'r' failed at step 's': step 's' exited with 1: <!channel> <https://evil.example|Approve CHG> & co"
    )
    request = ChangeClosedInput(
        number="CHG0030001",
        sys_id="abc",
        close_code="unsuccessful",
        runbook="r<@U123>",
        summary=summary,
        workflow_id="change-CHG0030001",
    )
    text = closed_text(request, "https://instance.example/change_request.do?sys_id=abc", "http://ui.example/x")
    assert "<!channel>" not in text and "<https://evil.example|" not in text and "<@U123>" not in text
    assert "&lt;!channel&gt;" in text and "&amp; co" in text
    assert text.endswith(
        "<https://instance.example/change_request.do?sys_id=abc|CHG0030001 in ServiceNow> · <http://ui.example/x|execution in Temporal>"
    )
