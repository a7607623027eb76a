"""Search shapes: values lifted out of a parsed search (gateway.search.shapes)."""

from __future__ import annotations

from sqlalchemy.sql.elements import BindParameter

from gateway.search.params import DateValue, ReferenceValue, TokenValue, parse_search
from gateway.search.shapes import Shape, shape_of

HETU = "urn:oid:1.2.246.21"


def _maybe_shape(resource_type: str, *query: tuple[str, str]) -> Shape | None:
    request, _ = parse_search(
        resource_type, list(query), strict=True, default_count=20, max_count=100
    )
    return shape_of(request)


def _shape(resource_type: str, *query: tuple[str, str]) -> Shape:
    shape = _maybe_shape(resource_type, *query)
    assert shape is not None
    return shape


def test_searches_differing_only_in_values_share_a_shape() -> None:
    first = _shape("Patient", ("identifier", f"{HETU}|010190-900P"))
    second = _shape("Patient", ("identifier", f"{HETU}|280255-9340"))
    assert first.key == second.key
    assert first.values == {"slot_0": HETU, "slot_1": "010190-900P"}
    assert second.values == {"slot_0": HETU, "slot_1": "280255-9340"}


def test_the_parts_a_value_has_are_part_of_the_shape() -> None:
    keys = {
        _shape("Patient", ("identifier", query)).key
        for query in (f"{HETU}|1", "1", "|1", f"{HETU}|")
    }
    assert len(keys) == 4
    two_values = _shape("Patient", ("identifier", f"{HETU}|1,{HETU}|2"))
    one_value = _shape("Patient", ("identifier", f"{HETU}|1"))
    assert two_values.key != one_value.key


def test_page_size_sort_and_date_prefix_are_part_of_the_shape() -> None:
    base = _shape("ServiceRequest", ("authored", "ge2025-01-01"))
    others = (
        _shape("ServiceRequest", ("authored", "lt2025-01-01")),
        _shape("ServiceRequest", ("authored", "ge2025-01-01"), ("_sort", "-authored")),
        _shape("ServiceRequest", ("authored", "ge2025-01-01"), ("_count", "5")),
    )
    assert all(base.key != other.key for other in others)


def test_ids_and_last_updated_are_lifted_like_tokens_and_dates() -> None:
    """Polling by ``_lastUpdated`` and reading a list of ids are compiled too."""
    polled = _shape("Task", ("_lastUpdated", "gt2026-12-01T10:00:00Z"), ("status", "requested"))
    later = _shape("Task", ("_lastUpdated", "gt2026-12-01T11:00:00Z"), ("status", "requested"))
    assert polled.key == later.key and polled.values != later.values
    two_ids = _shape("Patient", ("_id", "p1,p2"))
    assert two_ids.values == {"slot_0": "p1", "slot_1": "p2"}
    assert two_ids.key != _shape("Patient", ("_id", "p1")).key


def test_template_holds_bound_parameters_where_the_values_were() -> None:
    shape = _shape(
        "ServiceRequest",
        ("subject", "Patient/p1"),
        ("code", "http://snomed.info/sct|123"),
        ("authored", "ge2025-01-01"),
    )
    subject, code, authored = (c.values[0] for c in shape.template().criteria)
    assert isinstance(subject, ReferenceValue) and subject.url is None
    assert isinstance(subject.target_type, BindParameter)
    assert isinstance(code, TokenValue) and code.match_system
    assert isinstance(code.code, BindParameter)
    assert isinstance(authored, DateValue) and authored.prefix == "ge"
    assert isinstance(authored.low, BindParameter)
    assert shape.values["slot_0"] == "Patient"
    assert shape.values["slot_1"] == "p1"


def test_strings_are_lifted_as_their_operands() -> None:
    """A string's normalized form, upper bound and LIKE patterns are its values; whether
    it is empty or has an upper bound, and the modifier, are its shape."""
    virtanen = _shape("Patient", ("family", "Virtanen"))
    assert virtanen.values == {
        "slot_0": "Virtanen",
        "slot_1": "virtanen",
        "slot_2": "virtaneo",
        "slot_3": "virtanen%",
        "slot_4": "%virtanen%",
    }
    assert virtanen.key == _shape("Patient", ("family", "Öhman")).key
    exact = _shape("Patient", ("family:exact", "Virtanen"))
    contains = _shape("Patient", ("family:contains", "irta"))
    unbounded = _shape("Patient", ("family", "a\U0010ffff"))
    assert len({virtanen.key, exact.key, contains.key, unbounded.key}) == 4
    text = _shape("ServiceRequest", ("code:text", "sosiaali"))
    assert text.values["slot_1"] == "sosiaali"


def test_values_the_builder_transforms_are_not_lifted() -> None:
    assert _maybe_shape("Patient", ("_profile", "http://example.org/p")) is None  # URI
    assert _maybe_shape("Patient", ("_profile:below", "http://example.org")) is None
    assert _maybe_shape("Patient", ("birthdate", "ap1990-01-01")) is None  # margin from the clock
    assert _maybe_shape("Patient", ("gender:not", "male")) is None
    assert _maybe_shape("Patient", ("gender:missing", "true")) is None
    assert _maybe_shape("Patient", ("_lastUpdated", "ap2025-01-01")) is None
    assert _maybe_shape("Patient", ("_id:not", "p1")) is None
    assert _maybe_shape("ServiceRequest", ("subject:Patient.identifier", f"{HETU}|1")) is None
    assert _maybe_shape("Patient", ("_has:Task:patient:status", "requested")) is None
