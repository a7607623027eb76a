"""Kela message bodies on the wire: hardened parsing, XSD validation and building.

XML is parsed with the gateway's hardened lxml parser (no DTD, no entity expansion,
no network; see :func:`gateway.fhir.formats.hardened_parser`) and a document with a
DOCTYPE is refused outright. Bodies are validated with xmlschema against the
project's XSDs in ``schemas/kela/``, loaded in a sandbox so that a schema can only
include files beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import xmlschema
from lxml import etree

from adapters.kela.errors import ErrorCode, KelaMessageError, MappingError
from gateway.fhir.formats import hardened_parser

_DTD_MESSAGE = "DTDs and entity declarations are not allowed in Kela messages"


def parse_message(data: bytes) -> Any:
    """Parses a Kela message body (or any XML document) into an lxml element."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise KelaMessageError(ErrorCode.DTD_REFUSED, _DTD_MESSAGE)
    try:
        root = etree.fromstring(data, hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise KelaMessageError(
            ErrorCode.NOT_XML, f"The message is not well-formed XML: {exc.msg}"
        ) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise KelaMessageError(ErrorCode.DTD_REFUSED, _DTD_MESSAGE)
    return root


@cache
def message_schema(file_name: str) -> xmlschema.XMLSchema:
    """The XSD ``schemas/kela/<file_name>``, loaded once."""
    path = resources.files("schemas").joinpath("kela").joinpath(file_name)
    if not path.is_file():
        raise MappingError(f"there is no schema schemas/kela/{file_name}")
    return xmlschema.XMLSchema(str(path), allow="sandbox")


def first_schema_error(schema: xmlschema.XMLSchema, element: Any) -> str | None:
    """The first XSD error of ``element`` as "element <path>: <reason>", or None."""
    resource = xmlschema.XMLResource(element, allow="none")
    namespace = etree.QName(element).namespace
    for error in schema.iter_errors(resource):
        where = _readable_path(error.path) or etree.QName(element).localname
        reason = (error.reason or str(error)).rstrip(".")
        if namespace:
            reason = reason.replace(f"{{{namespace}}}", "")
        return f"element {where}: {reason}"
    return None


def _readable_path(path: str | None) -> str:
    """``/cn:ConcernNotification/cn:Client/cn:Hetu`` → ``ConcernNotification/Client/Hetu``."""
    if not path:
        return ""
    steps = [step.split(":", 1)[-1] for step in path.strip("/").split("/")]
    return "/".join(steps)


def local_name(element: Any) -> str:
    return str(etree.QName(element).localname)


def namespace_of(element: Any) -> str | None:
    namespace = etree.QName(element).namespace
    return None if namespace is None else str(namespace)


def build_element(namespace: str, name: str, content: Mapping[str, Any]) -> Any:
    """An element ``{namespace}name`` from nested content: each key is a child element
    (in order), a list repeats it, a mapping nests, anything else becomes text."""
    root = etree.Element(f"{{{namespace}}}{name}", nsmap={None: namespace})
    _fill(root, namespace, content)
    return root


def _fill(parent: Any, namespace: str, content: Mapping[str, Any]) -> None:
    for key, value in content.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            child = etree.SubElement(parent, f"{{{namespace}}}{key}")
            if isinstance(item, Mapping):
                _fill(child, namespace, item)
            else:
                child.text = xml_text(item)


def xml_text(value: Any) -> str:
    """The XSD lexical form of a value (booleans as true/false, decimals as written)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def serialize(element: Any, *, pretty: bool = True) -> bytes:
    data: bytes = etree.tostring(
        element, encoding="UTF-8", xml_declaration=True, pretty_print=pretty
    )
    return data
