"""Finnish personal identity codes (henkilötunnus, HETU).

Format (Act on the Population Information System 661/2009 §11; the extra century
signs are in use since 2023): DDMMYY, a century sign (``+`` 1800s; ``-`` and
``Y``-``U`` 1900s; ``A``-``F`` 2000s), a three-digit individual number (002-899, or
900-999 for temporary and test codes; odd for men, even for women) and the check
character ``CHECK_CHARACTERS[int(DDMMYY + NNN) % 31]``.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final, Literal

CHECK_CHARACTERS: Final = "0123456789ABCDEFHJKLMNPRSTUVWXY"

_CENTURIES: Final = {
    "+": 1800,
    "-": 1900,
    "Y": 1900,
    "X": 1900,
    "W": 1900,
    "V": 1900,
    "U": 1900,
    "A": 2000,
    "B": 2000,
    "C": 2000,
    "D": 2000,
    "E": 2000,
    "F": 2000,
}
_HETU: Final = re.compile(r"(\d{2})(\d{2})(\d{2})([-+A-FU-Y])(\d{3})([0-9A-Y])")


def hetu_problem(text: str) -> str | None:
    """Why ``text`` is not a valid HETU, or None when it is."""
    match = _HETU.fullmatch(text)
    if match is None:
        return "is not of the form DDMMYYCNNNX"
    day, month, year, sign, number, check = match.groups()
    try:
        date(_CENTURIES[sign] + int(year), int(month), int(day))
    except ValueError:
        return f"has no real birth date ({day}.{month}.{year}, century sign {sign})"
    if int(number) < 2:
        return f"has individual number {number}, which is never issued"
    expected = CHECK_CHARACTERS[int(day + month + year + number) % 31]
    if check != expected:
        return f"has an invalid check character {check} (expected {expected})"
    return None


def is_valid_hetu(text: str) -> bool:
    return hetu_problem(text) is None


def birth_date(hetu: str) -> date:
    """The birth date a valid HETU encodes."""
    sign = hetu[6]
    return date(_CENTURIES[sign] + int(hetu[4:6]), int(hetu[2:4]), int(hetu[0:2]))


def gender(hetu: str) -> Literal["male", "female"]:
    """FHIR administrative gender from the individual number (odd men, even women)."""
    return "male" if int(hetu[7:10]) % 2 else "female"
