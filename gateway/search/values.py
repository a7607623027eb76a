"""Value normalisation shared by index extraction and query building.

Strings: search.html §3.1.1.4.7 — matching is case- and accent-insensitive.
Dates: search.html §3.1.1.4.3 — every date value is an implicit range set by its precision.
Numbers: search.html §3.1.1.4.1 — the precision of the value sets its implicit range.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

MAX_INDEXED_STRING = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WHITESPACE = re.compile(r"\s+")

# YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DDThh:mm[:ss[.f+]][Z|±hh:mm]
_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def normalize_string(value: str) -> str:
    """Lower-cased, accent-free, whitespace-folded form used for string matching."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WHITESPACE.sub(" ", stripped.casefold()).strip()[:MAX_INDEXED_STRING]


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (UTC) of an aware datetime."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def format_instant(micros: int) -> str:
    """FHIR instant text (UTC, millisecond precision kept to microseconds)."""
    moment = from_micros(micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}"[:3] + "Z"


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def date_range(text: str) -> tuple[int, int]:
    """The implicit range ``[low, high)`` of a FHIR date/dateTime/instant, in epoch micros.

    A value without a time zone is taken as UTC. Raises ValueError on bad syntax.
    """
    match = _DATE.match(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a valid FHIR date or dateTime")
    g = match.groupdict()
    year = int(g["y"])
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
        from datetime import timezone

        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))  # type: ignore[assignment]
    if g["m"] is None:
        low = datetime(year, 1, 1, tzinfo=tz)
        high = datetime(year + 1, 1, 1, tzinfo=tz)
    elif g["d"] is None:
        month = int(g["m"])
        low = datetime(year, month, 1, tzinfo=tz)
        next_year, next_month = _add_months(year, month, 1)
        high = datetime(next_year, next_month, 1, tzinfo=tz)
    elif g["H"] is None:
        low = datetime(year, int(g["m"]), int(g["d"]), tzinfo=tz)
        high = low + timedelta(days=1)
    else:
        base = datetime(year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), tzinfo=tz)
        if g["S"] is None:
            low, high = base, base + timedelta(minutes=1)
        elif g["f"] is None:
            low = base.replace(second=int(g["S"]))
            high = low + timedelta(seconds=1)
        else:
            digits = g["f"][:6]
            low = base.replace(second=int(g["S"]), microsecond=int(digits.ljust(6, "0")))
            high = low + timedelta(microseconds=10 ** (6 - len(digits)))
    return to_micros(low), to_micros(high)


def number_range(text: str) -> tuple[float, float, float]:
    """``(value, low, high)`` of a number by its significant figures (search.html §3.1.1.4.1).

    "100" → [99.5, 100.5); "1e2" → [50, 150); "100.00" → [99.995, 100.005).
    """
    try:
        number = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ValueError(f"'{text}' is not a valid number") from exc
    if not number.is_finite():
        raise ValueError(f"'{text}' is not a finite number")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return float(number), float(number - half), float(number + half)
