"""Structured logs: one JSON object per line, credentials masked at the source.

Every line goes through ``mask_secrets`` before it is written, and secrets a
process knows about (its camera password) are registered so that even a
library's error text that echoes them is masked.
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
        line = json.dumps(event, default=str, separators=(",", ":"))
        return mask_secrets(line, _known_secrets)


def configure_logging(component: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})
