"""The one structlog configuration: JSON or console, stdlib routed through it, redaction.

The services' own events take structlog's native path: a filtering bound logger, the shared processors, the
renderer, one write to stderr. stdlib's machinery (LogRecord, handler, ProcessorFormatter) cost about 130 µs a
line on a slow machine, and routing writes a line per signal (docs/benchmarks.md, run 13). faust, aiokafka and
uvicorn log through stdlib; their records pass the same processors and renderer in a ProcessorFormatter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
from typing import Any

import orjson
import structlog

# Values that look like personal data: a nine-digit number (BSN), an e-mail address.
_BSN = re.compile(r"(?<![0-9A-Za-z])\d{9}(?![0-9A-Za-z])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
# Keys whose values never reach a log line.
_SECRET_KEYS = frozenset(
    {"bsn", "pupil_ref", "family_ref", "summary", "message", "name", "email", "token", "authorization",
     "recipient", "reporter", "subject"}
)


def _masked(text: str) -> str:
    """`text` with BSN-like numbers, then e-mail addresses, masked. No '@', no address: its scan is skipped."""
    text = _BSN.sub("[nummer]", text)
    return _EMAIL.sub("[e-mail]", text) if "@" in text else text


def redact_personal_data(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop known personal keys and mask values that look like a BSN or an e-mail address."""
    for key, value in event_dict.items():
        if key in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = _masked(value)
    return event_dict


class NamedStderrLogger:
    """structlog's WriteLogger with a name (for add_logger_name); writes and flushes one line on stderr."""

    _lock = threading.RLock()  # re-entrant, as stdlib's handler lock: a line from a signal handler cannot deadlock

    def __init__(self, name: str | None = None) -> None:
        self.name = name or "root"

    def msg(self, message: str) -> None:
        stream = sys.stderr  # looked up per line, so a redirected stderr is honoured
        with self._lock:
            # As stdlib's handler: a log call never fails the code that made it. The stream itself failed (a
            # closed pipe, a full disk), so there is nowhere to say so.
            with contextlib.suppress(Exception):
                stream.write(message + "\n")
                stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _named_stderr_logger(*args: Any) -> NamedStderrLogger:
    return NamedStderrLogger(args[0] if args and isinstance(args[0], str) else None)


_LINE_ESSENTIALS = ("event", "level", "logger", "timestamp", "service")


def _orjson_dumps(value: dict[str, Any], **kw: Any) -> str:
    """One JSON line, whatever the values: orjson where it can, json for what orjson refuses (a key that is not
    a string, an int past 64 bits), and the line's essentials when even json fails (a circular value, a __repr__
    that raises). A value JSON has no form for becomes structlog's fallback (__structlog__, else repr)."""
    default = kw.get("default", repr)
    try:
        return orjson.dumps(value, default=default).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError, and orjson raises nothing else
        pass
    try:
        return json.dumps(value, default=default)
    except Exception as exc:  # a log call never fails the code that made it
        return json.dumps({key: str(value.get(key, "")) for key in _LINE_ESSENTIALS}
                          | {"log_render_error": type(exc).__name__})


def _processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_personal_data,
    ]


def configure_logging(*, service: str, log_format: str = "console", level: str = "INFO") -> None:
    """Configure structlog and route stdlib logging (faust, aiokafka, uvicorn) through it."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps) if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = _processors()
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=_named_stderr_logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    structlog.contextvars.bind_contextvars(service=service)
