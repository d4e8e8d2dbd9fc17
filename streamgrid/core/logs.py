"""Structured logs: one JSON object per line, credentials masked at the source.

Every value of a line goes through ``mask_secrets`` before it is written, and
secrets a process knows about (its camera password) are registered so that even
a library's error text that echoes them is masked. Values only: a password that
happens to be "info" or "stream_id" never rewrites a key or the line's own
fields (ts, level, component, logger).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from .urls import mask_secrets

_known_secrets: set[str] = set()


def register_secret(*secrets: str) -> None:
    _known_secrets.update(s for s in secrets if s)


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            event.update(fields)
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)
        masked = {
            key: value if key in _OWN_FIELDS else _masked(value) for key, value in event.items()
        }
        return json.dumps(masked, separators=(",", ":"))


# The formatter's own fields: never secrets, never masked.
_OWN_FIELDS = frozenset({"ts", "level", "component", "logger"})


def _masked(value: Any) -> Any:
    """A field's value with credentials masked: strings (and what becomes a
    string in JSON), inside lists and dicts too; keys and numbers as they are."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    return mask_secrets(value if isinstance(value, str) else str(value), _known_secrets)


def configure_logging(component: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})
