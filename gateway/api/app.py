"""The ASGI application: FHIR API under ``/fhir``, one database, one access policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Mount, Route

from gateway import __version__
from gateway.admin.api import router as admin_router
from gateway.api import errors
from gateway.api.fhir import fhir_routes, transaction_or_batch
from gateway.auth.routes import auth_routes, smart_configuration
from gateway.config import Settings
from gateway.policy import AccessPolicy, PermitAll
from gateway.store.database import Database
from gateway.store.migrate import upgrade

FHIR_BASE_PATH = "/fhir"
ADMIN_API_PATH = "/admin/api"


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    policy: AccessPolicy | None = None,
    migrate: bool = True,
) -> FastAPI:
    """Builds the application; ``migrate`` brings the schema up to date first."""
    settings = settings or Settings.from_env()
    database = database or Database(settings.database_url)
    if migrate:
        upgrade(database.engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        database.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="Silta gateway",
        version=__version__,
        description="FHIR R4 interoperability gateway for Kela, social services and healthcare",
    )
    app.state.settings = settings
    app.state.database = database
    app.state.policy = policy or PermitAll()
    # SMART discovery lives under the FHIR base, before the FHIR routes claim the path.
    app.router.routes.append(
        Route(f"{FHIR_BASE_PATH}/.well-known/smart-configuration", smart_configuration)
    )
    app.router.routes.append(Mount("/auth", routes=auth_routes()))
    app.include_router(admin_router, prefix=ADMIN_API_PATH)
    # POST to the base itself (no trailing slash) is a transaction or batch.
    app.router.routes.append(Route(FHIR_BASE_PATH, transaction_or_batch, methods=["POST"]))
    app.router.routes.append(Mount(FHIR_BASE_PATH, routes=fhir_routes()))
    errors.install(app)

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` worker processes (the schema is already migrated)."""
    return create_app(migrate=False)
