"""SMART v1 and v2 system scopes: parsing, permits truth table, granting."""

from __future__ import annotations

import pytest

from gateway.auth.scopes import ScopeError, grant_scopes, parse_scope, permits

INTERACTIONS = ("create", "read", "update", "delete", "search")


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("system/*.cruds", "cruds"),
        ("system/ServiceRequest.crus", "crus"),
        ("system/*.rs", "rs"),
        ("system/Task.c", "c"),
        ("system/*.read", "rs"),
        ("system/*.write", "cud"),
        ("system/Task.*", "cruds"),
        ("system/Patient.read", "rs"),
    ],
)
def test_permits_truth_table(scope: str, expected: str) -> None:
    for interaction in INTERACTIONS:
        for resource_type in ("Task", "ServiceRequest", "Patient"):
            covered = parse_scope(scope).resource_type in ("*", resource_type)
            want = covered and interaction[0] in expected
            assert permits([scope], resource_type, interaction) is want, (scope, interaction)
            assert permits(scope, resource_type, interaction[0]) is want


def test_query_part_is_parsed_and_not_enforced() -> None:
    scope = parse_scope("system/Patient.r?identifier=urn:oid:1.2.246.21|010101-123N")
    assert scope.query == "identifier=urn:oid:1.2.246.21|010101-123N"
    assert scope.permissions == frozenset("r")
    assert scope.render() == "system/Patient.r"


@pytest.mark.parametrize(
    "text",
    [
        "patient/*.rs",
        "user/Task.read",
        "system/Task.sr",
        "system/Task.rr",
        "system/Task.x",
        "system/Task.",
        "system/task.rs",
        "openid",
        "system/*.read?x=1",
    ],
)
def test_unsupported_scopes_are_rejected(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)


def test_permits_ignores_unknown_scopes_and_admin() -> None:
    assert not permits(["admin", "openid", "patient/*.cruds"], "Task", "read")
    with pytest.raises(ValueError):
        permits(["system/*.cruds"], "Task", "patch")


@pytest.mark.parametrize(
    ("requested", "registered", "granted"),
    [
        ("system/Task.rs", "system/*.cruds", ["system/Task.rs"]),
        ("system/*.read", "system/*.cruds", ["system/*.read"]),
        ("system/*.write", "system/*.cu", ["system/*.cu"]),
        ("system/Task.*", "system/Task.rs", ["system/Task.rs"]),
        (
            "system/*.rs",
            "system/Task.r system/ServiceRequest.crus",
            ["system/ServiceRequest.rs", "system/Task.r"],
        ),
        (
            "system/*.cruds admin",
            "system/Task.cruds system/*.r admin",
            ["system/*.r", "system/Task.cuds", "admin"],
        ),
        ("system/Patient.r?identifier=x", "system/Patient.rs", ["system/Patient.r"]),
        ("system/Task.rs openid", "system/Task.r", ["system/Task.r"]),
        ("admin", "system/*.cruds", []),
        ("system/Task.rs", "system/Patient.rs", []),
    ],
)
def test_grant_is_the_intersection(requested: str, registered: str, granted: list[str]) -> None:
    assert grant_scopes(requested, registered) == granted
