"""The one error a Kela message raises when it cannot be accepted or built.

The SOAP layer turns it into a SOAP Fault whose faultstring is ``message``
(X-Road message protocol 4.0 §2.5, SOAP 1.1 §4.4); ``code`` names the rule that was
broken, for tests, logs and the fault code.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    NOT_XML = "not-xml"
    DTD_REFUSED = "dtd-refused"
    UNKNOWN_SERVICE = "unknown-service"
    WRONG_ELEMENT = "wrong-element"
    SCHEMA_INVALID = "schema-invalid"
    INVALID_HETU = "invalid-hetu"
    UNKNOWN_MUNICIPALITY = "unknown-municipality"
    NO_WELLBEING_AREA = "no-wellbeing-area"
    DESCRIPTION_WITHOUT_CONSENT = "description-without-consent"
    UNKNOWN_CODE = "unknown-code"
    BAD_INPUT = "bad-input"
    OUTBOUND_INVALID = "outbound-invalid"


class KelaMessageError(Exception):
    """A Kela message that is refused (inbound) or cannot be built (outbound)."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message

    def __repr__(self) -> str:
        return f"KelaMessageError({self.code.value!r}, {self.message!r})"


class MappingError(Exception):
    """A mapping file or code table that is itself wrong (found when it is loaded)."""
