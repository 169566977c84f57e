"""The scheduled poll's contract: which approved changes to look for, and what it started."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class PollInput(BaseModel):
    types: list[str] = ["standard"]
    page_size: int = 200


class PollResult(BaseModel):
    found: int
    started: list[str] = []
    already_known: list[str] = []


class PollQuery(BaseModel):
    types: list[str] = ["standard"]
    page_size: int = 200


class StartChangesInput(BaseModel):
    numbers: list[str]
    source: Literal["webhook", "poll", "cli", "api"] = "poll"
