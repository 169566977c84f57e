"""A work note goes to the change request it names and nowhere else: `add_work_note`'s input carries no free table
name that a crafted or buggy input could point at another table (sys_user, sys_properties) with the integration
user's write rights."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workflows.change.models import NoteInput


def test_a_note_targets_the_change_request_table_by_default() -> None:
    assert NoteInput(sys_id="abc", text="hello").table == "change_request"


@pytest.mark.parametrize("table", ["sys_user", "sys_properties", "incident", ""])
def test_a_note_naming_another_table_is_refused(table: str) -> None:
    with pytest.raises(ValidationError, match="table"):
        NoteInput.model_validate({"table": table, "sys_id": "abc", "text": "hello"})
