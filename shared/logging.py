"""The one structlog configuration: JSON or console, stdlib routed through it, redaction."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# Values that look like personal data: a nine-digit number (BSN), an e-mail address.
_BSN = re.compile(r"(?<![0-9A-Za-z])\d{9}(?![0-9A-Za-z])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
# Keys whose values never reach a log line.
_SECRET_KEYS = frozenset(
    {"bsn", "pupil_ref", "family_ref", "summary", "message", "name", "email", "token", "authorization",
     "recipient", "reporter", "subject"}
)


def redact_personal_data(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop known personal keys and mask values that look like a BSN or an e-mail address."""
    for key in list(event_dict):
        if key in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
        elif isinstance(event_dict[key], str) and key != "event":
            event_dict[key] = _EMAIL.sub("[e-mail]", _BSN.sub("[nummer]", event_dict[key]))
    event = event_dict.get("event")
    if isinstance(event, str):
        event_dict["event"] = _EMAIL.sub("[e-mail]", _BSN.sub("[nummer]", event))
    return event_dict


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
        structlog.processors.JSONRenderer() if log_format == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = _processors()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
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
