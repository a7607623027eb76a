"""Synthetic benchmark data: Patients with test HETUs, Kela notifications and their Tasks."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.fixtures.hetu import TEST_INDIVIDUAL_MAX, TEST_INDIVIDUAL_MIN, make_test_hetu

HETU_SYSTEM = "urn:oid:1.2.246.21"
MUNICIPALITY_URL = "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/municipality-code"
MUNICIPALITY_SYSTEM = "urn:oid:1.2.246.537.6.21"
LIFE_SITUATION_SYSTEM = "https://silta.example.org/fhir/CodeSystem/life-situation-area"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
NOTICE_TYPE_SYSTEM = "https://silta.example.org/fhir/CodeSystem/kela-notice-type"

ENTRIES_PER_BUNDLE = 100
GROUPS_PER_BUNDLE = 33
"""Each bundle: 33 groups of (Patient, ServiceRequest, Task) and one more Patient."""

DATE_WINDOW_LOW = "2025-01-01"
DATE_WINDOW_HIGH = "2025-02-01"
IN_WINDOW_COUNT = 5
"""ServiceRequests authored inside [DATE_WINDOW_LOW, DATE_WINDOW_HIGH); all others are older."""

_FAMILY = (
    "Virtanen",
    "Korhonen",
    "Mäkinen",
    "Nieminen",
    "Mäkelä",
    "Hämäläinen",
    "Laine",
    "Heikkinen",
    "Koskinen",
    "Järvinen",
    "Äijälä",
    "Öhman",
    "Kärkkäinen",
    "Lehtonen",
    "Söderholm",
)
_GIVEN = (
    "Aino",
    "Eetu",
    "Väinö",
    "Helmi",
    "Jörgen",
    "Ilona",
    "Mikko",
    "Siiri",
    "Onni",
    "Päivi",
    "Jyrki",
    "Ella",
    "Tuomas",
    "Sanna",
)
_MUNICIPALITIES = (
    ("837", "Tampere", "33100"),
    ("853", "Turku", "20100"),
    ("091", "Helsinki", "00100"),
    ("536", "Nokia", "37100"),
    ("680", "Raisio", "21200"),
    ("211", "Kangasala", "36200"),
)
_AREAS = (
    ("toimeentulo", "Toimeentulo", "Perustoimeentulotuen asiakkuus jatkunut pitkään."),
    ("perhetilanne", "Perhetilanne", "Yksinhuoltaja, muutoksia perhetilanteessa."),
    ("terveys", "Terveys", "Kertoo uupumuksesta."),
    ("asuminen", "Asuminen", "Vuokrarästejä."),
)
_NOTICES = (
    ("social-work-need", "Ilmoitus sosiaalihuollon tarpeesta (SHL 35 §)"),
    ("supplementary-assistance-need", "Täydentävän tai ehkäisevän toimeentulotuen tarve"),
    ("long-term-unemployed-under-25", "Alle 25-vuotias työtön, perustoimeentulotukea 4 kk"),
    ("long-term-unemployed-25-plus", "25 vuotta täyttänyt työtön, perustoimeentulotukea 12 kk"),
)
_HISTORY_START = date(2019, 1, 1)
_HISTORY_DAYS = (date(2024, 12, 31) - _HISTORY_START).days


@dataclass(frozen=True, slots=True)
class Organizations:
    """Server-assigned references of the organisations the generated data points to."""

    kela_unit: str
    areas: tuple[str, ...]


class HetuSequence:
    """Unique test HETUs: 100 individual numbers (900-999) per birth date from 1940 on."""

    def __init__(self, start: int = 0) -> None:
        self._next = start
        self._base = date(1940, 1, 1)
        self._per_day = TEST_INDIVIDUAL_MAX - TEST_INDIVIDUAL_MIN + 1

    def next(self) -> tuple[str, date]:
        """The next unused HETU and its birth date."""
        k = self._next
        self._next += 1
        born = self._base + timedelta(days=k // self._per_day)
        return make_test_hetu(born, TEST_INDIVIDUAL_MIN + k % self._per_day), born


@dataclass
class Generator:
    """Makes resources and transaction Bundles; deterministic for one seed."""

    orgs: Organizations
    seed: int = 2025
    hetus: HetuSequence = field(default_factory=HetuSequence)
    in_window_left: int = IN_WINDOW_COUNT

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def patient(self) -> dict[str, Any]:
        """A Patient with a fresh test HETU and a municipality of residence."""
        hetu, born = self.hetus.next()
        family = self.rng.choice(_FAMILY)
        given = self.rng.choice(_GIVEN)
        code, city, postal = self.rng.choice(_MUNICIPALITIES)
        return {
            "resourceType": "Patient",
            "identifier": [{"use": "official", "system": HETU_SYSTEM, "value": hetu}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": self.rng.choice(("female", "male")),
            "birthDate": born.isoformat(),
            "address": [
                {
                    "extension": [
                        {
                            "url": MUNICIPALITY_URL,
                            "valueCoding": {
                                "system": MUNICIPALITY_SYSTEM,
                                "code": code,
                                "display": city,
                            },
                        }
                    ],
                    "use": "home",
                    "line": [f"Kotikatu {self.rng.randint(1, 80)}"],
                    "postalCode": postal,
                    "city": city,
                    "country": "FI",
                }
            ],
        }

    def _authored(self) -> datetime:
        if self.in_window_left > 0:
            self.in_window_left -= 1
            day = date(2025, 1, 2 + 5 * self.in_window_left)
        else:
            day = _HISTORY_START + timedelta(days=self.rng.randrange(_HISTORY_DAYS))
        moment = datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC)
        return moment + timedelta(minutes=self.rng.randrange(9 * 60))

    def service_request(self, subject: str) -> dict[str, Any]:
        """A Kela concern notification (SHL 35 §) about ``subject``."""
        authored = self._authored()
        notice_code, notice_display = self.rng.choice(_NOTICES)
        areas = self.rng.sample(_AREAS, self.rng.randint(1, 4))
        return {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "priority": self.rng.choice(("routine", "urgent")),
            "code": {
                "coding": [
                    {"system": NOTICE_TYPE_SYSTEM, "code": notice_code, "display": notice_display}
                ]
            },
            "subject": {"reference": subject},
            "authoredOn": authored.isoformat(),
            "occurrencePeriod": {
                "start": authored.isoformat(),
                "end": (authored + timedelta(days=9)).isoformat(),
            },
            "requester": {"reference": self.orgs.kela_unit},
            "performer": [{"reference": self.rng.choice(self.orgs.areas)}],
            "reasonCode": [
                {
                    "coding": [{"system": LIFE_SITUATION_SYSTEM, "code": code, "display": shown}],
                    "text": text,
                }
                for code, shown, text in areas
            ],
            "patientInstruction": "Kela on ilmoittanut hyvinvointialueen sosiaalipalveluihin "
            "tuen tarpeestasi. Sosiaalityöntekijä ottaa sinuun yhteyttä.",
        }

    def task(self, focus: str, patient: str, request: dict[str, Any]) -> dict[str, Any]:
        """The Gravity-style Task that carries ``request`` to the wellbeing area."""
        return {
            "resourceType": "Task",
            "status": "requested",
            "businessStatus": {"text": "Odottaa sosiaalihuollon käsittelyä"},
            "intent": "order",
            "priority": request["priority"],
            "code": {
                "coding": [
                    {"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}
                ]
            },
            "focus": {"reference": focus},
            "for": {"reference": patient},
            "authoredOn": request["authoredOn"],
            "requester": {"reference": self.orgs.kela_unit},
            "owner": {"reference": request["performer"][0]["reference"]},
        }

    def transaction(self) -> dict[str, Any]:
        """A 100-entry transaction Bundle of new Patients, ServiceRequests and Tasks."""
        entries: list[dict[str, Any]] = []

        def add(resource: dict[str, Any]) -> str:
            full_url = f"urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"
            entries.append(
                {
                    "fullUrl": full_url,
                    "resource": resource,
                    "request": {"method": "POST", "url": resource["resourceType"]},
                }
            )
            return full_url

        for _ in range(GROUPS_PER_BUNDLE):
            patient_url = add(self.patient())
            request = self.service_request(patient_url)
            request_url = add(request)
            add(self.task(request_url, patient_url, request))
        add(self.patient())
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def location_key(location: str) -> tuple[str, str] | None:
    """(type, id) from a Location such as ``http://h/fhir/Patient/1/_history/1``."""
    parts = [p for p in location.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return None
    return parts[-2], parts[-1]
