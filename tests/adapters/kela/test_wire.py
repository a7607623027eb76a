"""XSD validation of Kela bodies: libxml2 decides, xmlschema words the error, and both
agree on every golden message and on invalid variants of them; schemas are sandboxed."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from lxml import etree

from adapters.kela import MappingError, parse_message, wire
from adapters.kela.mapping import mappings
from adapters.kela.wire import (
    compile_schema,
    first_schema_error,
    libxml2_schema,
    message_schema,
    xmlschema_error,
)
from tests.adapters.kela.support import GOLDEN_DIR, REPO

GOLDEN_XML = sorted((REPO / "mappings" / "kela").rglob("*.xml"))
SCHEMA_OF_NAMESPACE = {
    mapping.namespace: mapping.schema_file
    for direction in ("inbound", "outbound")
    for mapping in mappings(direction).values()
}
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
XS = "http://www.w3.org/2001/XMLSchema"
FORWARDING = "application-forwarding/supplementary-with-attachments.input.xml"


def golden_id(path: Path) -> str:
    return str(path.relative_to(GOLDEN_DIR))


def schema_file(body: Any) -> str:
    return SCHEMA_OF_NAMESPACE[etree.QName(body).namespace]


def libxml2_valid(file_name: str, body: Any) -> bool:
    return bool(libxml2_schema(file_name).validate(body))


def elements(body: Any) -> list[Any]:
    return [e for e in body.iter() if isinstance(e.tag, str)]


# Invalid variants: each changes a body in place, or returns False when it does not apply.


def missing_required_element(body: Any) -> bool:
    body.remove(body[0])  # the first child of every message is its required id
    return True


def bad_date(body: Any) -> bool:
    for element in elements(body):
        if not len(element) and DATE.match(element.text or ""):
            element.text = "2025-02-30" + element.text[10:]
            return True
    return False


def hetu_pattern_violation(body: Any) -> bool:
    for element in elements(body):
        if etree.QName(element).localname == "Hetu":
            element.text = "15038-922J"
            return True
    return False


def unknown_element(body: Any) -> bool:
    etree.SubElement(body, f"{{{etree.QName(body).namespace}}}Unexpected")
    return True


def wrong_namespace_child(body: Any) -> bool:
    body[0].tag = f"{{urn:silta:kela:other:1}}{etree.QName(body[0]).localname}"
    return True


def wrong_namespace_root(body: Any) -> bool:
    body.tag = f"{{urn:silta:kela:other:1}}{etree.QName(body).localname}"
    return True


VARIANTS: list[Callable[[Any], bool]] = [
    missing_required_element,
    bad_date,
    hetu_pattern_violation,
    unknown_element,
    wrong_namespace_child,
    wrong_namespace_root,
]


def invalid_cases() -> list[Any]:
    cases = []
    for path in GOLDEN_XML:
        for variant in VARIANTS:
            if variant(parse_message(path.read_bytes())):
                cases.append(
                    pytest.param(path, variant, id=f"{golden_id(path)}-{variant.__name__}")
                )
    return cases


def test_golden_messages_of_both_directions_are_found() -> None:
    names = {path.name.split(".")[-2] for path in GOLDEN_XML}
    assert names == {"input", "expected"}


@pytest.mark.parametrize("path", GOLDEN_XML, ids=golden_id)
def test_golden_message_is_valid_for_both(path: Path) -> None:
    body = parse_message(path.read_bytes())
    schema = message_schema(schema_file(body))
    assert libxml2_valid(schema_file(body), body)
    assert xmlschema_error(schema, body) is None
    assert first_schema_error(schema, body) is None


@pytest.mark.parametrize(("path", "variant"), invalid_cases())
def test_invalid_variant_is_refused_by_both(path: Path, variant: Callable[[Any], bool]) -> None:
    body = parse_message(path.read_bytes())
    file_name = schema_file(body)
    schema = message_schema(file_name)
    variant(body)
    expected = xmlschema_error(schema, body)
    assert not libxml2_valid(file_name, body)
    assert expected is not None
    assert expected.startswith("element ")
    assert first_schema_error(schema, body) == expected


def test_every_variant_applies_somewhere() -> None:
    applied = {case.values[1] for case in invalid_cases()}
    assert applied == set(VARIANTS)


def test_xmlschema_wording_names_the_element() -> None:
    body = parse_message((GOLDEN_DIR / "concern-notification/with-consent.input.xml").read_bytes())
    hetu_pattern_violation(body)
    problem = first_schema_error(message_schema("concern-notification-v1.xsd"), body)
    assert problem is not None
    assert problem.startswith("element ConcernNotification/Client/Hetu: ")


def test_valid_body_does_not_run_xmlschema(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any) -> str | None:
        raise AssertionError("xmlschema ran on a valid body")

    monkeypatch.setattr(wire, "xmlschema_error", fail)
    for path in GOLDEN_XML:
        body = parse_message(path.read_bytes())
        assert first_schema_error(message_schema(schema_file(body)), body) is None


def test_libxml2_error_is_reported_when_xmlschema_finds_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "xmlschema_error", lambda schema, element: None)
    body = parse_message((GOLDEN_DIR / "concern-notification/with-consent.input.xml").read_bytes())
    hetu_pattern_violation(body)
    problem = first_schema_error(message_schema("concern-notification-v1.xsd"), body)
    assert problem == (
        "element ConcernNotification/Client/Hetu (line 6): Element 'Hetu': [facet 'pattern'] "
        "The value '15038-922J' is not accepted by the pattern "
        r"'\d{6}[\-+ABCDEFUVWXY]\d{3}[0-9ABCDEFHJKLMNPRSTUVWXY]'"
    )


def test_libxml2_error_of_a_built_element_has_no_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "xmlschema_error", lambda schema, element: None)
    namespace = "urn:silta:kela:notification-feedback:1"
    body = wire.build_element(
        namespace, "NotificationFeedbackResponse", {"MessageId": "M-1", "ReceiptStatus": "ok"}
    )
    problem = first_schema_error(message_schema("notification-feedback-v1.xsd"), body)
    assert problem is not None
    assert problem.startswith("element NotificationFeedbackResponse/ReceiptStatus: ")
    assert "'ok' is not an element of the set" in problem


@pytest.mark.parametrize(
    ("golden", "local_name", "value"),
    [
        (FORWARDING, "Size", "\uff11\uff12\uff13"),  # fullwidth digits
        (FORWARDING, "Size", "\u0661\u0662\u0663"),  # Arabic-Indic digits
        (FORWARDING, "Size", "1_000"),
        ("benefit-decision/basic-social-assistance.input.xml", "MonthlyAmount", "1 000.50"),
        ("municipal-assistance-decision/partly-granted.expected.xml", "TotalAmount", "1 2"),
    ],
)
def test_lexical_forms_only_xmlschema_lets_through_are_refused(
    golden: str, local_name: str, value: str
) -> None:
    """XSD 1.0 Part 2 §3.3.13.1 (integer: ASCII digits) and §3.2.3.1 (decimal: no inner
    spaces); xmlschema accepts these, libxml2 does not, and the body is refused."""
    body = parse_message((GOLDEN_DIR / golden).read_bytes())
    element = next(e for e in elements(body) if etree.QName(e).localname == local_name)
    element.text = value
    schema = message_schema(schema_file(body))
    assert not libxml2_valid(schema_file(body), body)
    assert xmlschema_error(schema, body) is None, "xmlschema now refuses it: update wire.py"
    problem = first_schema_error(schema, body)
    assert problem is not None
    assert f"Element '{local_name}': '{value}' is not a valid value of the atomic type" in problem


def test_schema_outside_the_kela_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.xsd"
    path.write_text(f'<xs:schema xmlns:xs="{XS}"><xs:element name="a"/></xs:schema>')
    with pytest.raises(MappingError, match="is not one of"):
        first_schema_error(xmlschema.XMLSchema(str(path)), etree.Element("a"))


def test_validators_are_per_thread() -> None:
    found: list[Any] = []
    thread = threading.Thread(
        target=lambda: found.append(libxml2_schema("concern-notification-v1.xsd"))
    )
    thread.start()
    thread.join()
    mine = libxml2_schema("concern-notification-v1.xsd")
    assert mine is libxml2_schema("concern-notification-v1.xsd")
    assert found and found[0] is not mine


def test_schemas_are_compiled_one_thread_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """libxml2 builds its table of built-in XSD types on a process's first compile without
    a lock; threads that compiled at once (each thread compiles its own validators) left
    it broken, and every later message of the process was refused."""
    original = etree.XMLSchema
    active = most = 0
    counting = threading.Lock()

    def compiling(document: Any) -> Any:
        nonlocal active, most
        with counting:
            active += 1
            most = max(most, active)
        try:
            time.sleep(0.02)
            return original(document)
        finally:
            with counting:
                active -= 1

    monkeypatch.setattr(etree, "XMLSchema", compiling)
    start = threading.Barrier(4)
    compiled: list[Any] = []

    def compile_one() -> None:
        start.wait()
        sandbox = wire.schema_dir()
        compiled.append(compile_schema(sandbox / "concern-notification-v1.xsd", sandbox))

    threads = [threading.Thread(target=compile_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(compiled) == 4
    assert most == 1


# The sandbox: a schema can only include or import files inside its directory.


def schema_with(tmp_path: Path, directive: str) -> tuple[Path, Path]:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir(exist_ok=True)
    main = sandbox / "main.xsd"
    main.write_text(f'<xs:schema xmlns:xs="{XS}">{directive}</xs:schema>', encoding="utf-8")
    return main, sandbox


def outside_schema(tmp_path: Path) -> Path:
    outside = tmp_path / "outside.xsd"
    outside.write_text(f'<xs:schema xmlns:xs="{XS}"><xs:element name="Leak"/></xs:schema>')
    return outside


def test_include_inside_the_sandbox_is_loaded(tmp_path: Path) -> None:
    main, sandbox = schema_with(tmp_path, '<xs:include schemaLocation="common.xsd"/>')
    (sandbox / "common.xsd").write_text(
        f'<xs:schema xmlns:xs="{XS}"><xs:element name="Common" type="xs:date"/></xs:schema>'
    )
    schema = compile_schema(main, sandbox)
    assert schema.validate(etree.fromstring(b"<Common>2025-01-31</Common>"))
    assert not schema.validate(etree.fromstring(b"<Common>2025-02-30</Common>"))


@pytest.mark.parametrize(
    "location",
    [
        "/etc/passwd",
        "file:///etc/passwd",
        "../../../../../../etc/passwd",
        "http://example.invalid/evil.xsd",
        "https://127.0.0.1:9/evil.xsd",
    ],
)
@pytest.mark.parametrize("directive", ["include", "import"])
def test_schema_location_outside_the_sandbox_is_refused(
    tmp_path: Path, location: str, directive: str
) -> None:
    namespace = ' namespace="urn:x"' if directive == "import" else ""
    main, sandbox = schema_with(
        tmp_path, f'<xs:{directive}{namespace} schemaLocation="{location}"/>'
    )
    # The resolver refuses before anything is read or fetched; its reason is reported.
    with pytest.raises(MappingError, match=r"schema main\.xsd cannot be compiled: schema location"):
        compile_schema(main, sandbox)


def test_real_schema_outside_the_sandbox_is_not_loaded_anyway(tmp_path: Path) -> None:
    outside = outside_schema(tmp_path)
    main, sandbox = schema_with(tmp_path, '<xs:include schemaLocation="../outside.xsd"/>')
    with pytest.raises(MappingError, match=r"outside\.xsd' is not a file in"):
        compile_schema(main, sandbox)
    (sandbox / "link.xsd").symlink_to(outside)
    main, _ = schema_with(tmp_path, '<xs:include schemaLocation="link.xsd"/>')
    with pytest.raises(MappingError, match=r"link\.xsd' is not a file in"):
        compile_schema(main, sandbox)


def test_included_schema_with_a_dtd_is_refused(tmp_path: Path) -> None:
    main, sandbox = schema_with(tmp_path, '<xs:include schemaLocation="dtd.xsd"/>')
    (sandbox / "dtd.xsd").write_text(
        '<!DOCTYPE xs:schema [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        f'<xs:schema xmlns:xs="{XS}"><xs:element name="E" fixed="&e;"/></xs:schema>'
    )
    with pytest.raises(MappingError, match="DTDs and entities are not allowed"):
        compile_schema(main, sandbox)


def test_main_schema_outside_the_sandbox_is_refused(tmp_path: Path) -> None:
    _, sandbox = schema_with(tmp_path, "")
    with pytest.raises(MappingError, match="is not a file in"):
        compile_schema(outside_schema(tmp_path), sandbox)


def test_kela_schemas_compile_in_their_sandbox() -> None:
    for path in sorted(wire.schema_dir().glob("*-v1.xsd")):
        if path.name != "kela-common-v1.xsd":
            assert compile_schema(path, wire.schema_dir()) is not None
