"""Kela message bodies on the wire: hardened parsing, XSD validation and building.

XML is parsed with the gateway's hardened lxml parser (no DTD, no entity expansion,
no network; see :func:`gateway.fhir.formats.hardened_parser`) and a document with a
DOCTYPE is refused outright.

Bodies are validated against the project's XSDs in ``schemas/kela/`` by two
implementations of W3C XML Schema 1.0 (Part 1: Structures, §5.2 assessing
schema-validity; Part 2: Datatypes, the facets and the regular expressions of
Appendix F): libxml2 (``lxml.etree.XMLSchema``, in C) decides, so that a valid body
costs little; only when libxml2 refuses a body does xmlschema (pure Python) run, for
its diagnostic that names the element by path. Should xmlschema find no error where
libxml2 did, libxml2's own first error is reported, so the body is still refused
(xmlschema 4.3 lets through ``xs:integer`` values with non-ASCII digits or ``_`` and
``xs:decimal`` values with inner spaces, which Part 2 §3.3.13.1 and §3.2.3.1 forbid).

Both load the XSDs in a sandbox: ``xs:include`` / ``xs:import`` (Part 1 §4.2.1,
§4.2.3) may only reach files inside ``schemas/kela/``, never a URL.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import xmlschema
from lxml import etree

from adapters.kela.errors import ErrorCode, KelaMessageError, MappingError
from gateway.fhir.formats import hardened_parser, new_hardened_parser

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
def schema_dir() -> Path:
    """``schemas/kela/``, the sandbox of the Kela XSDs."""
    return Path(str(resources.files("schemas").joinpath("kela"))).resolve()


@cache
def message_schema(file_name: str) -> xmlschema.XMLSchema:
    """The XSD ``schemas/kela/<file_name>``, loaded once."""
    path = resources.files("schemas").joinpath("kela").joinpath(file_name)
    if not path.is_file():
        raise MappingError(f"there is no schema schemas/kela/{file_name}")
    return xmlschema.XMLSchema(str(path), allow="sandbox")


class SandboxResolver(etree.Resolver):  # type: ignore[misc]  # lxml has no type stubs
    """Lets a schema read only files inside ``sandbox``: no URL, no DTD or entity."""

    def __init__(self, sandbox: Path) -> None:
        super().__init__()
        self.sandbox = sandbox.resolve()
        self.refused: list[str] = []

    def read(self, location: str | None) -> tuple[Path, bytes]:
        """The path and bytes of ``location`` (a path or file: URL), or MappingError."""
        parts = urlsplit(location or "")
        path = Path(unquote(parts.path)).resolve()
        if (
            parts.scheme not in ("", "file")
            or parts.netloc
            or not parts.path
            or not path.is_relative_to(self.sandbox)
            or not path.is_file()
        ):
            raise MappingError(f"schema location {location!r} is not a file in {self.sandbox}")
        data = path.read_bytes()
        # libxml2 parses included schemas with entity substitution on, so refuse DTDs.
        if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            raise MappingError(f"schema {path.name}: DTDs and entities are not allowed")
        return path, data

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        try:
            path, data = self.read(system_url)
        except MappingError as exc:
            # libxml2 only reports that the resource failed to load; keep the reason.
            self.refused.append(str(exc))
            raise
        return self.resolve_string(data, context, base_url=path.as_uri())


_SCHEMA_COMPILER = threading.Lock()
"""Held while libxml2 compiles a schema: on the first one a process compiles it builds its
table of the built-in XSD types (``xmlSchemaInitTypes``) without a lock of its own, and
two threads compiling at once can leave the table broken, after which every schema of
the process fails to compile ("the given type is not a built-in type")."""


def compile_schema(path: Path, sandbox: Path) -> Any:
    """libxml2's compiled XSD ``path`` (an ``etree.XMLSchema``); it and the files it
    includes or imports must be inside ``sandbox``. One thread compiles at a time."""
    resolver = SandboxResolver(sandbox)
    parser = new_hardened_parser()
    parser.resolvers.add(resolver)
    path, data = resolver.read(path.resolve().as_uri())
    try:
        document = etree.fromstring(data, parser, base_url=path.as_uri())
        with _SCHEMA_COMPILER:
            return etree.XMLSchema(document)
    except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        reason = resolver.refused[0] if resolver.refused else str(exc)
        raise MappingError(f"schema {path.name} cannot be compiled: {reason}") from None


_compiled = threading.local()


def libxml2_schema(file_name: str) -> Any:
    """The compiled ``schemas/kela/<file_name>`` of this thread (a validator keeps the
    error log of its last run, so validators are not shared between threads)."""
    schemas: dict[str, Any] | None = getattr(_compiled, "schemas", None)
    if schemas is None:
        schemas = _compiled.schemas = {}
    schema = schemas.get(file_name)
    if schema is None:
        schema = schemas[file_name] = compile_schema(schema_dir() / file_name, schema_dir())
    return schema


def first_schema_error(schema: xmlschema.XMLSchema, element: Any) -> str | None:
    """The first XSD error of ``element`` as "element <path>: <reason>", or None."""
    validator = libxml2_schema(_file_name(schema))
    if validator.validate(element):
        return None
    return xmlschema_error(schema, element) or _libxml2_error(validator, element)


def xmlschema_error(schema: xmlschema.XMLSchema, element: Any) -> str | None:
    """The first error xmlschema finds in ``element``, or None."""
    resource = xmlschema.XMLResource(element, allow="none")
    namespace = etree.QName(element).namespace
    for error in schema.iter_errors(resource):
        where = _readable_path(error.path) or etree.QName(element).localname
        reason = (error.reason or str(error)).rstrip(".")
        if namespace:
            reason = reason.replace(f"{{{namespace}}}", "")
        return f"element {where}: {reason}"
    return None


def _file_name(schema: xmlschema.XMLSchema) -> str:
    return _file_name_of_url(str(schema.url))


@cache
def _file_name_of_url(url: str) -> str:
    path = Path(unquote(urlsplit(url).path)).resolve()
    if path.parent != schema_dir():
        raise MappingError(f"schema {url} is not one of {schema_dir()}")
    return path.name


def _libxml2_error(validator: Any, element: Any) -> str:
    """libxml2's first error as "element <path> (line <n>): <message>"."""
    entry = next(iter(validator.error_log.filter_from_errors()), None)
    if entry is None:
        return f"element {local_name(element)}: not valid"
    where = _libxml2_path(element, entry.path)
    line = f" (line {entry.line})" if entry.line > 0 else ""
    reason = str(entry.message).rstrip(".")
    namespace = namespace_of(element)
    if namespace:
        reason = reason.replace(f"{{{namespace}}}", "")
    return f"element {where}{line}: {reason}"


def _libxml2_path(element: Any, path: str | None) -> str:
    """libxml2's node path (``/*/*[3]/*[1]``, from ``element``) as local names."""
    steps = (path or "").strip("/").split("/")[1:]
    prefixes = {prefix: uri for prefix, uri in element.nsmap.items() if prefix}
    try:
        found = element.xpath("/".join([".", *steps]), namespaces=prefixes)
    except etree.XPathError:
        found = []
    if not found or not isinstance(found[0], etree._Element):
        return path or local_name(element)
    chain = [found[0]]
    while chain[-1] is not element and chain[-1].getparent() is not None:
        chain.append(chain[-1].getparent())
    return "/".join(local_name(node) for node in reversed(chain))


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
