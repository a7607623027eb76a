"""The template interpreter: what templates mean, and mistakes found at load time."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from adapters.kela.engine import CompileContext, Direction, Scope, compile_template
from adapters.kela.errors import ErrorCode, KelaMessageError, MappingError
from adapters.kela.functions import FUNCTIONS
from adapters.kela.mapping import mappings

NS = "urn:test:1"
XML = etree.fromstring(
    f'<M xmlns="{NS}"><A> one  two </A><B>true</B><C><D>x</D><D>y</D></C><E>12.50</E><F/>'
    f"<G> a <H>b</H> c<!-- note --></G></M>".encode()
)


def context(direction: Direction = "inbound", variables: set[str] | None = None) -> CompileContext:
    return CompileContext(
        file="test.json",
        direction=direction,
        functions=FUNCTIONS,
        namespaces={"t": NS},
        variables=variables or set(),
        entries={"patient"},
        inputs={"task"},
    )


def render(template: Any, variables: dict[str, Any] | None = None, **scope: Any) -> Any:
    ctx = context(scope.pop("direction", "inbound"), set(variables or {}))
    node = compile_template(template, ctx, "template")
    return node.render(Scope(message="Test", node=XML, variables=dict(variables or {}), **scope))


def test_paths_and_modes() -> None:
    assert render({"$path": "t:A"}) == "one  two"
    assert render({"$path": "t:A", "as": "token"}) == "one two"
    assert render({"$path": "t:B", "as": "boolean"}) is True
    assert render({"$path": "t:C/t:D", "as": "list"}) == ["x", "y"]
    assert render({"$path": "t:Missing"}) is None


def test_an_element_reads_as_the_text_of_all_its_descendants() -> None:
    """XPath 1.0 §5.2: an element's string-value; an empty element is absent."""
    assert render({"$path": "t:C"}) == "xy"
    assert render({"$path": "t:G"}) == "a b c"
    assert render({"$path": "t:F"}) is None


def test_an_object_whose_expressions_are_all_absent_is_left_out() -> None:
    template = {
        "identifier": [{"system": "urn:example", "value": {"$path": "t:Missing"}}],
        "fixed": {"system": "urn:example", "code": "x"},
        "money": {"$fn": "euro", "args": [{"$path": "t:E", "as": "decimal"}]},
    }
    assert render(template) == {
        "fixed": {"system": "urn:example", "code": "x"},
        "money": {"value": 12.5, "currency": "EUR"},
    }


def test_each_splices_lists() -> None:
    template = {"$each": "t:C/t:D", "do": [{"v": {"$path": "."}}, {"w": {"$fn": "element_name"}}]}
    assert render(template) == [{"v": "x"}, {"w": "D"}, {"v": "y"}, {"w": "D"}]


def test_if_format_first_and_codes() -> None:
    assert render({"$if": {"$var": "flag"}, "then": "yes", "else": "no"}, {"flag": False}) == "no"
    assert render({"$format": "{a}-{b}"}, {"a": "1", "b": "2"}) == "1-2"
    assert render({"$format": "{a}-{b}"}, {"a": "1", "b": None}) is None
    assert render({"$first": [{"$path": "t:Missing"}, "fallback"]}) == "fallback"
    assert render({"$code": "urgency", "key": "immediate", "field": "map.priority"}) == "asap"
    assert (
        render({"$code": "feedback-status", "by": "taskStatus", "key": "ready", "field": "code"})
        == "accepted"
    )
    assert render({"$code": "language", "key": "sv", "lang": "en"}) == {
        "system": "urn:ietf:bcp:47",
        "code": "sv",
        "display": "Swedish",
    }


def test_unknown_code_is_a_message_error() -> None:
    with pytest.raises(KelaMessageError) as raised:
        render({"$code": "urgency", "key": "someday"})
    assert raised.value.code is ErrorCode.UNKNOWN_CODE
    assert "someday" in raised.value.message


def test_fhirpath_reads_named_inputs_with_variables() -> None:
    task = {
        "resourceType": "Task",
        "status": "accepted",
        "identifier": [{"system": "urn:a", "value": "1"}, {"system": "urn:b", "value": "2"}],
    }
    template = {"$fhirpath": "identifier.where(system = %wanted).value", "on": "task"}
    assert (
        render(template, {"wanted": "urn:b"}, direction="outbound", resources={"task": task}) == "2"
    )
    assert render(template, {"wanted": "urn:b"}, direction="outbound", resources={}) is None


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ({"$var": "nowhere"}, "variable 'nowhere'"),
        ({"$fn": "no_such_function"}, "unknown function"),
        ({"$fn": "valid_hetu", "args": []}, "does not take 0 arguments"),
        ({"$code": "no-such-table", "key": "x"}, "no code table"),
        ({"$code": "urgency", "key": "x", "field": "map.colour"}, "no field"),
        ({"$code": "urgency", "key": "x", "by": "colour"}, "maps no"),
        ({"$path": "t:A[", "as": "text"}, "invalid XPath"),
        ({"$path": "t:A", "as": "colour"}, "unknown $path mode"),
        ({"$path": "t:A", "$var": "x"}, "one operator"),
        ({"$nonsense": 1}, "unknown operator"),
        ({"$var": "x", "as": "text"}, "takes no option"),
        ({"$format": "{missing}"}, "{missing}"),
        ({"$fullUrl": "nobody"}, "no entry named"),
        ({"$fhirpath": "status", "on": "task"}, "inbound mappings read XML"),
    ],
)
def test_mistakes_in_templates_fail_at_load(template: Any, problem: str) -> None:
    with pytest.raises(MappingError) as raised:
        compile_template(template, context(), "template")
    assert problem in str(raised.value)
    assert "test.json at template" in str(raised.value)


def test_fhirpath_variables_are_checked_at_load() -> None:
    with pytest.raises(MappingError) as raised:
        compile_template(
            {"$fhirpath": "id.where(%unknown)", "on": "task"}, context("outbound"), "t"
        )
    assert "%unknown" in str(raised.value)


def test_every_mapping_file_loads() -> None:
    assert set(mappings("inbound")) == {
        "ConcernNotification",
        "ApplicationForwarding",
        "BenefitDecision",
    }
    assert set(mappings("outbound")) == {"NotificationFeedback", "MunicipalAssistanceDecision"}
