"""What leaves the worker as evidence (attachments, task close notes): scrubbed of secrets, and of a bounded size.

Step output is whatever a command printed, so it may hold a password or a token: every text goes through the one
scrubber (ops/scrub.py: the settings' secrets and the worker's named secrets in every form they travel in, then
anything shaped like `password=…`, `token: …` or a Bearer header).
A text over the cap keeps its head and, larger, its tail - the end of an output is where a failure shows - with a
line saying how much was cut.
"""

from __future__ import annotations

from config.settings import Settings
from ops.scrub import SCRUBBER

CUT_LINE = "\n[... {cut} bytes cut by changeloop: the cap is {cap} bytes ...]\n"


def clean(settings: Settings, text: str) -> str:
    """The process's scrubber over `text` (the worker installed it at start); the settings' secrets join it if it
    did not know them yet (an activity built outside a worker, in a test)."""
    SCRUBBER.add(settings.secret_values())
    return SCRUBBER.text(text)


def capped(text: str, cap: int) -> tuple[bytes, bool]:
    """`text` as UTF-8 of at most `cap` bytes (when cap leaves room for the cut line), and whether it was cut."""
    data = text.encode()
    if len(data) <= cap:
        return data, False
    marker = CUT_LINE.format(cut=len(data) - cap, cap=cap).encode()
    room = cap - len(marker)
    if room <= 0:
        return data[-cap:].decode(errors="ignore").encode(), True
    head = room // 3
    # A cut may split a character: decoding with errors="ignore" drops its broken half.
    kept = data[:head].decode(errors="ignore").encode() + marker
    return kept + data[len(data) - (room - head) :].decode(errors="ignore").encode(), True
