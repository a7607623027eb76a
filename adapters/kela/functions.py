"""Named functions the mapping templates call with ``{"$fn": name, "args": [...]}``.

Only what data cannot say lives here: the HETU check and what a HETU encodes, the
municipality and wellbeing-area lookups, the consent rule for the description of the
client's situation, deterministic ids, and value formats. Each takes the evaluation
scope first; absent arguments give an absent result unless the function checks them.
"""

from __future__ import annotations

import hashlib
import inspect
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from adapters.kela.engine import Function, Scope
from adapters.kela.errors import ErrorCode, KelaMessageError
from adapters.kela.hetu import birth_date, gender, hetu_problem
from adapters.kela.wire import local_name
from mappings.municipalities import Municipality, municipalities

FUNCTIONS: dict[str, Function] = {}

_F = TypeVar("_F", bound=Callable[..., Any])

HELSINKI: Final = ZoneInfo("Europe/Helsinki")
# Namespace of the deterministic UUIDs (fullUrls, message ids) of the Kela adapter.
KELA_UUID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://silta.example.org/kela")
_ID_HASH_LENGTH: Final = 16
EN_DASH: Final = "\u2013"


def _function(name: str) -> Callable[[_F], _F]:
    def register(implementation: _F) -> _F:
        parameters = list(inspect.signature(implementation).parameters.values())[1:]
        variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
        positional = [p for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        required = sum(1 for p in positional if p.default is inspect.Parameter.empty)
        FUNCTIONS[name] = Function(
            name, implementation, required, None if variadic else len(positional)
        )
        return implementation

    return register


# -- identifiers -------------------------------------------------------------


def stable_hash(*parts: str) -> str:
    """A short hex digest of the parts (SHA-256), stable across processes and releases."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:_ID_HASH_LENGTH]


@_function("stable_id")
def stable_id(scope: Scope, prefix: str, *parts: Any) -> str | None:
    """A FHIR id (R4 datatypes.html#id) derived from source identifiers: ``prefix`` and a
    hash of the parts, so a re-delivered message yields the same resource ids."""
    if any(part is None for part in parts):
        return None
    return prefix + stable_hash(*(str(part) for part in parts))


def stable_uuid(*parts: str) -> str:
    """A name-based UUID (RFC 4122 §4.3, SHA-1) in the Kela adapter's namespace."""
    return str(uuid.uuid5(KELA_UUID_NAMESPACE, "\x1f".join(parts)))


def stable_message_id(service_code: str, reference: str, version: str) -> str:
    """The id of the message ``service_code`` built from one version of a resource
    (``Task/abc``, version ``3``): the same version always gives the same id, so the
    receiver can drop a duplicate delivery (X-Road message protocol 4.0 §2.2, ``id``)."""
    return stable_uuid(service_code, f"{reference}/_history/{version}")


@_function("message_id")
def message_id(scope: Scope, reference: Any, version: Any) -> str:
    if reference is None or version is None:
        raise KelaMessageError(
            ErrorCode.BAD_INPUT,
            f"{scope.message}: {reference or 'the resource'} has no id and meta.versionId; "
            "messages are built from stored resource versions",
        )
    return stable_message_id(scope.message, str(reference), str(version))


# -- the client ----------------------------------------------------------------


@_function("valid_hetu")
def valid_hetu(scope: Scope, text: Any) -> str | None:
    """The HETU if its date, individual number and check character are right."""
    if text is None:
        return None
    problem = hetu_problem(str(text))
    if problem is not None:
        raise KelaMessageError(ErrorCode.INVALID_HETU, f"{scope.message}: Client/Hetu {problem}")
    return str(text)


@_function("birth_date_of")
def birth_date_of(scope: Scope, hetu: Any) -> str | None:
    return None if hetu is None else birth_date(str(hetu)).isoformat()


@_function("gender_of")
def gender_of(scope: Scope, hetu: Any) -> str | None:
    return None if hetu is None else gender(str(hetu))


@_function("words")
def words(scope: Scope, text: Any) -> list[str] | None:
    return None if text is None else str(text).split() or None


# -- municipality and wellbeing area --------------------------------------------


def _municipality(scope: Scope, code: Any) -> Municipality:
    found = municipalities().get(str(code))
    if found is None:
        raise KelaMessageError(
            ErrorCode.UNKNOWN_MUNICIPALITY,
            f"{scope.message}: Client/MunicipalityCode {code} is not a municipality code of "
            "Statistics Finland (urn:oid:1.2.246.537.6.21)",
        )
    return found


@_function("municipality_name")
def municipality_name(scope: Scope, code: Any) -> str | None:
    return None if code is None else _municipality(scope, code).name_fi


@_function("wellbeing_area")
def wellbeing_area(scope: Scope, code: Any) -> str | None:
    """The Organization id of the wellbeing area that serves the municipality, from the
    caller's directory (Act on Wellbeing Areas 611/2021; Helsinki organises its own)."""
    if code is None:
        return None
    municipality = _municipality(scope, code)
    organization = None
    if scope.directory is not None:
        organization = scope.directory.wellbeing_area_for_municipality(municipality.code)
    if organization is None:
        raise KelaMessageError(
            ErrorCode.NO_WELLBEING_AREA,
            f"{scope.message}: no wellbeing area organisation is registered for municipality "
            f"{municipality.code} {municipality.name_fi} ({municipality.area_name})",
        )
    return organization


@_function("wellbeing_area_name")
def wellbeing_area_name(scope: Scope, code: Any) -> str | None:
    return None if code is None else _municipality(scope, code).area_name


@_function("sender")
def sender(scope: Scope) -> str | None:
    """The Organization id of the X-Road member that sent the message (Kela)."""
    return scope.sender


# -- consent --------------------------------------------------------------------


@_function("description_if_consented")
def description_if_consented(scope: Scope, consent: Any, description: Any) -> Any:
    """Kela may describe the client's situation only with the client's consent; a
    description without consent is refused, never dropped (Social Welfare Act
    1301/2014 §35)."""
    if description is not None and consent is not True:
        raise KelaMessageError(
            ErrorCode.DESCRIPTION_WITHOUT_CONSENT,
            f"{scope.message}: SituationDescription is given although ConsentGiven is false; "
            "the client's situation may be described only with the client's consent",
        )
    return description


# -- the XML node ---------------------------------------------------------------


@_function("element_name")
def element_name(scope: Scope) -> str:
    """The local name of the current element (inside ``$each``)."""
    return local_name(scope.node)


# -- values ---------------------------------------------------------------------


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@_function("euro")
def euro(scope: Scope, amount: Any) -> dict[str, Any] | None:
    """A FHIR Money in euros (R4 datatypes.html#Money)."""
    if amount is None:
        return None
    return {"value": float(_decimal(amount)), "currency": "EUR"}


@_function("euro_text")
def euro_text(scope: Scope, amount: Any) -> str | None:
    """An amount with two decimals, as the XSDs' EuroAmountType."""
    if amount is None:
        return None
    return format(_decimal(amount).quantize(Decimal("0.01")), "f")


@_function("start_of_day_helsinki")
def start_of_day_helsinki(scope: Scope, day: Any) -> str | None:
    """Midnight of a date in Finnish time, as a FHIR instant (e.g. for
    DocumentReference.date, which must have a time and a zone)."""
    if day is None:
        return None
    moment = datetime.combine(date.fromisoformat(str(day)), time(0), HELSINKI)
    return moment.isoformat()


@_function("date_of")
def date_of(scope: Scope, value: Any) -> str | None:
    """The date part of a FHIR date or dateTime."""
    return None if value is None else str(value)[:10]


def _finnish(day: str) -> str:
    parsed = date.fromisoformat(day)
    return f"{parsed.day}.{parsed.month}.{parsed.year}"


@_function("finnish_date")
def finnish_date(scope: Scope, day: Any) -> str | None:
    return None if day is None else _finnish(str(day))


@_function("finnish_period")
def finnish_period(scope: Scope, start: Any, end: Any = None) -> str | None:
    """``1.1.2025\u201331.1.2025`` (an en dash), or ``1.1.2025 alkaen`` when open."""
    if start is None:
        return None
    if end is None:
        return f"{_finnish(str(start))} alkaen"
    return f"{_finnish(str(start))}{EN_DASH}{_finnish(str(end))}"


# -- outbound checks ------------------------------------------------------------


@_function("require")
def require(scope: Scope, value: Any, what: str) -> Any:
    """``value``, or an error saying that ``what`` is missing from the input."""
    if value is None:
        raise KelaMessageError(ErrorCode.BAD_INPUT, f"{scope.message}: {what} is missing")
    return value


@_function("require_equal")
def require_equal(scope: Scope, actual: Any, expected: Any, what: str) -> Any:
    """``actual`` if it equals ``expected``, else an error naming ``what``."""
    if actual != expected:
        raise KelaMessageError(
            ErrorCode.BAD_INPUT, f"{scope.message}: {what} is {actual!r}, expected {expected!r}"
        )
    return actual
