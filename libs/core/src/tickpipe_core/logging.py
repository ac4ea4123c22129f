"""structlog set-up: JSON off a terminal, a console renderer on one, and secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

# Brokers put tokens in query strings and JSON; these patterns catch them even when a library
# formats a URL into an exception message we did not write.
_TOKEN_PATTERNS = re.compile(
    r"(?P<key>(?:access_?token|token|api_?key|password|secret)[\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+",
    re.IGNORECASE,
)
# A password in a URL's user-info (amqp://user:password@host, postgresql://user:password@host).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@", re.IGNORECASE)
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Make every later log line replace this exact value with ***."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """The text with registered secrets and token-looking key/value pairs replaced by ***."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return _URL_PASSWORD.sub(r"\g<head>***@", _TOKEN_PATTERNS.sub(r"\g<key>***", text))


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
        elif isinstance(value, BaseException):
            event[key] = redact(f"{type(value).__name__}: {value}")
    return event


def _redact_exc_info(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    exc = event.get("exception")
    if isinstance(exc, str):
        event["exception"] = redact(exc)
    return event


def configure_logging(level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Configure structlog (and the stdlib loggers of our libraries) once per process."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
        # Tracebacks are rendered to text here so that they are redacted too, on a terminal as well.
        structlog.processors.format_exc_info,
        _redact_exc_info,
    ]
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Third-party libraries (aio-pika, psycopg, websockets, uvicorn) log through the stdlib: their lines
    # take the same shape (JSON off a terminal), are redacted, and name their error in one field
    # instead of a traceback, since what they log is a condition we foresee and handle (an outage).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _library_fields,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _redact_processor, renderer],
        )
    )
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def _library_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A stdlib record: its logger as the component, its exception as `error` (type and message)."""
    record = event.get("_record")
    event["component"] = record.name if isinstance(record, logging.LogRecord) else "library"
    exc_info = event.pop("exc_info", None)
    if isinstance(exc_info, tuple) and exc_info[1] is not None:
        event["error"] = f"{type(exc_info[1]).__name__}: {exc_info[1]}"
    return event


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A bound logger carrying `component=name` and the given context."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(component=name, **context)
    return logger
