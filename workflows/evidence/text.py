"""Evidence text that workflows compose themselves (pure, deterministic): an excerpt for a task's close notes, and
the end of a text within a byte budget. The activities scrub and cap what reaches ServiceNow (activities/evidence/)."""

from __future__ import annotations

EXCERPT_CHARS = 1500  # a task's close notes quote this much of a step's output (its end)


def excerpt(text: str, chars: int = EXCERPT_CHARS) -> str:
    """The end of an output, for a close note: a note is read on a form, the full text is in the attachment."""
    text = text.strip()
    return text if len(text) <= chars else "…" + text[-chars:]


def size(text: str) -> int:
    return len(text.encode())


def tail(text: str, budget: int) -> str:
    """The end of `text` in at most `budget` UTF-8 bytes (a character cut in half is dropped)."""
    data = text.encode()
    return text if len(data) <= budget else data[len(data) - max(budget, 0) :].decode(errors="ignore")


def share(sizes: list[int], budget: int) -> int:
    """The largest per-item size s with sum(min(size, s)) <= budget: cut only the largest items, each to s."""
    remaining, left = budget, len(sizes)
    for item in sorted(sizes):
        if item * left <= remaining:
            remaining -= item
            left -= 1
        else:
            return remaining // left
    return max(sizes, default=0)
