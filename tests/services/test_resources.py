"""Service-layer helpers of gateway/services/resources.py."""

from __future__ import annotations

import re
import time
import uuid

from gateway.services.resources import new_id

FHIR_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")  # R4 datatypes.html#id


def test_new_ids_are_uuid_version_7_with_the_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid.UUID(new_id())
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


def test_new_ids_are_valid_unique_and_sort_by_creation_millisecond() -> None:
    batches = []
    for _ in range(3):
        batches.append([new_id() for _ in range(2_000)])
        time.sleep(0.002)
    ids = [i for batch in batches for i in batch]
    assert all(FHIR_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    millis = [uuid.UUID(i).int >> 80 for i in ids]
    assert millis == sorted(millis)
    # As text too: the index on (type, id) receives them in ascending order.
    assert max(batches[0]) < min(batches[1]) and max(batches[1]) < min(batches[2])
