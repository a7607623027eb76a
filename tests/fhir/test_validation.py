"""Resource validation: types, the R4B model mapped to issues with FHIRPath locations,
JSON types, reference syntax and the R4 rules the models leave out."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import Issue, operation_outcome
from gateway.fhir import validation
from gateway.fhir.formats import (
    ElementInfo,
    ElementKind,
    JsonType,
    TypeInfo,
    WireFormat,
    parse_body,
    render,
    resource_type_info,
    type_info,
)
from gateway.fhir.validation import MAX_ISSUES, validate_resource
from tests.fhir.test_formats import (
    EXAMPLES,
    HETU_OID,
    LAHTINEN_HETU,
    patient,
    service_request,
    task,
)
from tests.fixtures import all_fixtures

GOLDEN = Path(__file__).resolve().parents[2] / "mappings" / "kela" / "golden"
XHTML = "http://www.w3.org/1999/xhtml"
UUID_1 = "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"
UUID_2 = "urn:uuid:5e0c2cd1-8f6c-4c3e-9b7e-3f5a1d2c4b6a"


def issues_of(resource: dict[str, Any], **kwargs: Any) -> list[tuple[str, str]]:
    """(code, expression) of each issue; each issue has exactly one expression."""
    found = validate_resource(resource, **kwargs)
    for issue in found:
        assert issue.severity == "error"
        assert issue.diagnostics[0].isupper() or issue.diagnostics[0] in "'#"
        assert issue.diagnostics.endswith(".")
    return [(i.code, i.expression[0] if i.expression else "") for i in found]


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    resource = copy.deepcopy(base)
    resource.update(changes)
    return resource


# ---------------------------------------------------------------------------
# Valid content
# ---------------------------------------------------------------------------

STORED_EXAMPLES = [n for n in EXAMPLES if n not in ("OperationOutcome", "CapabilityStatement")]


@pytest.mark.parametrize("name", STORED_EXAMPLES)
def test_examples_are_valid(name: str) -> None:
    resource = EXAMPLES[name]()
    original = copy.deepcopy(resource)
    assert validate_resource(resource) == []
    assert resource == original


@pytest.mark.parametrize("name", STORED_EXAMPLES)
def test_examples_are_valid_after_an_xml_round_trip(name: str) -> None:
    body = render(EXAMPLES[name](), WireFormat.XML)
    assert validate_resource(parse_body(body, "application/fhir+xml")) == []


def test_expected_type() -> None:
    assert validate_resource(patient(), expected_type="Patient") == []
    assert issues_of(patient(), expected_type="Organization") == [("invalid", "resourceType")]


@pytest.mark.parametrize(
    ("resource", "code"),
    [
        ({}, "required"),
        ({"resourceType": 7}, "required"),
        ({"resourceType": "Potilas"}, "invalid"),
        ({"resourceType": "Observation"}, "not-supported"),
        ({"resourceType": "SubscriptionTopic"}, "invalid"),
    ],
)
def test_resource_type(resource: dict[str, Any], code: str) -> None:
    [issue] = validate_resource(resource)
    assert issue.code == code


# ---------------------------------------------------------------------------
# Model errors with FHIRPath expressions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"birthDate": "1979-13-24"}, [("value", "Patient.birthDate")]),
        ({"birthDate": "24.6.1979"}, [("value", "Patient.birthDate")]),
        ({"language": "fi  FI"}, [("value", "Patient.language")]),
        ({"tuntematon": 1}, [("structure", "Patient.tuntematon")]),
        ({"link": [{"type": "seealso"}]}, [("required", "Patient.link[0].other")]),
        (
            {"deceasedBoolean": True, "deceasedDateTime": "2025-01-01"},
            [("invalid", "Patient")],
        ),
        (
            {"name": [{"family": "Mäkelä", "period": {"start": "2025-01-01T10:00"}}]},
            [("value", "Patient.name[0].period.start")],
        ),
        (
            {"meta": {"lastUpdated": "2025-02-03T08:15:30"}},
            [("value", "Patient.meta.lastUpdated")],
        ),
        (
            {"contact": [{"name": {"family": "Mäkelä", "sukunimi": "x"}}]},
            [("structure", "Patient.contact[0].name.sukunimi")],
        ),
        (
            {"extension": [{"valueString": "ei url-osoitetta"}]},
            [("required", "Patient.extension[0].url")],
        ),
        (
            {"photo": [{"size": -1}]},
            [("value", "Patient.photo[0].size")],
        ),
        (
            {"_birthDate": {"extension": [{"url": "u", "valueDate": "huomenna"}]}},
            [("value", "Patient.birthDate.extension[0].valueDate")],
        ),
    ],
)
def test_model_errors(changes: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert issues_of(with_changes(patient(), **changes)) == expected


def test_model_error_messages() -> None:
    [date] = validate_resource(with_changes(patient(), birthDate="1979-13-24"))
    assert date.diagnostics == (
        "Invalid date value '1979-13-24' at Patient.birthDate: "
        "it does not have the format of a FHIR date."
    )
    [unknown] = validate_resource(with_changes(patient(), tuntematon=1))
    assert unknown.diagnostics == "Unknown element 'tuntematon' at Patient."
    [missing] = validate_resource(with_changes(patient(), link=[{"type": "seealso"}]))
    assert missing.diagnostics == "Missing required element Patient.link[0].other."
    [choice] = validate_resource(
        with_changes(patient(), deceasedBoolean=True, deceasedDateTime="2025")
    )
    assert choice.diagnostics == (
        "Only one of deceased[x] may be present at Patient "
        "(found deceasedBoolean, deceasedDateTime)."
    )


def test_missing_choice() -> None:
    resource = task()
    del resource["input"][1]["valueDate"]
    [issue] = validate_resource(resource)
    assert (issue.code, issue.expression) == ("required", ("Task.input[1]",))
    assert issue.diagnostics == "Task.input[1] requires one of value[x]."


def test_required_elements_of_a_resource() -> None:
    resource = service_request()
    del resource["status"], resource["intent"]
    assert sorted(issues_of(resource)) == [
        ("required", "ServiceRequest.intent"),
        ("required", "ServiceRequest.status"),
    ]


def test_errors_inside_bundle_entries() -> None:
    bundle = EXAMPLES["Bundle-searchset"]()
    bundle["entry"][0]["resource"]["name"][0]["given"][1] = 7
    bundle["entry"][1]["resource"]["active"] = "kyllä"
    bundle["entry"][0]["search"]["score"] = "paras"
    assert issues_of(bundle) == [
        ("value", "Bundle.entry[0].resource.name[0].given[1]"),
        ("value", "Bundle.entry[0].search.score"),
        ("value", "Bundle.entry[1].resource.active"),
    ]


def test_errors_inside_contained_resources() -> None:
    resource = with_changes(
        patient(),
        contained=[{"resourceType": "Organization", "id": "o1", "name": "Varha", "aktiivinen": 1}],
        managingOrganization={"reference": "#o1"},
    )
    assert issues_of(resource) == [("structure", "Patient.contained[0].aktiivinen")]


def test_the_model_crashing_is_an_issue_not_an_exception() -> None:
    resource = EXAMPLES["Endpoint"]()
    resource["address"] = 5
    assert issues_of(resource) == [("value", "Endpoint.address")]
    resource = with_changes(patient(), contained=[{"resourceType": "Kuvitteellinen"}])
    assert issues_of(resource) == [("invalid", "Patient.contained[0]")]


def test_many_errors_are_capped() -> None:
    resource = with_changes(patient(), **{f"x{i}": i for i in range(MAX_ISSUES + 20)})
    issues = validate_resource(resource)
    assert len(issues) == MAX_ISSUES + 1
    assert issues[-1].severity == "information"
    assert issues[-1].diagnostics == "20 more errors are not reported."


def test_deep_nesting_is_an_issue() -> None:
    extension: dict[str, Any] = {"url": "u", "valueString": "x"}
    for _ in range(2000):
        extension = {"url": "u", "extension": [extension]}
    [issue] = validate_resource({"resourceType": "Patient", "extension": [extension]})
    assert issue.code == "too-costly"


def test_issues_become_an_operation_outcome() -> None:
    issues = validate_resource(with_changes(patient(), birthDate="x", active="kyllä"))
    resource = operation_outcome(issues)
    assert [i["expression"] for i in resource["issue"]] == [
        ["Patient.active"],
        ["Patient.birthDate"],
    ]
    assert parse_body(render(resource, WireFormat.XML), "application/fhir+xml") == resource


# ---------------------------------------------------------------------------
# What the models let through
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"active": "yes"}, [("value", "Patient.active")]),
        ({"active": 1}, [("value", "Patient.active")]),
        ({"multipleBirthInteger": "2"}, [("value", "Patient.multipleBirthInteger")]),
        ({"multipleBirthInteger": True}, [("value", "Patient.multipleBirthInteger")]),
        ({"name": [{"given": ["Eero", 5]}]}, [("value", "Patient.name[0].given[1]")]),
        ({"meta": '{"versionId": "1"}'}, [("value", "Patient.meta")]),
        ({"name": {"family": "Mäkelä"}}, [("value", "Patient.name")]),
        ({"gender": ["male"]}, [("value", "Patient.gender")]),
        ({"name": []}, [("value", "Patient.name")]),
        ({"name": [{}]}, [("value", "Patient.name[0]")]),
        ({"name": [None]}, [("value", "Patient.name[0]")]),
        ({"gender": None}, [("value", "Patient.gender")]),
        ({"fhir_comments": "x"}, [("structure", "Patient.fhir_comments")]),
        ({"resource_type": "Patient"}, [("structure", "Patient.resource_type")]),
        ({"_gender": {}}, [("value", "Patient.gender")]),
        ({"_nimi": {"id": "x"}}, [("structure", "Patient._nimi")]),
        ({"_name": {"id": "x"}}, [("structure", "Patient._name")]),
    ],
)
def test_json_shape(changes: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert issues_of(with_changes(patient(), **changes)) == expected


def test_json_type_message() -> None:
    [issue] = validate_resource(with_changes(patient(), active="yes"))
    assert issue.diagnostics == (
        "Patient.active (boolean) must be a JSON boolean (true or false), not 'yes'."
    )


def test_decimal_accepts_integers_and_floats() -> None:
    resource = task()
    resource["input"][4]["valueDecimal"] = 1234
    assert validate_resource(resource) == []
    resource["input"][4]["valueDecimal"] = "1234.50"
    assert issues_of(resource) == [("value", "Task.input[4].valueDecimal")]


def test_null_in_primitive_arrays() -> None:
    with_extension = {
        "given": ["Eero", None],
        "_given": [None, {"extension": [{"url": "u", "valueString": "x"}]}],
    }
    assert validate_resource(with_changes(patient(), name=[with_extension])) == []
    bare = {"given": ["Eero", None]}
    assert issues_of(with_changes(patient(), name=[bare])) == [
        ("value", "Patient.name[0].given[1]")
    ]
    misaligned = {"given": ["Eero", "Juhani"], "_given": [None]}
    assert issues_of(with_changes(patient(), name=[misaligned])) == [
        ("structure", "Patient.name[0].given")
    ]
    empty = {"given": ["Eero", None], "_given": [None, None]}
    assert issues_of(with_changes(patient(), name=[empty])) == [
        ("value", "Patient.name[0].given[1]")
    ]


@pytest.mark.parametrize(
    ("resource_id", "valid"),
    [
        ("pat-makela", True),
        ("A.b-9", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("a_b", False),
        ("mäkelä", False),
        ("", False),
        (5, False),
    ],
)
def test_resource_id(resource_id: Any, valid: bool) -> None:
    issues = issues_of(with_changes(patient(), id=resource_id))
    assert issues == ([] if valid else [("value", "Patient.id")])


def test_contained_resource_id() -> None:
    resource = with_changes(
        patient(),
        contained=[{"resourceType": "Organization", "id": "o_1", "name": "Varha"}],
    )
    assert ("value", "Patient.contained[0].id") in issues_of(resource)


def test_r4_extension_value_meta_is_valid() -> None:
    extension = {"url": "https://silta.example.org/x", "valueMeta": {"versionId": "7"}}
    assert validate_resource(with_changes(patient(), extension=[extension])) == []
    extension["valueMeta"] = {"lastUpdated": "eilen"}
    assert issues_of(with_changes(patient(), extension=[extension])) == [
        ("value", "Patient.extension[0].valueMeta.lastUpdated")
    ]


@pytest.mark.parametrize("element", ["valueCodeableReference", "valueRatioRange"])
def test_r4b_only_extension_values_are_not_r4(element: str) -> None:
    value = (
        {"concept": {"text": "x"}} if element == "valueCodeableReference" else {"low": {"value": 1}}
    )
    extension = {"url": "https://silta.example.org/x", element: value}
    assert issues_of(with_changes(patient(), extension=[extension])) == [
        ("structure", f"Patient.extension[0].{element}")
    ]


def test_r4b_only_resource_types_are_not_r4() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "SubscriptionTopic", "status": "active"}}],
    }
    assert issues_of(bundle) == [("invalid", "Bundle.entry[0].resource")]


def test_nested_contained_resources() -> None:
    inner = {"resourceType": "Organization", "id": "o2", "name": "Kela"}
    outer = {"resourceType": "Organization", "id": "o1", "name": "Varha", "contained": [inner]}
    resource = with_changes(patient(), contained=[outer], managingOrganization={"reference": "#o1"})
    assert ("invalid", "Patient.contained[0].contained") in issues_of(resource)


# ---------------------------------------------------------------------------
# Narrative
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("div", "valid"),
    [
        (
            f'<div xmlns="{XHTML}"><p>Eero <b>Mäkelä</b></p>'
            "<table><tr><td>x</td></tr></table></div>",
            True,
        ),
        (f'<div xmlns="{XHTML}"><img src="#kuva" alt="kuva"/></div>', True),
        (f'<div xmlns="{XHTML}"><a href="https://www.kela.fi">Kela</a></div>', True),
        ("<div><p>ei nimiavaruutta</p></div>", False),
        (f'<div xmlns="{XHTML}"><p>avoin', False),
        (f'<p xmlns="{XHTML}">kappale</p>', False),
        ("pelkkää tekstiä", False),
        (f'<div xmlns="{XHTML}"><script>alert(1)</script></div>', False),
        (f'<div xmlns="{XHTML}"><p onclick="alert(1)">x</p></div>', False),
        (f'<div xmlns="{XHTML}"><a href=" JavaScript:alert(1)">x</a></div>', False),
        (f'<div xmlns="{XHTML}"><iframe src="https://example.org"/></div>', False),
        (f'<div xmlns="{XHTML}">  </div>', False),
        (
            '<!DOCTYPE div [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            f'<div xmlns="{XHTML}">&x;</div>',
            False,
        ),
        (5, False),
    ],
)
def test_narrative(div: Any, valid: bool) -> None:
    resource = with_changes(patient(), text={"status": "generated", "div": div})
    assert issues_of(resource) == ([] if valid else [("value", "Patient.text.div")])


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------

VALID_REFERENCES = [
    "Patient/pat-makela",
    "Patient/A.b-9",
    "Patient/pat-makela/_history/3",
    "https://fhir.kela.example.fi/r4/Patient/123",
    "http://localhost:8080/fhir/Organization/varha/_history/1",
    "Basic/x",
]

INVALID_REFERENCES = [
    "Patient/pat_makela",
    "Patient/" + "a" * 65,
    "Potilas/123",
    "patient/123",
    "Patient",
    "Patient/",
    "Patient/123/_history/",
    "Patient/123/extra",
    "/Patient/123",
    "123",
    "ftp://example.org/Patient/1",
    "https://",
    "urn:oid:1.2.246.21",
    UUID_1,
    "urn:uuid:not-a-uuid",
    f"Patient?identifier={HETU_OID}|{LAHTINEN_HETU}",
    "Patient/ 123",
    "",
]


@pytest.mark.parametrize("reference", VALID_REFERENCES)
def test_valid_references(reference: str) -> None:
    resource = with_changes(service_request(), subject={"reference": reference})
    assert validate_resource(resource) == []


@pytest.mark.parametrize("reference", INVALID_REFERENCES)
def test_invalid_references(reference: str) -> None:
    resource = with_changes(service_request(), subject={"reference": reference})
    issues = issues_of(resource)
    assert ("invalid", "ServiceRequest.subject.reference") in issues or (
        reference == "" and ("value", "ServiceRequest.subject.reference") in issues
    )


def test_invalid_reference_message() -> None:
    resource = with_changes(service_request(), subject={"reference": "Patient/pat_makela"})
    [issue] = validate_resource(resource)
    assert issue.diagnostics == (
        "Invalid reference 'Patient/pat_makela' at ServiceRequest.subject.reference: expected "
        "Type/id, Type/id/_history/version, an absolute http(s) URL or #contained-id."
    )
    resource["subject"]["reference"] = "Potilas/1"
    [issue] = validate_resource(resource)
    assert issue.diagnostics == (
        "Reference 'Potilas/1' at ServiceRequest.subject.reference names 'Potilas', "
        "which is not a FHIR R4 resource type."
    )


@pytest.mark.parametrize(
    "reference",
    [
        UUID_1,
        UUID_1.upper().replace("URN:UUID:", "urn:uuid:"),
        f"Patient?identifier={HETU_OID}|{LAHTINEN_HETU}",
    ],
)
def test_transaction_references(reference: str) -> None:
    resource = with_changes(service_request(), subject={"reference": reference})
    assert validate_resource(resource, allow_urn_uuid=True) == []
    assert issues_of(resource) == [("invalid", "ServiceRequest.subject.reference")]


@pytest.mark.parametrize(
    "reference", ["urn:uuid:1234", "Potilas?tunnus=1", "Patient?", "urn:oid:1.2.3"]
)
def test_transaction_references_are_still_checked(reference: str) -> None:
    resource = with_changes(service_request(), subject={"reference": reference})
    assert issues_of(resource, allow_urn_uuid=True) == [
        ("invalid", "ServiceRequest.subject.reference")
    ]


def test_references_everywhere_are_checked() -> None:
    resource = task()
    resource["input"][0]["valueReference"]["reference"] = "DocumentReference/väärä"
    resource["restriction"]["recipient"] = [{"reference": "Organization/ok"}, {"reference": "x y"}]
    resource["extension"] = [{"url": "u", "valueReference": {"reference": "Task/a/b"}}]
    assert sorted(issues_of(resource)) == [
        ("invalid", "Task.extension[0].valueReference.reference"),
        ("invalid", "Task.input[0].valueReference.reference"),
        ("invalid", "Task.restriction.recipient[1].reference"),
    ]


def test_reference_without_reference_string() -> None:
    resource = with_changes(
        service_request(),
        subject={"identifier": {"system": HETU_OID, "value": LAHTINEN_HETU}, "display": "Lähtinen"},
    )
    assert validate_resource(resource) == []


def test_local_references() -> None:
    organization = {"resourceType": "Organization", "id": "kela", "name": "Kela"}
    resource = with_changes(
        service_request(),
        contained=[organization],
        requester={"reference": "#kela"},
        performer=[{"reference": "#varha"}],
    )
    assert issues_of(resource) == [("invalid", "ServiceRequest.performer[0].reference")]
    [issue] = validate_resource(resource)
    assert issue.diagnostics == (
        "Local reference '#varha' at ServiceRequest.performer[0].reference does not match "
        "the id of any contained resource."
    )


def test_reference_to_the_container() -> None:
    organization = {
        "resourceType": "Organization",
        "id": "o1",
        "name": "Varha",
        "partOf": {"reference": "#"},
    }
    resource = with_changes(
        patient(), contained=[organization], managingOrganization={"reference": "#o1"}
    )
    assert validate_resource(resource) == []


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_urn_uuid_references_inside_bundles() -> None:
    request = with_changes(service_request(), subject={"reference": UUID_1})
    bundle = transaction(
        [
            {
                "fullUrl": UUID_1,
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": UUID_2,
                "resource": request,
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
            {
                "resource": with_changes(
                    task(), **{"for": {"reference": f"Patient?identifier={HETU_OID}|x"}}
                ),
                "request": {"method": "POST", "url": "Task"},
            },
        ]
    )
    assert validate_resource(bundle) == []
    collection = with_changes(bundle, type="collection")
    for entry in collection["entry"]:
        del entry["request"]
    assert issues_of(collection) == [("invalid", "Bundle.entry[2].resource.for.reference")]
    assert issues_of(request) == [("invalid", "ServiceRequest.subject.reference")]


def test_local_references_are_per_bundle_entry() -> None:
    owner = with_changes(
        patient(),
        contained=[{"resourceType": "Organization", "id": "o1", "name": "Varha"}],
        managingOrganization={"reference": "#o1"},
    )
    other = with_changes(patient(), managingOrganization={"reference": "#o1"})
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": owner}, {"resource": other}],
    }
    assert issues_of(bundle) == [
        ("invalid", "Bundle.entry[1].resource.managingOrganization.reference")
    ]


def test_issue_type() -> None:
    [issue] = validate_resource(with_changes(patient(), active="yes"))
    assert isinstance(issue, Issue)
    assert issue.to_fhir()["expression"] == ["Patient.active"]


# ---------------------------------------------------------------------------
# The model pass is skipped only where the models would accept
# ---------------------------------------------------------------------------

_TRICKY_TEXT = [
    "",
    " ",
    "\u00a0",
    "\x1c",
    "a  b",
    " a",
    "a\u00a0",
    "a\u00a0b",
    "Äijälä",
    "x",
    "1",
    "-1",
    "Patient/1",
    "2023",
    "2023-02",
    "2023-13",
    "2023-02-28",
    "2024-02-29",
    "2023-02-29",
    "2023-04-31",
    "0999-01-01",
    "0000",
    "2023-01-01T10:00:00Z",
    "2023-01-01T10:00:00+02:00",
    "2023-01-01T10:00:00-14:00",
    "2023-01-01T10:00:00+14:30",
    "2023-01-01T10:00:00",
    "2023-01-01T10:00Z",
    "2023-01-01T24:00:00Z",
    "2023-01-01T23:59:60Z",
    "2023-01-01T10:00:00.123456Z",
    "2023-01-01T10:00:00.1234567Z",
    "2023-02-30T10:00:00Z",
    "10:00:00",
    "10:00:00.5",
    "24:00:00",
    "23:59:60",
    "10:00",
    "urn:oid:1.2.246.21",
    "urn:oid:1.02",
    "urn:oid:3.1",
    "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
    "http://example.org",
    "https://example.org:8443/fhir/Patient?name=x&_count=5",
    "http://exa mple.org",
    "http://-a.org",
    "http://xn--zz.org",
    "http://a.org:99999",
    "http://999999999999",
    "http://1.2.3.999",
    "ftp://example.org/x",
    "mailto:a@example.org",
    "AAAA",
    "AA==",
    "AAA=",
    "AAAAA",
    "not base64!",
    "A" * 64,
    "A" * 65,
    "abc-1.2",
    "abc_1",
]
_TRICKY_INTEGERS = [0, 1, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 10**20]
_TRICKY_DECIMALS = [0.0, -0.0, 1.5, 1e-7, 1e20, 1e308, float("inf"), float("nan"), 3, -12]
_CANDIDATES: dict[JsonType, list[Any]] = {
    JsonType.STRING: _TRICKY_TEXT,
    JsonType.BOOLEAN: [True, False],
    JsonType.INTEGER: _TRICKY_INTEGERS,
    JsonType.DECIMAL: _TRICKY_INTEGERS + _TRICKY_DECIMALS,
}


def _extension_value(type_name: str, value: Any) -> dict[str, Any]:
    return {"url": "http://example.org/x", "value" + type_name[0].upper() + type_name[1:]: value}


@pytest.mark.parametrize("type_name", sorted(set(validation._LEXICAL) - {"boolean", "xhtml"}))
def test_each_lexical_rule_accepts_only_values_of_the_model_type(type_name: str) -> None:
    """A value the walk's rule accepts is one the model's type accepts (tested through
    Extension.value[x], which has every primitive type)."""
    from fhir.resources.R4B import get_fhir_model_class

    rule = validation._LEXICAL[type_name]
    json_type = (
        type_info("Extension").elements["value" + type_name[0].upper() + type_name[1:]].json_type
    )
    accepted = [value for value in _CANDIDATES[json_type] if rule(value)]
    assert accepted, f"the rule for {type_name} accepts none of the candidates"
    for value in accepted:
        get_fhir_model_class("Extension").model_validate(_extension_value(type_name, value))


def _primitive_sites(
    data: Any, info: TypeInfo
) -> Iterator[tuple[dict[str, Any], str, ElementInfo]]:
    """(object, key, element) of every single primitive value below ``data``."""
    for key, value in data.items():
        spec = info.elements.get(key)
        if spec is None:
            continue
        items = value if isinstance(value, list) else [value]
        if spec.kind is ElementKind.PRIMITIVE and not spec.repeats:
            yield data, key, spec
        elif spec.kind is ElementKind.COMPLEX:
            for item in items:
                if isinstance(item, dict):
                    yield from _primitive_sites(item, type_info(spec.type_name))
        elif spec.kind is ElementKind.RESOURCE:
            for item in items:
                resource_info = resource_type_info(item.get("resourceType", ""))
                if resource_info is not None:
                    yield from _primitive_sites(item, resource_info)


def _corpus() -> list[dict[str, Any]]:
    resources = [f() for f in EXAMPLES.values()] + all_fixtures()
    for path in sorted(GOLDEN.glob("*/*.expected.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        resources += [entry["resource"] for entry in bundle["entry"]]
    return resources


def _vouched(resource: dict[str, Any]) -> bool:
    """Whether validate_resource skips the model pass for ``resource``."""
    walker = validation._Walker(allow_urn_uuid=True)
    walker.resource(resource, type_info(resource["resourceType"]), resource["resourceType"], None)
    return walker.certain and not walker.issues


def _model_accepts(resource: dict[str, Any]) -> bool:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValueError:
        return False
    return True


def test_the_walk_vouches_for_every_valid_example_without_the_model() -> None:
    corpus = _corpus()
    assert len(corpus) > 40
    not_vouched = [r["resourceType"] + "/" + r.get("id", "?") for r in corpus if not _vouched(r)]
    assert not_vouched == []


def test_the_walk_vouches_only_for_mutations_the_models_accept() -> None:
    """Every primitive of every example set to awkward values, every element of each
    top-level object removed, and a second choice element added: whatever the walk
    still vouches for, the models accept."""
    vouched = checked = 0
    probed: set[tuple[str, str]] = set()
    for resource in _corpus():
        mutants: list[dict[str, Any]] = []
        for key in resource:
            if key != "resourceType":
                mutants.append({k: v for k, v in resource.items() if k != key})
        info = type_info(resource["resourceType"])
        for name, group in info.choice_groups.items():
            present = [k for k in resource if info.choice_groups.get(k) == group]
            if present and name not in present and info.elements.get(name) is not None:
                spec = info.elements[name]
                if spec.kind is ElementKind.PRIMITIVE:
                    mutants.append({**resource, name: True if spec.type_name == "boolean" else "x"})
        # One site of each primitive type per resource type, given every awkward value.
        for index, (_, _, spec) in enumerate(_primitive_sites(resource, info)):
            if (resource["resourceType"], spec.type_name) in probed:
                continue
            probed.add((resource["resourceType"], spec.type_name))
            for candidate in _CANDIDATES[spec.json_type]:
                mutant = copy.deepcopy(resource)
                holder, key, _ = list(_primitive_sites(mutant, info))[index]
                holder[key] = candidate
                mutants.append(mutant)
        for mutant in mutants:
            checked += 1
            if _vouched(mutant):
                vouched += 1
                assert _model_accepts(mutant), mutant
    assert checked > 1000
    assert 0 < vouched < checked
