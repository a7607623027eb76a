"""The garbage collector of a serving process (CPython ``gc``).

A request of the gateway leaves no reference cycles behind, so the cyclic collector
finds next to nothing, yet with CPython's defaults it still runs: the youngest generation
every 700 net allocations, and full passes over every object start-up made (the FHIR
models, schemas and compiled statements: about 165,000 objects, 30 to 170 ms a pass on the
development VM), triggered by objects that merely live a little longer than one
collection, such as queued access-log entries. At 10,000 stored resources a benchmark run
spent 2.8 s in the collector before these settings and 0.2 to 0.3 s after them
(docs/performance.md, "The garbage collector").
"""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 10_000
"""Net allocations between collections of the youngest generation (CPython: 700)."""


def settle_heap() -> None:
    """Collects once, then freezes what start-up made (``gc.freeze``: full passes no
    longer walk it) and collects the youngest generation less often. Called once a
    serving process has started; objects frozen stay in memory for its lifetime, which
    start-up's modules and caches do anyway."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)
