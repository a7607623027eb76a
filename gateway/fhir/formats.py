"""FHIR R4 wire formats: JSON and XML in both directions, and content negotiation.

Implements R4 http.html §3.1.0.1.10 (content types, ``_format``, UTF-8), json.html
(JSON representation) and xml.html (XML representation). Bodies are exchanged as
plain ``dict`` values in the FHIR JSON shape; XML is converted to and from that
shape element by element, so the lexical values (instants such as
``2024-01-15T10:00:00.000Z``, element ids, primitive extensions) survive a round
trip unchanged. The structure (element names, order, cardinality, types) comes
from the ``fhir.resources`` R4B model classes, read once per type into
:class:`TypeInfo`; no model instance is built while converting.

Why not ``model_validate_xml`` / ``model_dump_xml`` of the R4B models: measured at
about 3 ms per parse and 8 ms per render of a Patient, they rewrite instants
(``Z`` becomes ``+00:00``, ``.000`` is dropped), emit ``Element.id`` as a child
element instead of an attribute, keep whitespace after ``div`` and fail with a
``KeyError`` on unknown elements or prefixed namespaces.

R4 (4.0.1) against the R4B (4.3.0) models, for the stored types, Bundle,
CapabilityStatement, OperationOutcome and every data type they use, compared
element by element (names, order, types, cardinality):

* Patient, Organization, Practitioner, PractitionerRole, Endpoint, CareTeam,
  ServiceRequest, Consent, CarePlan, Goal, Task, Communication,
  DocumentReference, Provenance, AuditEvent, Subscription, MeasureReport,
  Bundle, CapabilityStatement, OperationOutcome and their backbone elements:
  no structural difference.
* ``Extension.value[x]``: R4 allows ``valueMeta``, which R4B dropped; R4B added
  ``valueCodeableReference`` and ``valueRatioRange``, which are not R4. The
  same change hits ``ElementDefinition.defaultValue[x]/fixed[x]/pattern[x]`` and
  ``ElementDefinition.example.value[x]``. :func:`type_info` applies the R4 list,
  so XML in either direction and validation follow R4.
* Resource types: R4B added SubscriptionTopic, SubscriptionStatus, Citation,
  Evidence*, NutritionProduct, *ProductDefinition, Ingredient,
  RegulatedAuthorization, ClinicalUseDefinition, ... (not R4, refused here);
  R4 types that R4B removed (EffectEvidenceSynthesis, RiskEvidenceSynthesis,
  MedicinalProduct*, SubstanceSpecification) have no model, so they cannot be
  converted to or from XML (400 on input, generic rendering on output).
* Required value sets changed version (e.g. ``CapabilityStatement.fhirVersion``
  now also lists 4.3.0, resource-type codes include the R4B types); the models
  do not check codes against value sets, so this does not show.
"""

from __future__ import annotations

import copy
import enum
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.utils import (
    determine_version_prefix_from_class,
    get_fhir_type_name,
    is_list_type,
    is_primitive_type,
)
from lxml import etree

from gateway.errors import BadRequest, Issue, NotAcceptable, UnsupportedMediaType
from gateway.fhir.resource_types import all_fhir_type_names

FHIR_NS: Final = "http://hl7.org/fhir"
XHTML_NS: Final = "http://www.w3.org/1999/xhtml"

_F: Final = "{" + FHIR_NS + "}"
_F_LEN: Final = len(_F)
_XHTML_DIV: Final = "{" + XHTML_NS + "}div"
_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class WireFormat(enum.Enum):
    """The two FHIR wire formats this server speaks (R4 formats.html)."""

    JSON = "application/fhir+json"
    XML = "application/fhir+xml"

    @property
    def media_type(self) -> str:
        return self.value


# ---------------------------------------------------------------------------
# Structure of the types, read from the R4B models with the R4 differences
# ---------------------------------------------------------------------------


class ElementKind(enum.Enum):
    PRIMITIVE = "primitive"
    COMPLEX = "complex"
    RESOURCE = "resource"
    XHTML = "xhtml"


class JsonType(enum.Enum):
    """How a primitive is written in JSON (R4 json.html §2.6.2)."""

    STRING = "string"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    DECIMAL = "decimal"


_PRIMITIVE: Final = ElementKind.PRIMITIVE
_COMPLEX: Final = ElementKind.COMPLEX
_RESOURCE: Final = ElementKind.RESOURCE
_XHTML: Final = ElementKind.XHTML
_STRING: Final = JsonType.STRING

_JSON_TYPES: Final[Mapping[str, JsonType]] = {
    "boolean": JsonType.BOOLEAN,
    "integer": JsonType.INTEGER,
    "unsignedInt": JsonType.INTEGER,
    "positiveInt": JsonType.INTEGER,
    "decimal": JsonType.DECIMAL,
}


@dataclass(frozen=True, slots=True)
class ElementInfo:
    """One element of a type: its name, FHIR type and cardinality."""

    name: str
    type_name: str
    kind: ElementKind
    repeats: bool
    json_type: JsonType = JsonType.STRING


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """The elements of a resource or data type, in the order of the specification,
    with what the model requires: elements of minimum cardinality 1 and the choice
    groups ``[x]`` (R4 formats.html §2.4.1), each with whether one of it is required."""

    name: str
    is_resource: bool
    elements: Mapping[str, ElementInfo]
    order: Mapping[str, int]
    xml_attributes: tuple[str, ...]
    required: tuple[str, ...] = ()
    choice_groups: Mapping[str, str] = field(default_factory=dict)
    required_choices: tuple[str, ...] = ()


# value[x] lists that differ between R4 and R4B: R4 has <prefix>Meta, R4B has
# <prefix>CodeableReference and <prefix>RatioRange instead.
_R4_CHOICE_PREFIXES: Final[Mapping[str, tuple[str, ...]]] = {
    "Extension": ("value",),
    "ElementDefinition": ("defaultValue", "fixed", "pattern"),
    "ElementDefinitionExample": ("value",),
}


def _r4_elements(name: str, elements: list[ElementInfo]) -> list[ElementInfo]:
    for prefix in _R4_CHOICE_PREFIXES.get(name, ()):
        dropped = {f"{prefix}CodeableReference", f"{prefix}RatioRange"}
        elements = [e for e in elements if e.name not in dropped]
        last = max(i for i, e in enumerate(elements) if e.name.startswith(prefix))
        meta = ElementInfo(f"{prefix}Meta", "Meta", ElementKind.COMPLEX, False)
        elements.insert(last + 1, meta)
    return elements


@cache
def type_info(name: str) -> TypeInfo:
    """Structure of the R4 resource or data type ``name`` (e.g. ``Patient``, ``HumanName``,
    ``PatientContact``); raises ``KeyError`` for a name the models do not know."""
    try:
        cls = get_fhir_model_class(name)
    except ValueError as exc:
        raise KeyError(name) from exc
    prefix = determine_version_prefix_from_class(cls)
    fields = {field.alias or key: field for key, field in cls.model_fields.items()}
    elements: list[ElementInfo] = []
    for element in cls.elements_sequence():
        field = fields[element]
        type_name = get_fhir_type_name(field, prefix=prefix)
        if type_name == "xhtml":
            kind = _XHTML
        elif is_primitive_type(field):
            kind = _PRIMITIVE
        elif type_name == "Resource":
            kind = _RESOURCE
        else:
            kind = _COMPLEX
        json_type = _JSON_TYPES.get(type_name, _STRING)
        elements.append(ElementInfo(element, type_name, kind, is_list_type(field), json_type))
    elements = _r4_elements(name, elements)
    is_resource = cls.has_resource_base()
    if is_resource:
        attributes: tuple[str, ...] = ()
    elif name == "Extension":
        attributes = ("id", "url")
    else:
        attributes = ("id",)
    required, choice_groups, required_choices = _model_constraints(cls)
    return TypeInfo(
        name=name,
        is_resource=is_resource,
        elements={e.name: e for e in elements},
        order={e.name: i for i, e in enumerate(elements)},
        xml_attributes=attributes,
        required=required,
        choice_groups=choice_groups,
        required_choices=required_choices,
    )


def _model_constraints(cls: Any) -> tuple[tuple[str, ...], dict[str, str], tuple[str, ...]]:
    """From the fields of a model class: its required elements, the choice group of each
    ``[x]`` element and the groups of which one element is required."""
    required: list[str] = []
    choice_groups: dict[str, str] = {}
    required_choices: list[str] = []
    for key, model_field in cls.model_fields.items():
        name = model_field.alias or key
        extra = model_field.json_schema_extra
        if not isinstance(extra, dict):
            extra = {}
        if model_field.is_required() or extra.get("element_required"):
            required.append(name)
        group = extra.get("one_of_many")
        if isinstance(group, str):
            choice_groups[name] = group
            if extra.get("one_of_many_required") and group not in required_choices:
                required_choices.append(group)
    return tuple(required), choice_groups, tuple(required_choices)


def load_type_infos(names: Iterable[str]) -> set[str]:
    """Works out the structure of ``names`` and of every data type reachable from them,
    so that no request imports a model on first use; returns the names of them all."""
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        elements = type_info(name).elements.values()
        pending.extend(e.type_name for e in elements if e.kind is _COMPLEX)
    return seen


@cache
def resource_type_info(name: str) -> TypeInfo | None:
    """Structure of the R4 resource type ``name``, or None if it is not an R4 resource
    type that the R4B models describe."""
    if name not in all_fhir_type_names():
        return None
    try:
        info = type_info(name)
    except KeyError:
        return None
    return info if info.is_resource else None


# ---------------------------------------------------------------------------
# Content negotiation (R4 http.html §3.1.0.1.10)
# ---------------------------------------------------------------------------

_FORMAT_PARAM: Final[Mapping[str, WireFormat]] = {
    "json": WireFormat.JSON,
    "application/json": WireFormat.JSON,
    "application/fhir+json": WireFormat.JSON,
    "application/json+fhir": WireFormat.JSON,
    "xml": WireFormat.XML,
    "text/xml": WireFormat.XML,
    "application/xml": WireFormat.XML,
    "application/fhir+xml": WireFormat.XML,
    "application/xml+fhir": WireFormat.XML,
}

# Media ranges of an Accept header and what they get. Browsers ask for HTML first;
# they get JSON, as there is no HTML rendering.
_ACCEPT_EXACT: Final[Mapping[str, WireFormat]] = {
    "application/fhir+json": WireFormat.JSON,
    "application/json": WireFormat.JSON,
    "application/json+fhir": WireFormat.JSON,
    "text/json": WireFormat.JSON,
    "application/fhir+xml": WireFormat.XML,
    "application/xml": WireFormat.XML,
    "text/xml": WireFormat.XML,
    "application/xml+fhir": WireFormat.XML,
}
_ACCEPT_FALLBACK: Final = frozenset(
    {"*/*", "application/*", "text/*", "text/html", "application/xhtml+xml"}
)
_FHIR_VERSIONS: Final = frozenset({"4.0", "4.0.1"})


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    """Splits ``type/subtype; a=b`` into the lower-cased type and its parameters."""
    head, *params = value.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        key, _, val = param.partition("=")
        parsed[key.strip().lower()] = val.strip().strip('"')
    # A '+' in a query string arrives as a space (application/fhir json).
    return head.strip().lower().replace(" ", "+"), parsed


# Accept headers that need no parsing: the common answers are JSON.
_PLAIN_JSON_ACCEPT: Final = frozenset({"*/*", "application/fhir+json", "application/json"})


def negotiate_response_format(accept: str | None, format_param: str | None) -> WireFormat:
    """The format of the response: ``_format`` wins over ``Accept``; no preference, or
    only wildcards or HTML, gives JSON (R4 http.html §3.1.0.1.10)."""
    if format_param is not None and format_param.strip():
        media, params = _media_type(format_param)
        fmt = _FORMAT_PARAM.get(media)
        if fmt is None or params.get("fhirversion", "4.0") not in _FHIR_VERSIONS:
            raise NotAcceptable(
                f"_format={format_param!r} is not supported: use json or xml "
                "(application/fhir+json, application/fhir+xml)"
            )
        return fmt
    if accept is None or accept in _PLAIN_JSON_ACCEPT or not accept.strip():
        return WireFormat.JSON
    best: tuple[float, int, int] | None = None
    chosen = WireFormat.JSON
    excluded: set[WireFormat] = set()
    for position, item in enumerate(accept.split(",")):
        if not item.strip():
            continue
        media, params = _media_type(item)
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        if params.get("fhirversion", "4.0") not in _FHIR_VERSIONS:
            continue
        exact = _ACCEPT_EXACT.get(media)
        if exact is not None:
            if quality <= 0:
                excluded.add(exact)
                continue
            rank = (quality, 1, -position)
            fmt = exact
        elif media in _ACCEPT_FALLBACK and quality > 0:
            rank = (quality, 0, -position)
            fmt = WireFormat.JSON
        else:
            continue
        if best is None or rank > best:
            best, chosen = rank, fmt
    if best is None:
        raise NotAcceptable(
            f"None of the media types in Accept: {accept} can be produced; "
            "supported are application/fhir+json and application/fhir+xml"
        )
    if chosen in excluded:
        others = [f for f in WireFormat if f not in excluded]
        if not others:
            raise NotAcceptable(f"Accept: {accept} excludes every supported format")
        chosen = others[0]
    return chosen


# ---------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------

_JSON_BODY_TYPES: Final = frozenset(
    {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
)
_XML_BODY_TYPES: Final = frozenset(
    {"application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir"}
)
_UTF8: Final = frozenset({"utf-8", "utf8"})


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Parses a resource body in JSON (also when no Content-Type is given) or XML into
    the FHIR JSON shape (R4 http.html §3.1.0.1.10, json.html, xml.html).

    Raises BadRequest for syntax errors (with the location where known) and
    UnsupportedMediaType for other content types or charsets. Whether the content
    is a valid resource is :func:`gateway.fhir.validation.validate_resource`'s job.
    """
    media, params = _media_type(content_type or "application/fhir+json")
    if not media:
        media = "application/fhir+json"
    charset = params.get("charset", "utf-8").lower()
    if charset not in _UTF8:
        raise UnsupportedMediaType(f"Charset {charset} is not supported: FHIR bodies are UTF-8")
    if media in _JSON_BODY_TYPES:
        return _parse_json(body)
    if media in _XML_BODY_TYPES:
        return parse_xml(body)
    raise UnsupportedMediaType(
        f"Content-Type {media} is not supported: use application/fhir+json or application/fhir+xml"
    )


def _parse_json(body: bytes) -> dict[str, Any]:
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"The body must be a JSON object (a resource), not {_json_kind(data)}")
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise BadRequest(
            "The body is not a FHIR resource: it has no resourceType string",
            expression=("resourceType",),
        )
    return data


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else "an object"


# ---------------------------------------------------------------------------
# XML to the JSON shape (R4 xml.html)
# ---------------------------------------------------------------------------

_parsers = threading.local()


def new_hardened_parser(recover: bool = False) -> Any:
    """A new hardened lxml parser: no DTD, no entity expansion, no network, no huge
    trees, comments and processing instructions dropped."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
        recover=recover,
        encoding="utf-8",
    )


def hardened_parser(recover: bool = False) -> Any:
    """The hardened lxml parser of this thread (lxml parsers must not be shared
    between threads); see :func:`new_hardened_parser`."""
    key = "recovering" if recover else "strict"
    parser = getattr(_parsers, key, None)
    if parser is None:
        parser = new_hardened_parser(recover)
        setattr(_parsers, key, parser)
    return parser


_DTD_MESSAGE: Final = "DTDs and entities are not allowed in FHIR XML"
_INTEGER_RE: Final = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_DECIMAL_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_EXTENSION_TAG: Final = _F + "extension"
_VALUE_ONLY: Final = ["value"]


def _structure_error(message: str, path: str) -> BadRequest:
    return BadRequest(message, issues=[Issue("error", "structure", message, (path,))])


def parse_xml(body: bytes) -> dict[str, Any]:
    """Converts a FHIR XML resource into the FHIR JSON shape (R4 xml.html). Documents
    with a DOCTYPE or entity declarations are refused, never expanded."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise BadRequest(_DTD_MESSAGE)
    try:
        root = etree.fromstring(body, hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"The body is not well-formed XML: {exc.msg}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise BadRequest(_DTD_MESSAGE)
    qname = etree.QName(root)
    if qname.namespace != FHIR_NS:
        found = qname.namespace or "no namespace"
        raise BadRequest(f"The root element must be in the FHIR namespace {FHIR_NS}, not {found}")
    return _xml_resource(root, qname.localname, qname.localname)


def _xml_resource(element: Any, name: str, path: str) -> dict[str, Any]:
    info = resource_type_info(name)
    if info is None:
        if name in all_fhir_type_names():
            message = f"Resource type {name} is not supported in XML by this server"
        else:
            message = f"'{name}' is not a FHIR R4 resource type"
        raise BadRequest(message, expression=(path,))
    out: dict[str, Any] = {"resourceType": name}
    _xml_into(element, info, out, path)
    return out


def _item_path(path: str, name: str, index: int | None) -> str:
    return f"{path}.{name}" if index is None else f"{path}.{name}[{index}]"


def _xml_check_text(text: str | None, path: str) -> None:
    if text and not text.isspace():
        message = f"Text content is not allowed in {path}: {text.strip()[:40]!r}"
        raise _structure_error(message, path)


def _xml_into(element: Any, info: TypeInfo, out: dict[str, Any], path: str) -> None:
    """Adds the attributes and child elements of ``element`` to ``out``."""
    attributes = element.keys()
    for attribute in attributes:
        if attribute in info.xml_attributes:
            out[attribute] = element.get(attribute)
        elif not attribute.startswith("{"):
            raise _structure_error(f"Unknown attribute '{attribute}' on {path}", path)
    _xml_check_text(element.text, path)
    if not len(element):
        return
    elements = info.elements
    repeating: dict[str, tuple[list[Any], list[Any]]] | None = None
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        tail = child.tail
        if tail and not tail.isspace():
            _xml_check_text(tail, path)
        if tag.startswith(_F):
            name = tag[_F_LEN:]
        elif tag == _XHTML_DIV:
            name = "div"
        else:
            raise _structure_error(f"Element {tag} in {path} is not in the FHIR namespace", path)
        spec = elements.get(name)
        if spec is None or name in info.xml_attributes:
            raise _structure_error(f"Unknown element '{name}' in {path}", f"{path}.{name}")
        kind = spec.kind
        if kind is _PRIMITIVE:
            if spec.repeats:
                if repeating is None:
                    repeating = {}
                values, extras = repeating.setdefault(name, ([], []))
                value, extra = _xml_primitive(child, spec, path, len(values))
                values.append(value)
                extras.append(extra)
            else:
                value, extra = _xml_primitive(child, spec, path, None)
                if name in out:
                    raise _structure_error(
                        f"Element '{name}' appears more than once in {path}", path
                    )
                if value is not None:
                    out[name] = value
                if extra is not None:
                    out["_" + name] = extra
            continue
        if kind is _XHTML or tag == _XHTML_DIV:
            if kind is not _XHTML or tag != _XHTML_DIV:
                message = f"{path}.div must be an XHTML div element ({XHTML_NS})"
                raise _structure_error(message, f"{path}.div")
            if name in out:
                raise _structure_error(f"Element 'div' appears more than once in {path}", path)
            out[name] = _xhtml_to_string(child)
            continue
        items: list[Any] | None = None
        if spec.repeats:
            items = out.setdefault(name, [])
            item_path = f"{path}.{name}[{len(items)}]"
        elif name in out:
            raise _structure_error(f"Element '{name}' appears more than once in {path}", path)
        else:
            item_path = f"{path}.{name}"
        if kind is _RESOURCE:
            item: dict[str, Any] = _xml_contained(child, item_path)
        else:
            item = {}
            _xml_into(child, type_info(spec.type_name), item, item_path)
            if not item:
                raise _structure_error(f"Element {item_path} is empty", item_path)
        if items is None:
            out[name] = item
        else:
            items.append(item)
    if repeating:
        for name, (values, extras) in repeating.items():
            if any(v is not None for v in values):
                out[name] = values
            if any(e is not None for e in extras):
                out["_" + name] = extras


def _xml_contained(element: Any, path: str) -> dict[str, Any]:
    """A resource inside ``contained``, ``Bundle.entry.resource`` or similar."""
    attributes = element.keys()
    for attribute in attributes:
        if not attribute.startswith("{"):
            raise _structure_error(f"Unknown attribute '{attribute}' on {path}", path)
    _xml_check_text(element.text, path)
    children = [c for c in element if isinstance(c.tag, str)]
    if len(children) != 1 or not children[0].tag.startswith(_F):
        raise _structure_error(f"{path} must hold exactly one FHIR resource element", path)
    _xml_check_text(children[0].tail, path)
    return _xml_resource(children[0], children[0].tag[_F_LEN:], path)


def _xml_primitive(
    element: Any, spec: ElementInfo, path: str, index: int | None
) -> tuple[Any, Any]:
    """The JSON value and the ``_name`` object (id, extensions) of a primitive element."""
    raw = element.get("value")
    keys = element.keys()
    if keys == _VALUE_ONLY and not len(element) and element.text is None:
        if spec.json_type is _STRING:
            return raw, None
        return _json_value(raw, spec, path, index), None
    here = _item_path(path, spec.name, index)
    for attribute in keys:
        if attribute != "value" and attribute != "id" and not attribute.startswith("{"):
            raise _structure_error(f"Unknown attribute '{attribute}' on {here}", here)
    _xml_check_text(element.text, here)
    value = None if raw is None else _json_value(raw, spec, path, index)
    extensions: list[dict[str, Any]] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        _xml_check_text(child.tail, here)
        if child.tag != _EXTENSION_TAG:
            name = etree.QName(child).localname
            raise _structure_error(f"Unknown element '{name}' in {here}", f"{here}.{name}")
        extension: dict[str, Any] = {}
        ext_path = f"{here}.extension[{len(extensions)}]"
        _xml_into(child, type_info("Extension"), extension, ext_path)
        extensions.append(extension)
    element_id = element.get("id")
    extra: dict[str, Any] | None = None
    if element_id is not None or extensions:
        extra = {}
        if element_id is not None:
            extra["id"] = element_id
        if extensions:
            extra["extension"] = extensions
    if value is None and extra is None:
        raise _structure_error(f"{here} has neither a value nor extensions", here)
    return value, extra


def _json_value(raw: str, spec: ElementInfo, path: str, index: int | None) -> Any:
    json_type = spec.json_type
    if json_type is _STRING:
        return raw
    if json_type is JsonType.BOOLEAN:
        if raw == "true":
            return True
        if raw == "false":
            return False
    elif json_type is JsonType.INTEGER:
        if _INTEGER_RE.fullmatch(raw):
            return int(raw)
    elif _DECIMAL_RE.fullmatch(raw):
        if "." in raw or "e" in raw or "E" in raw:
            return float(raw)
        return int(raw)
    here = _item_path(path, spec.name, index)
    message = f"Invalid {spec.type_name} value {raw!r} at {here}"
    raise BadRequest(message, issues=[Issue("error", "value", message, (here,))])


def _xhtml_to_string(element: Any) -> str:
    if len(element.nsmap) > 1:
        element = copy.deepcopy(element)
        etree.cleanup_namespaces(element)
    text: str = etree.tostring(element, encoding="unicode", with_tail=False)
    return text


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def render(resource: dict[str, Any], fmt: WireFormat, *, pretty: bool = False) -> bytes:
    """Serialises a resource in the FHIR JSON shape as JSON or XML (R4 json.html,
    xml.html). Elements the R4 structure does not know are still written (after
    the known ones) rather than lost or refused."""
    if fmt is WireFormat.JSON:
        return orjson.dumps(resource, option=orjson.OPT_INDENT_2 if pretty else 0)
    return render_xml(resource, pretty=pretty)


def render_xml(resource: dict[str, Any], *, pretty: bool = False) -> bytes:
    """FHIR XML of a resource in the FHIR JSON shape (R4 xml.html)."""
    writer = _XmlWriter(pretty)
    writer.resource(resource, 0, root=True)
    return "".join(writer.out).encode("utf-8", "replace")


_ILLEGAL_RE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPE_RE: Final = re.compile('[&<>"\n\r\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_ESCAPES: Final[Mapping[str, str]] = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "\n": "&#10;",
    "\r": "&#13;",
    "\t": "&#9;",
}


def _escape_char(match: re.Match[str]) -> str:
    return _ESCAPES.get(match.group(), "\ufffd")


def _attribute(value: Any) -> str:
    """The lexical form of a JSON primitive, escaped for an XML attribute value."""
    if isinstance(value, str):
        text = value
    elif value is True:
        return "true"
    elif value is False:
        return "false"
    elif isinstance(value, int):
        return str(value)
    elif isinstance(value, float):
        return orjson.dumps(value).decode()
    else:
        text = orjson.dumps(value, default=str).decode()
    if _ESCAPE_RE.search(text) is None:
        return text
    return _ESCAPE_RE.sub(_escape_char, text)


class _XmlWriter:
    """Writes FHIR XML as text, in the element order of the R4 structure."""

    __slots__ = ("indents", "out")

    def __init__(self, pretty: bool) -> None:
        self.out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n']
        self.indents = _PRETTY_INDENTS if pretty else _FLAT_INDENTS

    def indent(self, level: int) -> str:
        indents = self.indents
        if level < len(indents):
            return indents[level]
        return indents[-1] + "  " * (level - len(indents) + 1) if indents[-1] else ""

    def resource(self, resource: Mapping[str, Any], level: int, root: bool = False) -> None:
        name = resource.get("resourceType")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"cannot render a resource without a valid resourceType: {name!r}")
        out = self.out
        start = len(out)
        head = f'<{name} xmlns="{FHIR_NS}"' if root else f"{self.indent(level)}<{name}"
        out.append(head)
        info = resource_type_info(name)
        if info is None:
            for key, value in resource.items():
                if key != "resourceType":
                    self.untyped(key, value, level + 1)
        else:
            self.children(info, resource, level + 1)
        self.close(name, head, start, level)

    def close(self, name: str, head: str, start: int, level: int) -> None:
        """Ends the element whose start tag ``head`` is at ``out[start]``."""
        out = self.out
        if len(out) == start + 1:
            out[start] = head + "/>"
        else:
            out[start] = head + ">"
            out.append(f"{self.indent(level)}</{name}>")

    def complex(self, name: str, info: TypeInfo, data: Mapping[str, Any], level: int) -> None:
        out = self.out
        start = len(out)
        head = f"{self.indent(level)}<{name}"
        for attribute in info.xml_attributes:
            value = data.get(attribute)
            if value is not None:
                head += f' {attribute}="{_attribute(value)}"'
        out.append(head)
        self.children(info, data, level + 1)
        self.close(name, head, start, level)

    def children(self, info: TypeInfo, data: Mapping[str, Any], level: int) -> None:
        """Writes the child elements of ``data``: the known ones in R4 order, then the rest."""
        out = self.out
        order = info.order
        attributes = info.xml_attributes
        known: list[tuple[int, str]] = []
        unknown: list[str] = []
        for key in data:
            if key[:1] == "_":
                base = key[1:]
                index = order.get(base)
                if index is None:
                    unknown.append(key)
                elif base not in data:
                    known.append((index, base))
                continue
            index = order.get(key)
            if index is None:
                if key != "resourceType" or not info.is_resource:
                    unknown.append(key)
            elif key not in attributes:
                known.append((index, key))
        known.sort()
        elements = info.elements
        indent = self.indent(level)
        for _, name in known:
            spec = elements[name]
            value = data.get(name)
            kind = spec.kind
            if kind is _PRIMITIVE:
                extra = data.get("_" + name)
                if isinstance(value, list) or isinstance(extra, list):
                    values = value if isinstance(value, list) else []
                    extras = extra if isinstance(extra, list) else []
                    for i in range(max(len(values), len(extras))):
                        self.primitive(
                            name,
                            values[i] if i < len(values) else None,
                            extras[i] if i < len(extras) else None,
                            level,
                        )
                elif extra is None and value is not None:
                    out.append(f'{indent}<{name} value="{_attribute(value)}"/>')
                else:
                    self.primitive(name, value, extra, level)
                continue
            for item in value if isinstance(value, list) else (value,):
                if kind is _XHTML:
                    out.append(indent + _xhtml(item))
                elif not isinstance(item, dict):
                    self.untyped(name, item, level)
                elif kind is _RESOURCE:
                    start = len(out)
                    head = f"{indent}<{name}"
                    out.append(head)
                    self.resource(item, level + 1)
                    self.close(name, head, start, level)
                else:
                    self.complex(name, type_info(spec.type_name), item, level)
        for key in unknown:
            if key != "fhir_comments":
                self.untyped(key, data[key], level)

    def primitive(self, name: str, value: Any, extra: Any, level: int) -> None:
        if not isinstance(extra, dict):
            extra = None
        if value is None and extra is None:
            return
        indent = self.indent(level)
        head = f"{indent}<{name}"
        if extra is not None and extra.get("id") is not None:
            head += f' id="{_attribute(extra["id"])}"'
        if value is not None:
            head += f' value="{_attribute(value)}"'
        extensions = extra.get("extension") if extra is not None else None
        if not isinstance(extensions, list) or not extensions:
            self.out.append(head + "/>")
            return
        self.out.append(head + ">")
        extension_info = type_info("Extension")
        for extension in extensions:
            if isinstance(extension, dict):
                self.complex("extension", extension_info, extension, level + 1)
        self.out.append(f"{indent}</{name}>")

    def untyped(self, name: str, value: Any, level: int) -> None:
        """Best-effort XML for content outside the known R4 structure."""
        if not name.isidentifier() or name.startswith("_"):
            return
        out = self.out
        if isinstance(value, list):
            for item in value:
                self.untyped(name, item, level)
        elif isinstance(value, dict):
            start = len(out)
            head = f"{self.indent(level)}<{name}"
            out.append(head)
            if isinstance(value.get("resourceType"), str):
                self.resource(value, level + 1)
            else:
                for key, item in value.items():
                    self.untyped(key, item, level + 1)
            self.close(name, head, start, level)
        elif value is not None:
            out.append(f'{self.indent(level)}<{name} value="{_attribute(value)}"/>')


_PRETTY_INDENTS: Final = tuple("\n" + "  " * level for level in range(24))
_FLAT_INDENTS: Final = ("",)


def _xhtml(value: Any) -> str:
    """The ``div`` of a Narrative as XHTML text; malformed content is recovered or,
    failing that, kept as text."""
    text = value if isinstance(value, str) else str(value)
    source = text.encode("utf-8", "replace")
    root = None
    if b"<!DOCTYPE" not in source and b"<!ENTITY" not in source:
        for recover in (False, True):
            try:
                root = etree.fromstring(source, hardened_parser(recover))
            except etree.XMLSyntaxError:
                continue
            if root is not None:
                break
    if root is None or root.tag != _XHTML_DIV:
        div = etree.Element(_XHTML_DIV, nsmap={None: XHTML_NS})
        if root is None:
            div.text = _ILLEGAL_RE.sub("\ufffd", text)
        elif root.tag == "div":
            _qualify(root, div)
        else:
            tag = root.tag if root.tag.startswith("{") else "{" + XHTML_NS + "}" + root.tag
            _qualify(root, etree.SubElement(div, tag))
        root = div
    serialized: str = etree.tostring(root, encoding="unicode", with_tail=False)
    return serialized


def _qualify(source: Any, target: Any) -> None:
    """Copies ``source`` into ``target``, putting elements without a namespace into XHTML."""
    for key, val in source.attrib.items():
        target.set(key, val)
    target.text = source.text
    for child in source:
        if not isinstance(child.tag, str):
            continue
        tag = child.tag if child.tag.startswith("{") else "{" + XHTML_NS + "}" + child.tag
        new = etree.SubElement(target, tag)
        _qualify(child, new)
        new.tail = child.tail
