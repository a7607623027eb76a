"""What the Kela adapter needs to know about registered organisations.

The gateway's admin register implements it; tests use the municipality table.
"""

from __future__ import annotations

from typing import Protocol


class Directory(Protocol):
    def wellbeing_area_for_municipality(self, municipality_code: str) -> str | None:
        """The Organization id of the wellbeing area (or the City of Helsinki) that
        organises social services for the municipality, or None if none is registered."""
        ...
