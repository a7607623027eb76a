"""The municipality → wellbeing area table (``municipalities_wellbeing_areas.csv``:
Statistics Finland's municipality codes, ``urn:oid:1.2.246.537.6.21``, and area codes),
read in place by the admin register and the Kela adapter."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True, slots=True)
class Municipality:
    code: str
    name_fi: str
    name_sv: str
    area_code: str
    area_name: str


@cache
def municipalities() -> dict[str, Municipality]:
    """Every municipality by its three-digit code."""
    text = (
        resources.files("mappings")
        .joinpath("municipalities_wellbeing_areas.csv")
        .read_text(encoding="utf-8")
    )
    return {
        row["municipality_code"]: Municipality(
            row["municipality_code"],
            row["municipality_fi"],
            row["municipality_sv"],
            row["wellbeing_area_code"],
            row["wellbeing_area_fi"],
        )
        for row in csv.DictReader(io.StringIO(text))
    }


def municipalities_of_area(area_code: str) -> list[str]:
    """Codes of the municipalities whose services the wellbeing area ``area_code``
    (Statistics Finland's code, e.g. "12" Etelä-Savo, "90" Helsinki) organises."""
    return sorted(m.code for m in municipalities().values() if m.area_code == area_code)
