"""Structured logging on stderr: JSON when stderr is not a terminal, coloured console when it is.

Every record passes the one scrubber (ops/scrub.py) before it is rendered: structlog events, and the stdlib
records of every library - the Temporal SDK's `temporalio.*` loggers write activity failure tracebacks there, and
Temporal's core (Rust) logs are forwarded into them by the worker's runtime - through a root handler whose
formatter runs the same processors. Secrets inside messages, keys, nested values, bytes and tracebacks are caught.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog
from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryFilter

from ops.scrub import REDACTED, SCRUBBER, Scrubber

__all__ = ["REDACTED", "SecretRedactor", "configure_logging", "core_logging", "get_logger"]


class SecretRedactor:
    """structlog processor over a scrubber: the process's (ops/scrub.py) unless a test gives its own secrets."""

    def __init__(self, secrets: Iterable[str] = (), scrubber: Scrubber | None = None) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.scrubber = scrubber or Scrubber(self.secrets)

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
        scrubbed: dict[str, Any] = self.scrubber.value(dict(event_dict))
        return event_dict if scrubbed == event_dict else scrubbed


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a re-opened stream)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _renderer(json: bool) -> Any:
    return structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()


def _stdlib_handler(level: int, json: bool, redactor: SecretRedactor) -> logging.Handler:
    """Records of stdlib loggers (temporalio, uvicorn, botocore ...) rendered like our own events, scrubbed."""
    handler = _StderrHandler()
    handler.setLevel(level)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                _renderer(json),
            ],
        )
    )
    return handler


def configure_logging(secrets: Iterable[str] = (), level: str = "INFO", json: bool | None = None) -> None:
    """Structlog and the stdlib root logger, both scrubbed; `secrets` join the process's scrubber."""
    if json is None:
        json = not sys.stderr.isatty()
    SCRUBBER.add(secrets)
    redactor = SecretRedactor(scrubber=SCRUBBER)
    numeric = logging.getLevelName(level.upper())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        # Scrubbing runs after exceptions are rendered to text, so secrets inside tracebacks are caught too.
        redactor,
        _renderer(json),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    root.addHandler(_stdlib_handler(numeric, json, redactor))
    # Libraries (httpx, botocore) speak at WARNING and above; the Temporal SDK at the configured level.
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("temporalio").setLevel(numeric)


def core_logging() -> LoggingConfig:
    """Temporal's core (Rust) logs go to the `temporalio.core` logger instead of straight to stderr: through the
    root handler above, so the scrubber sees them too."""
    return LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()
