"""Value normalisation shared by index extraction and query building.

Strings: search.html §3.1.1.4.7 — matching is case- and accent-insensitive.
Dates: search.html §3.1.1.4.3 — every date value is an implicit range set by its precision.
Numbers: search.html §3.1.1.4.1 — the precision of the value sets its implicit range.
"""

from __future__ import annotations

import re
import unicodedata
from calendar import monthrange, timegm
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

MAX_INDEXED_STRING = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WHITESPACE = re.compile(r"\s+")
_MICROS = 1_000_000

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


@dataclass(frozen=True, slots=True)
class StringOperands:
    """What a string search value is compared with (search.html §3.1.1.4.7): the text as
    given, the form the index holds (``normalized``), the least string above every
    string that starts with it (``upper``), and the LIKE patterns of "starts with" and
    "contains". ``empty`` and ``bounded`` (``upper`` exists) choose how it is compared.

    The operands are what a search's SQL binds, so a search compiled once for its shape
    takes them as values (``gateway.search.shapes``)."""

    text: Any
    normalized: Any
    upper: Any
    starts_like: Any
    contains_like: Any
    empty: bool
    bounded: bool


def string_operands(text: str, *, normalized: str | None = None) -> StringOperands:
    """The operands of ``text``; ``normalized`` is the form the index holds for it
    (``normalize_string(text)`` unless given: a URI is compared as it is)."""
    held = normalize_string(text) if normalized is None else normalized
    upper = prefix_upper_bound(held) if held else None
    escaped = escape_like(held)
    return StringOperands(
        text, held, upper, escaped + "%", "%" + escaped + "%", not held, upper is not None
    )


def escape_like(text: str) -> str:
    """``text`` with the LIKE wildcards and the escape character escaped (by a backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (code-point order)."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    following = 0xE000 if 0xD800 <= last + 1 <= 0xDFFF else last + 1
    return prefix[:-1] + chr(following)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (UTC) of an aware datetime."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def format_instant(micros: int) -> str:
    """FHIR instant text (R4 datatypes.html#instant): UTC, to the millisecond."""
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_second_text(seconds)}.{fraction // 1000:03d}Z"


@lru_cache(maxsize=64)
def _second_text(seconds: int) -> str:
    """``YYYY-MM-DDThh:mm:ss`` of a second since the epoch: the writes of one second
    share it."""
    m = from_micros(seconds * 1_000_000)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _epoch_seconds(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> int:
    if not (1 <= month <= 12 and 1 <= day <= monthrange(year, month)[1]):
        raise ValueError(f"{year:04d}-{month:02d}-{day:02d} is not a calendar date")
    if hour > 24 or minute > 59 or second > 60:
        raise ValueError(f"{hour:02d}:{minute:02d}:{second:02d} is not a time of day")
    return timegm((year, month, day, hour, minute, second, 0, 0, 0))


def date_range(text: str) -> tuple[int, int]:
    """The implicit range ``[low, high)`` of a FHIR date/dateTime/instant, in epoch micros.

    A value without a time zone is taken as UTC. Raises ValueError on bad syntax.
    """
    match = _DATE.match(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a valid FHIR date or dateTime")
    g = match.groupdict()
    year = int(g["y"])
    offset = 0
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        offset = sign * (int(g["tz"][1:3]) * 3600 + int(g["tz"][4:6]) * 60)
    if g["m"] is None:
        low = _epoch_seconds(year, 1, 1) * _MICROS
        high = _epoch_seconds(year + 1, 1, 1) * _MICROS
    elif g["d"] is None:
        month = int(g["m"])
        next_year, next_month = _add_months(year, month, 1)
        low = _epoch_seconds(year, month, 1) * _MICROS
        high = _epoch_seconds(next_year, next_month, 1) * _MICROS
    elif g["H"] is None:
        low = _epoch_seconds(year, int(g["m"]), int(g["d"])) * _MICROS
        high = low + 86_400 * _MICROS
    else:
        seconds = int(g["S"] or 0)
        low = (
            _epoch_seconds(year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), seconds)
            - offset
        ) * _MICROS
        if g["S"] is None:
            high = low + 60 * _MICROS
        elif g["f"] is None:
            high = low + _MICROS
        else:
            digits = g["f"][:6]
            low += int(digits.ljust(6, "0"))
            high = low + 10 ** (6 - len(digits))
    return low, high


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
