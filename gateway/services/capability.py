"""The CapabilityStatement (R4 capabilitystatement.html, http.html §3.1.0.11 capabilities).

Generated from what the server really has: the stored types, the search-parameter
registry (so every listed parameter works), the include/revinclude paths those
parameters allow, the formats and the operations.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from gateway import __version__
from gateway.fhir.resource_types import STORED_TYPES
from gateway.search.registry import params_for

INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SEARCH_RESULT_PARAMETERS = (
    ("_sort", "string", "Sort order: comma-separated parameters, '-' for descending"),
    ("_count", "number", "Page size"),
    ("_include", "special", "Include referenced resources"),
    ("_revinclude", "special", "Include resources that reference the matches"),
    ("_summary", "token", "true | text | data | count | false"),
    ("_elements", "string", "Only these top-level elements"),
    ("_total", "token", "none | estimate | accurate"),
)
VALIDATE_OPERATION = {
    "name": "validate",
    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
}


def _resource_entry(resource_type: str) -> dict[str, Any]:
    params = params_for(resource_type)
    includes = sorted(
        f"{resource_type}:{code}" for code, p in params.items() if p.type == "reference"
    )
    revincludes = sorted(
        f"{other}:{code}"
        for other in STORED_TYPES
        for code, p in params_for(other).items()
        if p.type == "reference" and (resource_type in p.targets or not p.targets)
    )
    search_params = [
        {
            "name": code,
            "definition": p.url,
            "type": p.type,
            **({"documentation": p.description} if p.description else {}),
        }
        for code, p in sorted(params.items())
        if p.type not in ("composite", "special")
    ]
    search_params += [
        {"name": name, "type": kind, "documentation": doc}
        for name, kind, doc in SEARCH_RESULT_PARAMETERS
    ]
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "local"],
        "searchInclude": ["*", *includes],
        "searchRevInclude": revincludes,
        "searchParam": search_params,
        "operation": [VALIDATE_OPERATION],
    }


@cache
def _statement_template() -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "publisher": "Silta",
        "kind": "instance",
        "software": {"name": "Silta gateway", "version": __version__},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Silta FHIR R4 gateway",
                "resource": [_resource_entry(t) for t in STORED_TYPES],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "operation": [VALIDATE_OPERATION],
            }
        ],
    }


def capability_statement(base_url: str, *, token_url: str | None = None) -> dict[str, Any]:
    """The statement, with the implementation address of this deployment and, when
    requests need a bearer token, its security section (SMART App Launch
    "Declaring support for OAuth2 endpoints": the oauth-uris extension)."""
    statement = dict(_statement_template())
    statement["implementation"] = {"description": "Silta gateway", "url": base_url}
    if token_url is not None:
        rest = dict(statement["rest"][0])
        rest["security"] = {
            "cors": False,
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ]
                }
            ],
            "description": "SMART Backend Services (client credentials with a private_key_jwt "
            "assertion, RS384 or ES384); system/ scopes v1 and v2. Disclosures between "
            "organisations follow the data-sharing agreements and the client's consent; "
            "state the purpose in the X-Purpose-Of-Use header.",
            "extension": [
                {
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": token_url}],
                }
            ],
        }
        statement["rest"] = [rest]
    return statement
