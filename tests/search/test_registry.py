"""Search-parameter definitions as loaded from schemas/fhir/search-parameters.json."""

from __future__ import annotations

from gateway.search.registry import get_param, params_for


def test_string_parameters_with_one_expression_share_its_rows() -> None:
    name, phonetic = get_param("Patient", "name"), get_param("Patient", "phonetic")
    assert name is not None and phonetic is not None
    assert name.expression == phonetic.expression == "Patient.name"
    assert name.stored_in == phonetic.stored_in == ("name", "family", "given")
    assert name.parts_stored_elsewhere == frozenset({"family", "given"})


def test_a_part_with_its_own_parameter_is_stored_under_that_parameter_only() -> None:
    address = get_param("Organization", "address")
    assert address is not None
    assert address.stored_in == (
        "address",
        "address-city",
        "address-country",
        "address-postalcode",
        "address-state",
    )
    assert address.parts_stored_elsewhere == frozenset({"city", "country", "postalCode", "state"})
    city = get_param("Organization", "address-city")
    assert city is not None and city.stored_in == ("address-city",)


def test_every_string_parameter_is_stored_somewhere_and_others_are_not_shared() -> None:
    for resource_type in ("Patient", "Practitioner", "Organization", "CareTeam", "Task"):
        for code, param in params_for(resource_type).items():
            if param.type == "string":
                owner = params_for(resource_type)[param.stored_in[0]]
                assert owner.stored_in[0] == owner.code, code
                assert owner.expression == param.expression, code
            else:
                assert param.stored_in == () and not param.parts_stored_elsewhere, code
