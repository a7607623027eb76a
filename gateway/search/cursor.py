"""Opaque keyset-paging cursors (search.html §3.1.1.5.6 Paging).

A cursor names a position in the sort order of a search: the sort-column values of one row
(NULL sort keys already mapped to a flag and a neutral value, so positions compare totally),
which side of that row the page lies on, and the sort it belongs to. It travels as
URL-safe base64 of compact JSON; anything that does not decode to a well-formed cursor for
the same sort is rejected with InvalidSearch.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.errors import InvalidSearch

ColumnKind = Literal["int", "float", "str"]
CursorValue = int | float | str

_FORMAT_VERSION = 1
_MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a sorted result set and the side of it that a page covers."""

    position: tuple[CursorValue, ...]
    backward: bool = False
    inclusive: bool = False
    sort_signature: str = ""


def encode_cursor(cursor: Cursor) -> str:
    """The opaque, URL-safe text of a cursor."""
    document = {
        "v": _FORMAT_VERSION,
        "s": cursor.sort_signature,
        "b": int(cursor.backward),
        "i": int(cursor.inclusive),
        "k": list(cursor.position),
    }
    return base64.urlsafe_b64encode(orjson.dumps(document)).rstrip(b"=").decode("ascii")


def _invalid(reason: str) -> InvalidSearch:
    return InvalidSearch(f"Invalid _cursor: {reason}", expression=("_cursor",))


def _checked_value(value: Any, kind: ColumnKind) -> CursorValue:
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _invalid("a position value has the wrong type")


def decode_cursor(token: str, *, sort_signature: str, kinds: Sequence[ColumnKind]) -> Cursor:
    """Parses a cursor made by ``encode_cursor`` for the same sort; raises InvalidSearch."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        raise _invalid("empty or too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _invalid("not a cursor of this server") from exc
    if not isinstance(document, dict) or document.get("v") != _FORMAT_VERSION:
        raise _invalid("not a cursor of this server")
    if document.get("s") != sort_signature:
        raise _invalid("it belongs to a search with a different _sort")
    backward, inclusive, position = document.get("b"), document.get("i"), document.get("k")
    if backward not in (0, 1) or inclusive not in (0, 1) or not isinstance(position, list):
        raise _invalid("malformed")
    if len(position) != len(kinds):
        raise _invalid("malformed position")
    values = tuple(_checked_value(v, k) for v, k in zip(position, kinds, strict=True))
    return Cursor(values, bool(backward), bool(inclusive), sort_signature)
