"""Every golden pair beside the mappings (mappings/kela/golden/<message>/), compared
exactly: inbound ``*.input.xml`` → ``*.expected.json`` (the transaction Bundle) and
outbound ``*.input.json`` (named FHIR resources) → ``*.expected.xml``.

Set ``SILTA_WRITE_GOLDEN=1`` to (re)write the expected files from the current
mappings instead; review the diff before committing it.
"""

from __future__ import annotations

import json
import os

import pytest

from adapters.kela import build_outbound, map_inbound, serialize
from tests.adapters.kela.support import (
    SENDER,
    GoldenCase,
    canonical,
    golden_cases,
    golden_directory,
    read_body,
)

WRITE = os.environ.get("SILTA_WRITE_GOLDEN") == "1"
INBOUND = golden_cases("xml", "json")
OUTBOUND = golden_cases("json", "xml")


def test_there_are_golden_pairs_for_every_message() -> None:
    folders = {case.input_path.parent.name for case in INBOUND + OUTBOUND}
    assert folders == {
        "concern-notification",
        "application-forwarding",
        "benefit-decision",
        "notification-feedback",
        "municipal-assistance-decision",
    }
    notifications = [c for c in INBOUND if c.service_code == "ConcernNotification"]
    assert len(notifications) >= 2


@pytest.mark.parametrize("case", INBOUND, ids=lambda c: c.id)
def test_inbound_golden_pair(case: GoldenCase) -> None:
    result = map_inbound(
        case.service_code, read_body(case.input_path), golden_directory(), sender=SENDER
    )
    if WRITE:
        text = json.dumps(result.bundle, indent=2, ensure_ascii=False) + "\n"
        case.expected_path.write_text(text, encoding="utf-8")
        pytest.skip("expected file written")
    expected = json.loads(case.expected_path.read_text(encoding="utf-8"))
    assert result.bundle == expected


@pytest.mark.parametrize("case", OUTBOUND, ids=lambda c: c.id)
def test_outbound_golden_pair(case: GoldenCase) -> None:
    inputs = json.loads(case.input_path.read_text(encoding="utf-8"))
    element = build_outbound(case.service_code, inputs)
    if WRITE:
        case.expected_path.write_bytes(serialize(element))
        pytest.skip("expected file written")
    assert canonical(element) == canonical(case.expected_path.read_bytes())
