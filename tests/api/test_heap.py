"""The garbage collector of a serving process (gateway.api.heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.api.heap import YOUNG_GENERATION_THRESHOLD, settle_heap
from gateway.config import Settings
from gateway.store.database import Database


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """Puts the collector back as it was, so that later tests run on the defaults."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_settle_heap_freezes_start_up_and_collects_the_young_less_often() -> None:
    gc.unfreeze()
    settle_heap()
    assert gc.get_freeze_count() > 1_000
    assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD


@pytest.mark.usefixtures("restored_collector")
@pytest.mark.parametrize("serving", [True, False])
def test_only_a_serving_application_settles_the_heap(
    serving: bool, settings: Settings, database: Database
) -> None:
    gc.unfreeze()
    app = create_app(settings, database=database, serving=serving)
    with TestClient(app) as client:
        assert client.get("/fhir/metadata").status_code == 200
        assert (gc.get_freeze_count() > 0) is serving
