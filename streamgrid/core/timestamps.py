"""Timestamps as the Kubernetes API writes them: RFC 3339, UTC, whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_utc(moment: datetime | float) -> str:
    """A datetime, or seconds since the epoch."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime(FORMAT)


def parse_utc(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, FORMAT).replace(tzinfo=UTC)
