"""Secrets never reach the logs: the redactor scrubs every configured value wherever it appears in an event."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from ops.logs import REDACTED, SecretRedactor, configure_logging, get_logger

SECRET = "s3cr3t-token-value"
OTHER = "hunter2-password"


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    """configure_logging() is global; put structlog back so later tests don't write to a closed capture stream."""
    yield
    structlog.reset_defaults()


def redact(event: dict[str, object]) -> dict[str, object]:
    return SecretRedactor([SECRET, OTHER])(None, "info", event)


def test_a_secret_inside_the_message_string_is_redacted():
    event = redact({"event": f"calling with Bearer {SECRET} now"})
    assert event["event"] == f"calling with Bearer {REDACTED} now"


def test_a_secret_inside_nested_dicts_lists_and_tuples_is_redacted():
    event = redact(
        {
            "event": "request",
            "request": {"headers": {"Authorization": f"Basic {SECRET}"}, "form": [("password", OTHER)]},
            "attempts": [1, {"token": SECRET}],
            "count": 3,
        }
    )
    assert event["request"] == {"headers": {"Authorization": f"Basic {REDACTED}"}, "form": [("password", REDACTED)]}
    assert event["attempts"] == [1, {"token": REDACTED}]
    assert event["count"] == 3
    assert SECRET not in repr(event) and OTHER not in repr(event)


def test_a_secret_used_as_a_key_is_redacted():
    assert redact({"event": "x", SECRET: "value"}) == {"event": "x", REDACTED: "value"}


def test_a_secret_inside_an_exception_text_is_redacted():
    event = redact({"event": "failed", "error": RuntimeError(f"token {SECRET} rejected")})
    assert SECRET not in str(event["error"])
    assert REDACTED in str(event["error"])


def test_a_secret_containing_another_secret_is_redacted_whole():
    event = SecretRedactor(["abcd", "abcd-longer-secret"])(None, "info", {"event": "x abcd-longer-secret y"})
    assert event["event"] == f"x {REDACTED} y"


def test_without_secrets_the_event_is_untouched():
    event = {"event": "hello", "n": 1}
    assert SecretRedactor([])(None, "info", event) is event
    assert SecretRedactor(["", ""]).secrets == []


def test_configured_logging_prints_stars_instead_of_the_secret(capsys, restore_structlog):
    configure_logging([SECRET, OTHER], json=True)
    get_logger("test").info(f"token is {SECRET}", password=OTHER, nested={"deep": [SECRET]})
    line = capsys.readouterr().err.strip()
    assert SECRET not in line and OTHER not in line
    event = json.loads(line)
    assert event["event"] == f"token is {REDACTED}"
    assert event["password"] == REDACTED
    assert event["nested"] == {"deep": [REDACTED]}
    assert event["level"] == "info"


def test_a_secret_in_a_logged_traceback_is_redacted(capsys, restore_structlog):
    configure_logging([SECRET], json=True)
    try:
        raise ValueError(f"the instance refused token {SECRET}")
    except ValueError:
        get_logger().exception("call failed")
    err = capsys.readouterr().err
    assert SECRET not in err
    event = json.loads(err.strip())
    assert "ValueError" in event["exception"]
    assert f"refused token {REDACTED}" in event["exception"]


def test_console_rendering_is_redacted_too(capsys, restore_structlog):
    configure_logging([SECRET], json=False)
    get_logger().warning("leak?", header=f"Bearer {SECRET}")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert REDACTED in err


def test_events_below_the_configured_level_are_dropped(capsys, restore_structlog):
    configure_logging([SECRET], level="warning", json=True)
    get_logger().info("quiet")
    get_logger().warning("loud")
    lines = capsys.readouterr().err.strip().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["loud"]
