"""Stored instants and their FHIR text (R4 datatypes.html §2.24.0.1 instant)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.search.values import date_range, format_instant, to_micros


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (999, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_736_843_520_123_456, "2025-01-14T08:32:00.123Z"),
        (-946_771_200_000_000, "1940-01-01T00:00:00.000Z"),
        (to_micros(datetime(5, 3, 1, tzinfo=UTC)), "0005-03-01T00:00:00.000Z"),
        (
            to_micros(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
            "9999-12-31T23:59:59.999Z",
        ),
    ],
)
def test_an_instant_is_written_in_utc_with_milliseconds(micros: int, text: str) -> None:
    assert format_instant(micros) == text


def test_a_written_instant_reads_back_to_its_millisecond() -> None:
    micros = 1_736_843_520_123_456
    low, high = date_range(format_instant(micros))
    assert low == micros - 456
    assert high == low + 1_000
