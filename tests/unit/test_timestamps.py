from datetime import UTC, datetime, timedelta, timezone

from streamgrid.core.timestamps import format_utc, parse_utc


def test_datetimes_and_epoch_seconds_format_alike_in_utc() -> None:
    moment = datetime(2026, 11, 26, 10, 5, 7, 900_000, tzinfo=UTC)
    assert format_utc(moment) == "2026-11-26T10:05:07Z"  # whole seconds, as the API writes
    assert format_utc(moment.timestamp()) == "2026-11-26T10:05:07Z"
    assert format_utc(moment.astimezone(timezone(timedelta(hours=5)))) == "2026-11-26T10:05:07Z"


def test_parse_is_the_inverse_and_blank_is_none() -> None:
    assert parse_utc("2026-11-26T10:05:07Z") == datetime(2026, 11, 26, 10, 5, 7, tzinfo=UTC)
    assert parse_utc(None) is None and parse_utc("") is None
