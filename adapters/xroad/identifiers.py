"""X-Road identifiers of clients and services (X-Road message protocol v4.0 §1.3, §2.1).

The string forms follow §1.3 without the object type: ``INSTANCE/CLASS/CODE`` for a
member, ``INSTANCE/CLASS/CODE/SUBSYSTEM`` for a subsystem, and the provider's form
followed by ``/SERVICE[/VERSION]`` for a service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MEMBER: Final = "MEMBER"
SUBSYSTEM: Final = "SUBSYSTEM"
SERVICE: Final = "SERVICE"

# §2.7 narrows identifier values to A-Z a-z 0-9 '()+,-.=? ; identifiers registered
# before that rule still carry other characters, so only what would make the string
# form ambiguous is refused: the separator "/", whitespace and control characters.
_CODE: Final = re.compile(r"[^/\s\x00-\x1f\x7f]+")


class InvalidIdentifier(ValueError):
    """An identifier value or string form that cannot name an X-Road entity."""


def check_code(value: str, field: str) -> str:
    """``value`` if it is a usable identifier code, else :class:`InvalidIdentifier`."""
    if not _CODE.fullmatch(value):
        shown = repr(value) if value else "empty"
        raise InvalidIdentifier(f"X-Road identifier field {field} is {shown}")
    return value


@dataclass(frozen=True, slots=True)
class ClientId:
    """An X-Road member or subsystem (``XRoadClientIdentifierType``, §2.1)."""

    instance: str
    member_class: str
    member_code: str
    subsystem_code: str | None = None

    def __post_init__(self) -> None:
        check_code(self.instance, "xRoadInstance")
        check_code(self.member_class, "memberClass")
        check_code(self.member_code, "memberCode")
        if self.subsystem_code is not None:
            check_code(self.subsystem_code, "subsystemCode")

    @property
    def object_type(self) -> str:
        return MEMBER if self.subsystem_code is None else SUBSYSTEM

    def __str__(self) -> str:
        parts = [self.instance, self.member_class, self.member_code]
        if self.subsystem_code is not None:
            parts.append(self.subsystem_code)
        return "/".join(parts)

    @classmethod
    def parse(cls, text: str) -> ClientId:
        """``FI/GOV/0245437-2`` (member) or ``FI/GOV/0245437-2/kela-sub`` (subsystem)."""
        parts = text.strip().split("/")
        if len(parts) not in (3, 4):
            raise InvalidIdentifier(
                f"'{text}' is not an X-Road client identifier "
                "INSTANCE/MEMBER_CLASS/MEMBER_CODE[/SUBSYSTEM_CODE]"
            )
        return cls(*parts)


@dataclass(frozen=True, slots=True)
class ServiceId:
    """A service of a member or subsystem (``XRoadServiceIdentifierType``, §2.1)."""

    provider: ClientId
    service_code: str
    service_version: str | None = None

    def __post_init__(self) -> None:
        check_code(self.service_code, "serviceCode")
        if self.service_version is not None:
            check_code(self.service_version, "serviceVersion")

    def __str__(self) -> str:
        text = f"{self.provider}/{self.service_code}"
        return text if self.service_version is None else f"{text}/{self.service_version}"
