"""How fast the machine is at the moment of a run, so runs on different days compare.

A virtual machine's speed drifts: on the development VM the same code's token search
measured 772 and 1,163 requests/s on two days, and the Kela exchange 135 to 158 messages/s
within one hour. Every benchmark report therefore carries two reference timings taken
just before it runs, one for each kind of work a request does:

* validating a fixed FHIR resource (the golden mapped ServiceRequest) with its
  fhir.resources model: interpreter-bound Python that the project's own changes do not
  touch (the gateway itself runs that model only where its own walk cannot vouch for a
  resource, see :mod:`gateway.fhir.validation`);
* inserting rows with random keys into an indexed SQLite table in memory: the store's
  C-level B-tree work.

Lower is faster. Two reports are comparable when their timings are close; when they are
not, the ratio says roughly by how much the machine, not the code, differs.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import time
from dataclasses import dataclass
from importlib import resources

import orjson
from fhir.resources.R4B import get_fhir_model_class

GOLDEN_BUNDLE = ("kela", "golden", "concern-notification", "with-consent.expected.json")
ROUNDS = 5
VALIDATIONS = 100
ROWS = 5_000


@dataclass(frozen=True, slots=True)
class MachineSpeed:
    """Median timings of :data:`ROUNDS` rounds, in microseconds."""

    validation_us: float
    sqlite_insert_us: float

    def describe(self) -> str:
        return (
            f"machine speed: {self.validation_us:.0f} µs to validate the reference "
            f"ServiceRequest, {self.sqlite_insert_us:.2f} µs per indexed SQLite insert "
            "(bench/calibrate.py; lower is faster)"
        )


def _reference_resource() -> dict[str, object]:
    bundle = orjson.loads(resources.files("mappings").joinpath(*GOLDEN_BUNDLE).read_bytes())
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "ServiceRequest":
            resource: dict[str, object] = entry["resource"]
            return resource
    raise LookupError("the golden bundle has no ServiceRequest")


def _validation_round(resource: dict[str, object]) -> float:
    model = get_fhir_model_class("ServiceRequest")
    started = time.perf_counter()
    for _ in range(VALIDATIONS):
        model.model_validate(resource)
    return (time.perf_counter() - started) / VALIDATIONS * 1e6


def _sqlite_round(seed: int) -> float:
    rng = random.Random(seed)
    rows = [(n, f"{rng.getrandbits(64):016x}") for n in range(ROWS)]
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (pk INTEGER NOT NULL, value TEXT NOT NULL)")
        conn.execute("CREATE INDEX t_value ON t (value)")
        started = time.perf_counter()
        with conn:
            conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
        return (time.perf_counter() - started) / ROWS * 1e6
    finally:
        conn.close()


def machine_speed() -> MachineSpeed:
    """Takes about a second."""
    resource = _reference_resource()
    _validation_round(resource)  # builds the models' validators
    return MachineSpeed(
        validation_us=statistics.median(_validation_round(resource) for _ in range(ROUNDS)),
        sqlite_insert_us=statistics.median(_sqlite_round(seed) for seed in range(ROUNDS)),
    )


if __name__ == "__main__":
    print(machine_speed().describe())
