"""Validation of a resource in the FHIR JSON shape against FHIR R4.

Two passes, each once over the resource:

* the R4B model of the type (``model_validate``): cardinality, required elements,
  choice types ``[x]``, unknown elements and the lexical rules of the primitive
  types (R4 datatypes.html);
* one recursive walk over the dict, driven by the R4 structure of
  :func:`gateway.fhir.formats.type_info`, for what the models let through: JSON
  types of primitives (the models turn ``"yes"`` into ``true`` and parse strings
  as JSON objects, json.html §2.6.2), ``null`` and primitive extension arrays
  (json.html §2.6.2.1), empty objects and arrays (ele-1), resource ids longer
  than 64 characters (resource.html §2.30.0.1), reference syntax
  (references.html §2.3.0), local references to contained resources (ref-1),
  nested ``contained`` (dom-2), the narrative (txt-1, txt-2) and the R4 elements
  that R4B changed (``Extension.valueMeta``).

Issues of the walk come first; a model issue at the same location is dropped.
Codes of required bindings are checked by :mod:`gateway.fhir.bindings`, not here.

The model pass builds an object for every element and costs several times the walk,
so it runs only when the walk cannot vouch for the resource: the walk also checks the
required elements and choice groups of the models and each primitive value against a
lexical rule that accepts a subset of what the model's type accepts (``_LEXICAL``).
A resource the walk finds clean on all of these is one the models accept
(``tests/fhir/test_validation.py`` checks this on every fixture and on mutations of
them); for anything else the model pass runs and words its errors as before.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Final

from fhir.resources.R4B import get_fhir_model_class
from lxml import etree
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from gateway.errors import Issue
from gateway.fhir.bindings import check_required_bindings
from gateway.fhir.formats import (
    XHTML_NS,
    ElementInfo,
    ElementKind,
    JsonType,
    TypeInfo,
    hardened_parser,
    resource_type_info,
    type_info,
)
from gateway.fhir.resource_types import all_fhir_type_names, is_stored_type

MAX_ISSUES: Final = 100

_ID_RE: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RELATIVE_RE: Final = re.compile(
    r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?"
)
_ABSOLUTE_RE: Final = re.compile(r"https?://[^\s/?#]+\S*")
_LOCAL_RE: Final = re.compile(r"#([A-Za-z0-9\-.]{1,64})?")
_URN_UUID_RE: Final = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_URN_OID_RE: Final = re.compile(r"urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+")
_CONDITIONAL_RE: Final = re.compile(r"([A-Z][A-Za-z]+)\?(\S.*)")

_PRIMITIVE: Final = ElementKind.PRIMITIVE
_COMPLEX: Final = ElementKind.COMPLEX
_RESOURCE: Final = ElementKind.RESOURCE
_XHTML: Final = ElementKind.XHTML

# Elements that R4 has and the R4B models lack (see gateway.fhir.formats).
_R4_ONLY_META: Final = frozenset({"valueMeta", "defaultValueMeta", "fixedMeta", "patternMeta"})


def _words(codes: str) -> frozenset[str]:
    return frozenset(codes.split())


# txt-1: basic HTML formatting only (R4 narrative.html §2.4.0.1).
_XHTML_ELEMENTS: Final = _words(
    "a abbr acronym address area b bdo big blockquote br caption cite code col colgroup dd "
    "dfn div dl dt em h1 h2 h3 h4 h5 h6 hr i img kbd li map ol p pre q samp small span strong "
    "sub sup table tbody td tfoot th thead tr tt ul var"
)
_XHTML_PREFIX: Final = "{" + XHTML_NS + "}"
_XHTML_DIV: Final = _XHTML_PREFIX + "div"


def validate_resource(
    data: dict[str, Any],
    *,
    expected_type: str | None = None,
    allow_urn_uuid: bool = False,
) -> list[Issue]:
    """The errors of ``data`` as a FHIR R4 resource of a stored type; empty if valid.

    ``expected_type`` is the type the request is about (e.g. from the URL);
    ``allow_urn_uuid`` permits ``urn:uuid:`` and conditional (``Type?query``)
    references, as inside a transaction (R4 http.html §3.1.0.11.2).
    """
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return [Issue("error", "required", "The resource has no resourceType.")]
    if expected_type is not None and resource_type != expected_type:
        message = f"The resource is a {resource_type}, but this request is for a {expected_type}."
        return [Issue("error", "invalid", message, ("resourceType",))]
    if not is_stored_type(resource_type):
        if resource_type in all_fhir_type_names():
            message = f"Resource type {resource_type} is not supported by this server."
            return [Issue("error", "not-supported", message, ("resourceType",))]
        message = f"'{resource_type}' is not a FHIR R4 resource type."
        return [Issue("error", "invalid", message, ("resourceType",))]
    info = resource_type_info(resource_type)
    if info is None:
        message = f"Resource type {resource_type} is not supported by this server."
        return [Issue("error", "not-supported", message, ("resourceType",))]

    walker = _Walker(allow_urn_uuid)
    try:
        walker.resource(data, info, resource_type, None)
    except RecursionError:
        return [Issue("error", "too-costly", "The resource is nested too deeply to validate.")]
    issues = walker.issues
    seen = {issue.expression for issue in issues}
    if issues or not walker.certain:
        try:
            get_fhir_model_class(resource_type).model_validate(data)
        except ValidationError as exc:
            for issue in _model_issues(exc, resource_type, data):
                if issue.expression not in seen:
                    seen.add(issue.expression)
                    issues.append(issue)
        except Exception as exc:  # the models raise KeyError/AttributeError on some bad input
            if not issues:
                message = f"The resource could not be validated: {type(exc).__name__}: {exc}"
                issues.append(Issue("error", "invalid", message))
    issues += [i for i in check_required_bindings(data) if i.expression not in seen]
    if len(issues) > MAX_ISSUES:
        dropped = len(issues) - MAX_ISSUES
        del issues[MAX_ISSUES:]
        note = f"{dropped} more errors are not reported."
        issues.append(Issue("information", "too-costly", note))
    return issues


# ---------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A short description of a JSON value for a message."""
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    return "an object"


_JSON_TYPE_NAMES: Final[Mapping[JsonType, str]] = {
    JsonType.STRING: "a JSON string",
    JsonType.BOOLEAN: "a JSON boolean (true or false)",
    JsonType.INTEGER: "a JSON integer",
    JsonType.DECIMAL: "a JSON number",
}


# The Python types orjson gives for each JSON type (bool is not an int here).
_PYTHON_TYPES: Final[Mapping[JsonType, frozenset[type]]] = {
    JsonType.STRING: frozenset({str}),
    JsonType.BOOLEAN: frozenset({bool}),
    JsonType.INTEGER: frozenset({int}),
    JsonType.DECIMAL: frozenset({int, float}),
}


def _text(value: str) -> bool:
    """string, markdown: a character that is not whitespace, which the models' pattern
    (one character of space, CR, LF, tab or non-whitespace) then finds: Python counts as
    whitespace every character that the pattern's Unicode whitespace class holds."""
    return bool(value) and not value.isspace()


def _fullmatch(pattern: str) -> Callable[[Any], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.fullmatch(value) is not None


def _in_range(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: low <= value <= high


_DECIMAL_RE: Final = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_DATE_RE: Final = re.compile(r"[1-9][0-9]{3}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?")
_INSTANT_RE: Final = re.compile(
    r"[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)


def _real_day(value: str) -> bool:
    """A value whose first ten characters are YYYY-MM-DD names a day of the calendar."""
    try:
        datetime.date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


def _date(value: str) -> bool:
    return _DATE_RE.fullmatch(value) is not None and (len(value) < 10 or _real_day(value))


def _instant(value: str) -> bool:
    return _INSTANT_RE.fullmatch(value) is not None and _real_day(value)


def _date_time(value: str) -> bool:
    return _date(value) or _instant(value)


def _decimal(value: int | float) -> bool:
    return _DECIMAL_RE.fullmatch(str(value)) is not None


def _always(value: Any) -> bool:
    return True


# Lexical rules by primitive type, each accepting only values that the model's type
# (fhir_core.types) accepts too, so stricter where that is simpler: four-digit years
# from 1000, at most six digits of fractional seconds, no leap second, ids of at most
# 64 characters, http(s) URLs of plain host names only. The character classes are
# ASCII; ``\S`` is Unicode, and Python's whitespace holds the models' (Rust regex)
# whitespace, so ``\S`` here never matches more than there. JSON types are checked
# before. A type without a rule here (uuid) always gets the model pass.
_LEXICAL: Final[Mapping[str, Callable[[Any], bool]]] = {
    "boolean": _always,
    "string": _text,
    "markdown": _text,
    "xhtml": _always,
    "code": _fullmatch(r"\S+( \S+)*"),
    "id": _fullmatch(r"[A-Za-z0-9\-.]{1,64}"),
    "uri": _fullmatch(r"\S*"),
    "canonical": _fullmatch(r"\S*"),
    "oid": _fullmatch(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"),
    "url": _fullmatch(
        r"https?://[A-Za-z0-9]+(-[A-Za-z0-9]+)*(\.[A-Za-z0-9]+(-[A-Za-z0-9]+)*)*(:[0-9]{1,4})?"
        r"(/[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*)?(\?[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*)?"
    ),
    "base64Binary": _fullmatch(
        r"([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)"
    ),
    "integer": _in_range(-(2**31), 2**31 - 1),
    "unsignedInt": _in_range(0, 2**31 - 1),
    "positiveInt": _in_range(1, 2**31 - 1),
    "decimal": _decimal,
    "date": _date,
    "dateTime": _date_time,
    "instant": _instant,
    "time": _fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"),
}


_Rule = tuple[ElementInfo, frozenset[type] | None, Callable[[Any], bool] | None]


@cache
def _rules(type_name: str) -> Mapping[str, _Rule]:
    """Each element of a type with, for a primitive, the Python types its JSON type
    allows and its lexical rule (None for a complex element), worked out once per type."""
    return {
        name: (
            (spec, _PYTHON_TYPES[spec.json_type], _LEXICAL.get(spec.type_name))
            if spec.kind is _PRIMITIVE
            else (spec, None, None)
        )
        for name, spec in type_info(type_name).elements.items()
    }


class _Scope:
    """Contained resource ids and local references of one resource (ref-1)."""

    __slots__ = ("contained", "local_refs")

    def __init__(self) -> None:
        self.contained: set[str] = set()
        self.local_refs: list[tuple[str, str]] = []


class _Walker:
    __slots__ = (
        "allow_conditional",
        "allow_urn_oid",
        "allow_urn_uuid",
        "certain",
        "issues",
        "reported",
    )

    def __init__(self, allow_urn_uuid: bool) -> None:
        self.issues: list[Issue] = []
        self.reported: set[str] = set()
        # False once the walk meets what only the model pass can judge.
        self.certain = True
        self.allow_urn_uuid = allow_urn_uuid
        self.allow_conditional = allow_urn_uuid
        self.allow_urn_oid = False

    def add(self, code: str, message: str, expression: str) -> None:
        if expression not in self.reported:
            self.reported.add(expression)
            self.issues.append(Issue("error", code, message, (expression,)))

    def resource(
        self, data: Mapping[str, Any], info: TypeInfo, path: str, scope: _Scope | None
    ) -> None:
        own_scope = scope is None
        if scope is None:
            scope = _Scope()
        resource_id = data.get("id")
        if resource_id is not None and (
            not isinstance(resource_id, str) or not _ID_RE.fullmatch(resource_id)
        ):
            self.add(
                "value",
                f"Invalid resource id {_show(resource_id)} at {path}.id: an id is 1 to 64 "
                "characters of A-Z, a-z, 0-9, '-' and '.'.",
                f"{path}.id",
            )
        saved = (self.allow_urn_uuid, self.allow_urn_oid, self.allow_conditional)
        if info.name == "Bundle":
            self.allow_urn_uuid = self.allow_urn_oid = True
            if data.get("type") in ("transaction", "batch"):
                self.allow_conditional = True
        self.object(data, info, path, scope)
        self.allow_urn_uuid, self.allow_urn_oid, self.allow_conditional = saved
        if own_scope:
            for target, expression in scope.local_refs:
                if target and target not in scope.contained:
                    self.add(
                        "invalid",
                        f"Local reference '#{target}' at {expression} does not match the id "
                        "of any contained resource.",
                        expression,
                    )

    def object(self, data: Mapping[str, Any], info: TypeInfo, path: str, scope: _Scope) -> None:
        rules = _rules(info.name)
        for key, value in data.items():
            rule = rules.get(key)
            if rule is None:
                if key[:1] == "_":
                    self.primitive_extension(data, info, key, value, path, scope)
                elif not (key == "resourceType" and info.is_resource):
                    self.add("structure", f"Unknown element '{key}' at {path}.", f"{path}.{key}")
                continue
            spec, allowed, lexical = rule
            primitive = allowed is not None
            if allowed is not None:
                if not spec.repeats:
                    if type(value) in allowed:
                        if lexical is None or not lexical(value):
                            self.certain = False
                        continue
                elif type(value) is list and value:
                    for item in value:
                        if type(item) not in allowed:
                            break
                        if lexical is None or not lexical(item):
                            self.certain = False
                    else:
                        continue
                self.certain = False
            here = f"{path}.{key}"
            if spec.repeats:
                if not isinstance(value, list):
                    self.add("value", f"{here} must be an array, not {_show(value)}.", here)
                    continue
                if not value:
                    self.add("value", f"{here} must not be an empty array.", here)
                    continue
                extras = data.get("_" + key) if primitive else None
                for index, item in enumerate(value):
                    item_path = f"{here}[{index}]"
                    if item is None:
                        if not primitive:
                            self.add("value", f"{item_path} must not be null.", item_path)
                        elif not (
                            isinstance(extras, list)
                            and index < len(extras)
                            and extras[index] is not None
                        ):
                            message = (
                                f"{item_path} is null, which is only allowed with an id or "
                                f"extensions at _{key}[{index}]."
                            )
                            self.add("value", message, item_path)
                        continue
                    self.item(spec, item, item_path, scope)
            elif isinstance(value, list):
                self.add("value", f"{here} must be a single value, not an array.", here)
            elif value is None:
                self.add("value", f"{here} must not be null.", here)
            else:
                self.item(spec, value, here, scope)
        if self.certain and (info.required or info.choice_groups):
            self.cardinality(data, info)

    def cardinality(self, data: Mapping[str, Any], info: TypeInfo) -> None:
        """Leaves the judgement to the model pass where a required element is missing
        (it may be excused by extensions on ``_name``, R4 extensibility.html §2.17.1.1)
        or a choice group has more or fewer than it allows (formats.html §2.4.1)."""
        for name in info.required:
            if data.get(name) is None:
                self.certain = False
                return
        groups = info.choice_groups
        if not groups:
            return
        present: set[str] = set()
        for key in data:
            group = groups.get(key)
            if group is not None:
                if group in present:
                    self.certain = False
                    return
                present.add(group)
        for group in info.required_choices:
            if group not in present:
                self.certain = False
                return

    def item(self, spec: ElementInfo, value: Any, path: str, scope: _Scope) -> None:
        kind = spec.kind
        if kind is _PRIMITIVE:
            if type(value) not in _PYTHON_TYPES[spec.json_type]:
                expected = _JSON_TYPE_NAMES[spec.json_type]
                self.add(
                    "value",
                    f"{path} ({spec.type_name}) must be {expected}, not {_show(value)}.",
                    path,
                )
            return
        if kind is _XHTML:
            self.narrative(value, path)
            return
        if not isinstance(value, dict):
            self.add("value", f"{path} must be a JSON object, not {_show(value)}.", path)
            return
        if kind is _COMPLEX:
            if not value:
                self.add("value", f"{path} must not be an empty object.", path)
                return
            if spec.name in _R4_ONLY_META:
                self.r4_meta(value, path)
            self.object(value, type_info(spec.type_name), path, scope)
            if spec.type_name == "Reference":
                self.reference(value.get("reference"), path, scope)
        else:
            self.contained(spec, value, path, scope)

    def contained(
        self, spec: ElementInfo, value: Mapping[str, Any], path: str, scope: _Scope
    ) -> None:
        name = value.get("resourceType")
        if not isinstance(name, str):
            self.add("required", f"The resource at {path} has no resourceType.", path)
            return
        info = resource_type_info(name)
        if info is None:
            if name in all_fhir_type_names():
                message = f"Resource type {name} at {path} is not supported by this server."
                self.add("not-supported", message, path)
            else:
                self.add("invalid", f"'{name}' at {path} is not a FHIR R4 resource type.", path)
            return
        if spec.name == "contained":
            if "contained" in value:
                message = f"A contained resource must not contain resources ({path}, dom-2)."
                self.add("invalid", message, f"{path}.contained")
            resource_id = value.get("id")
            if isinstance(resource_id, str):
                scope.contained.add(resource_id)
            self.resource(value, info, path, scope)
        else:
            self.resource(value, info, path, None)

    def primitive_extension(
        self,
        data: Mapping[str, Any],
        info: TypeInfo,
        key: str,
        value: Any,
        path: str,
        scope: _Scope,
    ) -> None:
        """``_name``: the id and extensions of a primitive (R4 json.html §2.6.2.1)."""
        name = key[1:]
        spec = info.elements.get(name)
        if spec is None or spec.kind is not _PRIMITIVE:
            self.add("structure", f"Unknown element '{key}' at {path}.", f"{path}.{key}")
            return
        here = f"{path}.{name}"
        element = type_info("Element")
        if not spec.repeats:
            if not isinstance(value, dict):
                self.add("value", f"{path}.{key} must be a JSON object, not {_show(value)}.", here)
            elif not value:
                self.add("value", f"{path}.{key} must not be an empty object.", here)
            else:
                self.object(value, element, here, scope)
            return
        values = data.get(name)
        if not isinstance(value, list):
            self.add("value", f"{path}.{key} must be an array, not {_show(value)}.", here)
            return
        if isinstance(values, list) and len(values) != len(value):
            message = f"{path}.{key} must have as many items as {here} ({len(values)})."
            self.add("structure", message, here)
        for index, item in enumerate(value):
            item_path = f"{here}[{index}]"
            if item is None:
                if not (isinstance(values, list) and index < len(values)) or values[index] is None:
                    self.add("value", f"{item_path} has neither a value nor extensions.", item_path)
            elif not isinstance(item, dict):
                self.add("value", f"{item_path} extensions must be a JSON object.", item_path)
            else:
                self.object(item, element, item_path, scope)

    def reference(self, reference: Any, path: str, scope: _Scope) -> None:
        """Reference.reference syntax (R4 references.html §2.3.0)."""
        if not isinstance(reference, str):
            return
        here = f"{path}.reference"
        match = _RELATIVE_RE.fullmatch(reference)
        if match is not None:
            if match.group(1) in all_fhir_type_names():
                return
            self.add(
                "invalid",
                f"Reference '{reference}' at {here} names '{match.group(1)}', which is not a "
                "FHIR R4 resource type.",
                here,
            )
            return
        if reference.startswith("#"):
            local = _LOCAL_RE.fullmatch(reference)
            if local is not None:
                scope.local_refs.append((local.group(1) or "", here))
                return
        elif _ABSOLUTE_RE.fullmatch(reference) is not None:
            return
        elif reference.startswith("urn:"):
            if self.allow_urn_uuid and _URN_UUID_RE.fullmatch(reference):
                return
            if self.allow_urn_oid and _URN_OID_RE.fullmatch(reference):
                return
        elif self.allow_conditional:
            conditional = _CONDITIONAL_RE.fullmatch(reference)
            if conditional is not None and conditional.group(1) in all_fhir_type_names():
                return
        allowed = "Type/id, Type/id/_history/version, an absolute http(s) URL or #contained-id"
        if self.allow_urn_uuid:
            allowed += ", urn:uuid:<uuid>"
        if self.allow_conditional:
            allowed += ", a conditional Type?query"
        self.add(
            "invalid",
            f"Invalid reference '{reference}' at {here}: expected {allowed}.",
            here,
        )

    def narrative(self, value: Any, path: str) -> None:
        """Narrative.div: well-formed XHTML with basic formatting only (txt-1, txt-2)."""
        if not isinstance(value, str):
            self.add("value", f"{path} must be a JSON string, not {_show(value)}.", path)
            return
        if "<!DOCTYPE" in value or "<!ENTITY" in value:
            self.add("value", f"{path} must not contain a DOCTYPE or entity declarations.", path)
            return
        try:
            root = etree.fromstring(value.encode("utf-8", "replace"), hardened_parser())
        except etree.XMLSyntaxError as exc:
            self.add("value", f"{path} is not well-formed XHTML: {exc.msg}.", path)
            return
        if root.tag != _XHTML_DIV:
            self.add(
                "value",
                f"{path} must be a div element in the XHTML namespace ({XHTML_NS}).",
                path,
            )
            return
        has_image = False
        for element in root.iter():
            tag = element.tag
            if not isinstance(tag, str):
                continue
            local = tag[len(_XHTML_PREFIX) :] if tag.startswith(_XHTML_PREFIX) else tag
            if local not in _XHTML_ELEMENTS or not tag.startswith(_XHTML_PREFIX):
                self.add(
                    "value", f"Element <{local}> is not allowed in the narrative {path}.", path
                )
                return
            has_image = has_image or local == "img"
            for attribute, attribute_value in element.items():
                name = attribute.lower()
                if name.startswith("on") or (
                    name in ("href", "src")
                    and attribute_value.strip().lower().startswith(("javascript:", "vbscript:"))
                ):
                    self.add(
                        "value",
                        f"Attribute {attribute} of <{local}> is not allowed in the narrative "
                        f"{path}.",
                        path,
                    )
                    return
        if not has_image and not "".join(root.itertext()).strip():
            self.add("value", f"The narrative {path} has no content (txt-2).", path)

    def r4_meta(self, value: Mapping[str, Any], path: str) -> None:
        """Validates an R4 ``value[x]`` of type Meta, which the R4B models do not have."""
        try:
            get_fhir_model_class("Meta").model_validate(value)
        except ValidationError as exc:
            for issue in _model_issues(exc, "Meta", value, root_path=path):
                self.issues.append(issue)


# ---------------------------------------------------------------------------
# Model errors as issues
# ---------------------------------------------------------------------------

_CHOICE_MULTIPLE_RE: Final = re.compile(r"from this list \[([^\]]*)\], but got multiple")
_CHOICE_MISSING_RE: Final = re.compile(r"Expect any of field value from this list \[([^\]]*)\]")
_REGEX_RE: Final = re.compile(r"^(\w+) value string does not match spec regex\.?$")
# Location parts that pydantic adds for unions and validators, never FHIR element names.
_PYDANTIC_PARTS: Final = frozenset(
    {"str", "int", "float", "bool", "bytes", "url", "decimal", "date", "datetime", "time"}
    | {"list", "dict", "root", "resource_type"}
)


def _located(
    root_type: str, data: Mapping[str, Any], loc: tuple[int | str, ...], root_path: str
) -> tuple[str, ElementInfo | None, str | None, Any]:
    """The FHIRPath of a pydantic error location, with the element it ends at, the
    name of an element unknown to R4 where it ends at one, and the value there."""
    parts = [root_path]
    info: TypeInfo | None = type_info(root_type)
    current: Any = data
    spec: ElementInfo | None = None
    pending_resource = False
    for part in loc:
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
            current = (
                current[part]
                if isinstance(current, list) and -len(current) <= part < len(current)
                else None
            )
            if pending_resource:
                info = _resource_info_of(current)
                pending_resource = False
            continue
        if info is None:
            continue
        name = part
        if part.startswith("_"):
            base = info.elements.get(part[1:])
            if base is not None and base.kind is _PRIMITIVE:
                name = part[1:]
        found = info.elements.get(name)
        if found is None:
            if part[:1].islower() and part.isidentifier() and part not in _PYDANTIC_PARTS:
                parts.append(part)
                return ".".join(parts), None, part, None
            continue
        parts.append(name)
        spec = found
        current = current.get(part) if isinstance(current, Mapping) else None
        if name != part:
            info = type_info("Element")
        elif found.kind is _COMPLEX:
            info = type_info(found.type_name)
        elif found.kind is _RESOURCE:
            if found.repeats:
                pending_resource = True
            else:
                info = _resource_info_of(current)
        else:
            info = None
    return ".".join(parts), spec, None, current


def _resource_info_of(value: Any) -> TypeInfo | None:
    if isinstance(value, Mapping):
        name = value.get("resourceType")
        if isinstance(name, str):
            return resource_type_info(name)
    return None


def _choice_name(names: str) -> str:
    listed = [n.strip().strip("'\"") for n in names.split(",") if n.strip()]
    if not listed:
        return "value[x]"
    prefix = listed[0]
    for name in listed[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return f"{prefix}[x]"


def _model_issues(
    exc: ValidationError,
    root_type: str,
    data: Mapping[str, Any],
    *,
    root_path: str | None = None,
) -> list[Issue]:
    issues: list[Issue] = []
    for error in exc.errors(include_url=False):
        issue = _model_issue(error, root_type, data, root_path or root_type)
        if issue is not None:
            issues.append(issue)
    return issues


def _model_issue(
    error: ErrorDetails, root_type: str, data: Mapping[str, Any], root_path: str
) -> Issue | None:
    kind = error["type"]
    expression, spec, unknown, current = _located(root_type, data, error["loc"], root_path)
    if kind == "extra_forbidden":
        if unknown is None:
            return None  # an element of R4 that the R4B model lacks
        message = f"Unknown element '{unknown}' at {expression.rpartition('.')[0]}."
        return Issue("error", "structure", message, (expression,))
    if kind in ("missing", "model_field_validation.missing"):
        return Issue("error", "required", f"Missing required element {expression}.", (expression,))
    text = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        multiple = _CHOICE_MULTIPLE_RE.search(text)
        if multiple is not None:
            present = []
            if isinstance(current, Mapping):
                present = [n.strip().strip("'\"") for n in multiple.group(1).split(",")]
                present = [n for n in present if current.get(n) is not None]
            found = f" (found {', '.join(present)})" if present else ""
            choice = _choice_name(multiple.group(1))
            message = f"Only one of {choice} may be present at {expression}{found}."
            return Issue("error", "invalid", message, (expression,))
        missing = _CHOICE_MISSING_RE.search(text)
        if missing is not None:
            message = f"{expression} requires one of {_choice_name(missing.group(1))}."
            return Issue("error", "required", message, (expression,))
        regex = _REGEX_RE.match(text)
        type_name = spec.type_name if spec is not None else None
        if regex is not None:
            type_name = type_name or regex.group(1).lower()
            message = (
                f"Invalid {type_name} value {_show(error['input'])} at {expression}: "
                f"it does not have the format of a FHIR {type_name}."
            )
            return Issue("error", "value", message, (expression,))
    if kind == "list_type" and text.startswith("None is not allowed"):
        return None  # the walk reports each null item
    if kind == "fhir-validation-wrong-resource-type":
        return Issue("error", "invalid", f"Wrong resourceType at {expression}.", (expression,))
    reason = text.replace("Input should be", "it should be").replace("String should", "it should")
    reason = reason[:1].lower() + reason[1:]
    type_name = spec.type_name if spec is not None else "element"
    message = (
        f"Invalid {type_name} value {_show(error['input'])} at {expression}: {reason.rstrip('.')}."
    )
    code = "invalid" if kind in ("value_error", "assertion_error") and spec is None else "value"
    return Issue("error", code, message, (expression,))
