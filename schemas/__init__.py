"""Data files of the project: FHIR definitions, XSDs, code systems and profiles."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson


def read_bytes(relative_path: str) -> bytes:
    """Returns the bytes of a data file below ``schemas/``."""
    return resources.files(__name__).joinpath(relative_path).read_bytes()


@cache
def load_json(relative_path: str) -> Any:
    """Parses (once) a JSON data file below ``schemas/``."""
    return orjson.loads(read_bytes(relative_path))
