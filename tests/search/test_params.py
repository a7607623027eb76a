"""Parsing of search requests (R4 search.html §3.1.1)."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidSearch, Issue
from gateway.search.params import (
    DateValue,
    Include,
    MissingValue,
    ReferenceValue,
    SearchRequest,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
    parse_search,
    split_unescaped,
    unescape,
)
from gateway.search.values import date_range

HETU = "urn:oid:1.2.246.21"


def parse(
    resource_type: str,
    *pairs: tuple[str, str],
    strict: bool = False,
    default_count: int = 20,
    max_count: int = 100,
) -> tuple[SearchRequest, list[Issue]]:
    return parse_search(
        resource_type,
        list(pairs),
        strict=strict,
        default_count=default_count,
        max_count=max_count,
    )


def only(resource_type: str, *pairs: tuple[str, str]) -> SearchRequest:
    request, issues = parse(resource_type, *pairs, strict=True)
    assert issues == []
    return request


# --------------------------------------------------------------------------- AND / OR, escaping


def test_comma_is_or_and_repetition_is_and() -> None:
    request = only("Patient", ("gender", "male,female"), ("gender", "other"))
    assert len(request.criteria) == 2
    first, second = request.criteria
    assert first.values == (
        TokenValue(None, "male", match_system=False),
        TokenValue(None, "female", match_system=False),
    )
    assert second.values == (TokenValue(None, "other", match_system=False),)


@pytest.mark.parametrize(
    ("text", "separator", "expected"),
    [
        ("a,b", ",", ["a", "b"]),
        (r"a\,b,c", ",", [r"a\,b", "c"]),
        (r"a\\,b", ",", [r"a\\", "b"]),
        (r"s\|x|c", "|", [r"s\|x", "c"]),
        ("", ",", [""]),
    ],
)
def test_split_unescaped(text: str, separator: str, expected: list[str]) -> None:
    assert split_unescaped(text, separator) == expected


def test_unescape_known_escapes_only() -> None:
    assert unescape(r"a\,b\|c\$d\\e") == r"a,b|c$d\e"
    assert unescape(r"a\nb") == r"a\nb"


def test_escaped_separators_stay_in_values() -> None:
    request = only("Patient", ("identifier", r"urn:x\|y|12\,34"), ("family", r"a\,b,c"))
    token, string = request.criteria
    assert token.values == (TokenValue("urn:x|y", "12,34", match_system=True),)
    assert string.values == (StringValue("a,b"), StringValue("c"))


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("010190-9002", TokenValue(None, "010190-9002", match_system=False)),
        (f"{HETU}|010190-9002", TokenValue(HETU, "010190-9002", match_system=True)),
        ("|010190-9002", TokenValue(None, "010190-9002", match_system=True)),
        (f"{HETU}|", TokenValue(HETU, None, match_system=True)),
    ],
)
def test_token_forms(value: str, expected: TokenValue) -> None:
    (criterion,) = only("Patient", ("identifier", value)).criteria
    assert criterion.values == (expected,)


def test_token_without_code_or_system_is_invalid() -> None:
    with pytest.raises(InvalidSearch, match="identifier"):
        parse("Patient", ("identifier", "|"))


def test_token_text_and_not_modifiers() -> None:
    text, negated = only("Patient", ("language:text", "suomi"), ("gender:not", "male")).criteria
    assert (text.modifier, text.values) == ("text", (StringValue("suomi"),))
    assert negated.modifier == "not"


def test_missing_takes_true_or_false() -> None:
    (criterion,) = only("Patient", ("birthdate:missing", "true")).criteria
    assert criterion.values == (MissingValue(True),)
    with pytest.raises(InvalidSearch, match="birthdate:missing"):
        parse("Patient", ("birthdate:missing", "yes"))


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("value", "prefix", "text"),
    [
        ("2013", "eq", "2013"),
        ("ge2013-03", "ge", "2013-03"),
        ("lt2013-03-14", "lt", "2013-03-14"),
        ("sa2013-03-14T10:00:00Z", "sa", "2013-03-14T10:00:00Z"),
        ("ap2013-03-14T10:00:00+02:00", "ap", "2013-03-14T10:00:00+02:00"),
        ("eb2013-03-14T10:00", "eb", "2013-03-14T10:00"),
    ],
)
def test_date_prefixes_and_precisions(value: str, prefix: str, text: str) -> None:
    (criterion,) = only("Patient", ("birthdate", value)).criteria
    low, high = date_range(text)
    assert criterion.values == (DateValue(prefix, low, high),)


def test_unencoded_plus_of_offset_is_tolerated() -> None:
    (criterion,) = only("Patient", ("birthdate", "ge2013-03-14T10:00:00 02:00")).criteria
    assert criterion.values == (DateValue("ge", *date_range("2013-03-14T10:00:00+02:00")),)


@pytest.mark.parametrize("value", ["2013-13", "20130314", "xx2013", "gt", "ge2013-03-14T25:00"])
def test_bad_dates_are_invalid_and_name_the_parameter(value: str) -> None:
    with pytest.raises(InvalidSearch, match="birthdate"):
        parse("Patient", ("birthdate", value))


def test_last_updated_is_a_date() -> None:
    (criterion,) = only("Patient", ("_lastUpdated", "gt2024-01-01")).criteria
    assert criterion.values == (DateValue("gt", *date_range("2024-01-01")),)


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("subject", "Patient/p1", ReferenceValue("Patient", "p1", None)),
        ("subject", "Patient/p1/_history/2", ReferenceValue("Patient", "p1", None)),
        ("subject", "p1", ReferenceValue(None, "p1", None)),
        ("subject:Patient", "p1", ReferenceValue("Patient", "p1", None)),
        ("replaces", "sr1", ReferenceValue("ServiceRequest", "sr1", None)),
        (
            "subject",
            "https://x.fi/fhir/Patient/p1",
            ReferenceValue("Patient", "p1", "https://x.fi/fhir/Patient/p1"),
        ),
        ("subject", "urn:uuid:1234", ReferenceValue(None, None, "urn:uuid:1234")),
        (
            "instantiates-canonical",
            "http://pd.fi/PlanDefinition/x|1.0",
            ReferenceValue("PlanDefinition", "x", "http://pd.fi/PlanDefinition/x"),
        ),
    ],
)
def test_reference_forms(name: str, value: str, expected: ReferenceValue) -> None:
    (criterion,) = only("ServiceRequest", (name, value)).criteria
    assert criterion.values == (expected,)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("subject", "Nonsense/p1"),
        ("subject:Patient", "Group/g1"),
        ("subject", "a/b/c"),
        ("subject", "bad id!"),
        ("subject:Organization", "o1"),
    ],
)
def test_bad_references_are_invalid(name: str, value: str) -> None:
    with pytest.raises(InvalidSearch, match="subject"):
        parse("ServiceRequest", (name, value))


def test_chain_with_type_modifier() -> None:
    (criterion,) = only(
        "ServiceRequest", ("subject:Patient.identifier", f"{HETU}|010190-9002")
    ).criteria
    assert criterion.param.code == "subject" and criterion.modifier == "Patient"
    (inner,) = criterion.chained
    assert inner.resource_type == "Patient" and inner.param.code == "identifier"
    assert inner.values == (TokenValue(HETU, "010190-9002", match_system=True),)


def test_chain_without_modifier_searches_each_stored_target_with_the_parameter() -> None:
    (criterion,) = only("ServiceRequest", ("subject.name", "Virtanen")).criteria
    assert [c.resource_type for c in criterion.chained] == ["Patient"]
    (criterion,) = only("ServiceRequest", ("requester.name", "Virtanen")).criteria
    assert {c.resource_type for c in criterion.chained} == {
        "Patient",
        "Practitioner",
        "Organization",
    }


def test_chain_on_a_non_reference_is_invalid() -> None:
    with pytest.raises(InvalidSearch, match=r"status\.code"):
        parse("ServiceRequest", ("status.code", "x"))


def test_chain_to_an_unknown_parameter_is_unsupported() -> None:
    with pytest.raises(InvalidSearch, match=r"subject\.nonsense"):
        parse("ServiceRequest", ("subject.nonsense", "x"), strict=True)
    request, issues = parse("ServiceRequest", ("subject.nonsense", "x"))
    assert request.criteria == () and len(issues) == 1


def test_errors_inside_chains_name_the_whole_parameter() -> None:
    with pytest.raises(InvalidSearch, match=r"subject:Patient\.birthdate"):
        parse("ServiceRequest", ("subject:Patient.birthdate", "notadate"))
    with pytest.raises(InvalidSearch, match=r"subject\.family:nonsense"):
        parse("ServiceRequest", ("subject.family:nonsense", "x"), strict=True)
    with pytest.raises(InvalidSearch, match="_has:ServiceRequest:subject:authored"):
        parse("Patient", ("_has:ServiceRequest:subject:authored", "xx2020"))


def test_reverse_chain() -> None:
    (criterion,) = only("Patient", ("_has:ServiceRequest:subject:status", "active")).criteria
    assert criterion.has_source == "ServiceRequest" and criterion.param.code == "subject"
    (inner,) = criterion.chained
    assert inner.resource_type == "ServiceRequest" and inner.param.code == "status"


@pytest.mark.parametrize(
    "name",
    ["_has:ServiceRequest:status:code", "_has:ServiceRequest:subject", "_has:Nope:subject:x"],
)
def test_bad_reverse_chains_are_invalid(name: str) -> None:
    with pytest.raises(InvalidSearch):
        parse("Patient", (name, "x"))


# --------------------------------------------------------------------------- strings / uris


def test_string_modifiers() -> None:
    exact, contains = only(
        "Patient", ("family:exact", "Öhman"), ("family:contains", "hma")
    ).criteria
    assert (exact.modifier, exact.values) == ("exact", (StringValue("Öhman"),))
    assert (contains.modifier, contains.values) == ("contains", (StringValue("hma"),))


def test_uri_modifiers() -> None:
    (criterion,) = only("Patient", ("_profile:below", "http://x.fi/")).criteria
    assert (criterion.modifier, criterion.values) == ("below", (UriValue("http://x.fi/"),))


# --------------------------------------------------------------------------- unknown / unsupported


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("nonsense", "1"),
        ("family:nonsense", "x"),
        ("identifier:of-type", "a|b|c"),
        ("gender:in", "http://vs"),
        ("_text", "x"),
        ("_contained", "true"),
        ("_count:x", "1"),
        ("_include:x", "Patient:organization"),
    ],
)
def test_unknown_parameters_are_ignored_with_a_warning_or_rejected_when_strict(
    name: str, value: str
) -> None:
    request, issues = parse("Patient", (name, value), ("gender", "male"))
    assert [c.param.code for c in request.criteria] == ["gender"]
    assert len(issues) == 1
    assert issues[0].severity == "warning" and name in issues[0].diagnostics
    with pytest.raises(InvalidSearch, match=name.split(":")[0]):
        parse("Patient", (name, value), strict=True)


def test_format_and_pretty_are_kept_for_links() -> None:
    request = only("Patient", ("_format", "json"), ("_pretty", "true"))
    assert ("_format", "json") in request.canonical_query()
    assert ("_pretty", "true") in request.canonical_query()


def test_empty_values_are_ignored() -> None:
    request = only("Patient", ("family", ""), ("gender", ","), ("_count", ""))
    assert request.criteria == ()


# --------------------------------------------------------------------------- result parameters


def test_count_is_clamped_and_validated() -> None:
    assert only("Patient").count == 20
    assert only("Patient", ("_count", "5")).count == 5
    assert only("Patient", ("_count", "0")).count == 0
    assert only("Patient", ("_count", "100000")).count == 100
    for bad in ("-1", "abc", "1.5"):
        with pytest.raises(InvalidSearch, match="_count"):
            parse("Patient", ("_count", bad))


def test_sort_keys() -> None:
    request = only("Patient", ("_sort", "family,-birthdate,_id"), ("_sort", "-_lastUpdated"))
    assert request.sort == (
        SortKey("family", False, "string"),
        SortKey("birthdate", True, "date"),
        SortKey("_id", False, "token"),
        SortKey("_lastUpdated", True, "date"),
    )


@pytest.mark.parametrize("value", ["nonsense", "-", "family,,_id", "link.name"])
def test_sort_on_unknown_parameter_is_invalid(value: str) -> None:
    with pytest.raises(InvalidSearch, match="_sort"):
        parse("Patient", ("_sort", value))


def test_includes() -> None:
    request = only(
        "Task",
        ("_include", "Task:focus"),
        ("_include", "Task:focus:ServiceRequest"),
        ("_include:iterate", "ServiceRequest:subject"),
        ("_include", "*"),
        ("_revinclude", "Provenance:target"),
    )
    assert request.includes == (
        Include("Task", "focus"),
        Include("Task", "focus", "ServiceRequest"),
        Include("ServiceRequest", "subject", None, iterate=True),
        Include("Task", "*"),
    )
    assert request.revincludes == (Include("Provenance", "target"),)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_include", "Task:nonsense"),
        ("_include", "Task:status"),
        ("_include", "Task"),
        ("_include", "ServiceRequest:subject"),
        ("_include", "Nope:subject"),
        ("_include", "Task:part-of:Patient"),
        ("_revinclude", "Task:nonsense"),
    ],
)
def test_bad_includes_are_invalid(name: str, value: str) -> None:
    with pytest.raises(InvalidSearch, match=name):
        parse("Task", (name, value))


@pytest.mark.parametrize(("name", "value"), [("_summary", "maybe"), ("_total", "all")])
def test_summary_and_total_values(name: str, value: str) -> None:
    with pytest.raises(InvalidSearch, match=name):
        parse("Patient", (name, value))
    ok = only("Patient", ("_summary", "count"), ("_total", "accurate"))
    assert (ok.summary, ok.total) == ("count", "accurate")


def test_elements() -> None:
    assert only("Patient", ("_elements", "name, birthDate")).elements == ("name", "birthDate")
    with pytest.raises(InvalidSearch, match="_elements"):
        parse("Patient", ("_elements", "name;drop"))


def test_canonical_query_normalizes_and_drops_cursor() -> None:
    request = only(
        "Patient",
        ("family", "Virtanen"),
        ("_cursor", "abc"),
        ("_sort", "-birthdate"),
        ("_include", "Patient:organization"),
        ("_total", "none"),
    )
    assert request.cursor == "abc"
    assert request.canonical_query() == [
        ("family", "Virtanen"),
        ("_sort", "-birthdate"),
        ("_count", "20"),
        ("_include", "Patient:organization"),
        ("_total", "none"),
    ]
