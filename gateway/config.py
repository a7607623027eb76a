"""Run-time settings, read once from the environment (12-factor style)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///./silta.db"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Absolute base of the FHIR endpoint as clients see it; None derives it from the request.
    public_base_url: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    default_page_size: int = 20
    max_page_size: int = 1000
    max_transaction_entries: int = 10_000
    # Run service calls in worker threads (True) or on the event loop (False); None
    # chooses by database: threads for PostgreSQL, where every statement is a round trip
    # that would stop the loop, the loop for SQLite (RequestContext.services_on_threads).
    service_threads: bool | None = None
    # Every FHIR request needs a bearer token and passes the trust layer's policy. Off
    # (SILTA_AUTH=off) only for local experiments and the enforcement-off benchmark.
    auth_required: bool = True
    # Deliver queued outbound messages (X-Road) from a background thread of the server.
    outbox_dispatcher: bool = True

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "database_url": env.get("SILTA_DATABASE_URL", DEFAULT_DATABASE_URL),
            "public_base_url": env.get("SILTA_PUBLIC_BASE_URL") or None,
            "max_body_bytes": int(env.get("SILTA_MAX_BODY_BYTES", 10 * 1024 * 1024)),
            "default_page_size": int(env.get("SILTA_DEFAULT_PAGE_SIZE", 20)),
            "max_page_size": int(env.get("SILTA_MAX_PAGE_SIZE", 1000)),
            "service_threads": _flag(env.get("SILTA_SERVICE_THREADS")),
            "auth_required": env.get("SILTA_AUTH", "on").lower() not in ("off", "0", "false"),
            "outbox_dispatcher": env.get("SILTA_OUTBOX_DISPATCHER", "1") not in ("0", "false"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _flag(value: str | None) -> bool | None:
    """An on/off setting: None when unset (the default applies)."""
    if value is None or value.strip() == "":
        return None
    return value.strip().lower() not in ("0", "false", "off", "no")
