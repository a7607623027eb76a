"""What the access policy needs to know of a resource, derived from its content at
write time (custodian, client, Consent provisions) or at disclosure (category codes)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gateway.policy.rules import access_rules, purpose_system
from gateway.search.extract import extract_param_rows
from gateway.search.values import date_range

ANY = "*"
PERMIT = "permit"
DENY = "deny"


def client_of(
    resource_type: str, resource_id: str, index_rows: Mapping[str, Sequence[dict[str, Any]]]
) -> str | None:
    """The id of the Patient a resource is about (the param of ``clientParameter``),
    read from its reference index rows; a Patient is its own client."""
    param = access_rules().client_parameters.get(resource_type)
    if param is None:
        return None
    if param == "_self":
        return resource_id
    for row in index_rows.get("reference", ()):
        if row["param"] == param and row["target_type"] == "Patient" and row["target_id"]:
            return str(row["target_id"])
    return None


def category_tokens(resource: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """The (system, code) pairs of the resource's category parameter."""
    param = access_rules().category_parameters.get(resource.get("resourceType", ""))
    if param is None:
        return frozenset()
    return frozenset(
        (row["system"], row["code"])
        for row in extract_param_rows(resource, param)
        if row.get("system") and row.get("code")
    )


def _codes(codings: Any, system: str | None = None) -> list[str]:
    if not isinstance(codings, list):
        return []
    return [
        str(c["code"])
        for c in codings
        if isinstance(c, dict) and c.get("code") and (system is None or c.get("system") == system)
    ]


def _actors(provision: dict[str, Any]) -> list[str]:
    """Organisation ids named as actors (``Organization/ID`` references)."""
    found: list[str] = []
    for actor in provision.get("actor") or ():
        reference = (
            (actor.get("reference") or {}).get("reference") if isinstance(actor, dict) else None
        )
        if isinstance(reference, str) and reference.startswith("Organization/"):
            found.append(reference.split("/", 1)[1])
    return found


def _period(period: Any) -> tuple[int | None, int | None]:
    if not isinstance(period, dict):
        return None, None
    low = date_range(period["start"])[0] if period.get("start") else None
    high = date_range(period["end"])[1] if period.get("end") else None
    return low, high


def _narrow(
    outer: tuple[int | None, int | None], inner: tuple[int | None, int | None]
) -> tuple[int | None, int | None]:
    lows = [v for v in (outer[0], inner[0]) if v is not None]
    highs = [v for v in (outer[1], inner[1]) if v is not None]
    return (max(lows) if lows else None, min(highs) if highs else None)


def _provisions(
    provision: dict[str, Any],
    inherited: tuple[list[str], list[str], list[str], tuple[int | None, int | None]],
    effect: str,
) -> Iterator[tuple[str, list[str], list[str], list[str], tuple[int | None, int | None]]]:
    actors = _actors(provision) or inherited[0]
    purposes = _codes(provision.get("purpose"), purpose_system()) or inherited[1]
    classes = _codes(provision.get("class"), access_rules().consent_class_system) or inherited[2]
    period = _narrow(inherited[3], _period(provision.get("period")))
    effect = provision.get("type") or effect
    yield effect, actors, purposes, classes, period
    for nested in provision.get("provision") or ():
        if isinstance(nested, dict):
            yield from _provisions(nested, (actors, purposes, classes, period), effect)


def consent_grant_rows(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``sp_consent_grant`` for a Consent (consent.html §2.1.3.2): one per
    (actor, purpose, class) of each provision of an active Consent with a patient.

    A provision without actor, purpose or class restricts none of them (``*``); nested
    provisions narrow their parent's and may flip permit to deny. Only an ``active``
    Consent grants or denies anything: a revoked (``inactive``) one has no rows at all.
    """
    if resource.get("resourceType") != "Consent" or resource.get("status") != "active":
        return []
    patient = (resource.get("patient") or {}).get("reference")
    if not isinstance(patient, str) or not patient.startswith("Patient/"):
        return []
    patient_id = patient.split("/", 1)[1]
    root = resource.get("provision")
    if not isinstance(root, dict):
        return []
    rows: dict[tuple[Any, ...], None] = {}
    for effect, actors, purposes, classes, (low, high) in _provisions(
        root, ([], [], [], (None, None)), PERMIT
    ):
        if effect not in (PERMIT, DENY):
            continue
        for actor in actors or [ANY]:
            for purpose in purposes or [ANY]:
                for data_class in classes or [ANY]:
                    rows[(patient_id, actor, purpose, data_class, effect, low, high)] = None
    return [
        {
            "param": "provision",
            "patient_id": patient_id,
            "actor": actor,
            "purpose": purpose,
            "data_class": data_class,
            "effect": effect,
            "period_low": low,
            "period_high": high,
        }
        for patient_id, actor, purpose, data_class, effect, low, high in rows
    ]
