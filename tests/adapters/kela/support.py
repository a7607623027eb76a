"""Shared pieces of the Kela adapter tests: the golden pairs on disk and the
directory they are mapped with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.kela import parse_message
from mappings.municipalities import municipalities_of_area

REPO = Path(__file__).resolve().parents[3]
GOLDEN_DIR = REPO / "mappings" / "kela" / "golden"

SERVICE_OF_FOLDER = {
    "concern-notification": "ConcernNotification",
    "application-forwarding": "ApplicationForwarding",
    "benefit-decision": "BenefitDecision",
    "notification-feedback": "NotificationFeedback",
    "municipal-assistance-decision": "MunicipalAssistanceDecision",
}


class TableDirectory:
    """Wellbeing areas by municipality, from the real municipality table and an
    Organization id per Statistics Finland area code."""

    def __init__(self, organization_of_area: dict[str, str]) -> None:
        self._by_municipality = {
            municipality: organization
            for area, organization in organization_of_area.items()
            for municipality in municipalities_of_area(area)
        }

    def wellbeing_area_for_municipality(self, municipality_code: str) -> str | None:
        return self._by_municipality.get(municipality_code)


def golden_settings() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN_DIR / "directory.json").read_text("utf-8"))
    return data


def golden_directory() -> TableDirectory:
    return TableDirectory(golden_settings()["wellbeingAreas"])


SENDER = "kela"


@dataclass(frozen=True)
class GoldenCase:
    service_code: str
    input_path: Path
    expected_path: Path

    @property
    def id(self) -> str:
        return f"{self.input_path.parent.name}/{self.input_path.name.split('.')[0]}"


def golden_cases(suffix: str, expected_suffix: str) -> list[GoldenCase]:
    cases = []
    for path in sorted(GOLDEN_DIR.glob(f"*/*.input.{suffix}")):
        expected = path.with_name(
            path.name.replace(f".input.{suffix}", f".expected.{expected_suffix}")
        )
        cases.append(GoldenCase(SERVICE_OF_FOLDER[path.parent.name], path, expected))
    return cases


def read_body(path: Path) -> Any:
    return parse_message(path.read_bytes())


def canonical(element_or_bytes: Any) -> bytes:
    """Canonical XML (C14N 2.0) without insignificant whitespace, for exact comparison."""
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    if isinstance(element_or_bytes, bytes):
        element = etree.fromstring(element_or_bytes, parser)
    else:
        element = etree.fromstring(etree.tostring(element_or_bytes), parser)
    text: str = etree.tostring(element, method="c14n2", strip_text=True).decode("utf-8")
    return text.encode("utf-8")
