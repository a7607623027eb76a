"""The ASGI application: FHIR API under ``/fhir`` behind one access policy, the admin and
auth APIs beside it, one database and one access log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from adapters.kela.engine import DIRECTIONS
from adapters.kela.mapping import mappings
from gateway import __version__
from gateway.admin.api import router as admin_router
from gateway.api import errors
from gateway.api.fhir import fhir_routes, transaction_or_batch
from gateway.api.heap import settle_heap
from gateway.audit.log import AuditLog
from gateway.auth.routes import auth_routes, smart_configuration
from gateway.auth.tokens import VerifiedTokens
from gateway.config import Settings
from gateway.exchange.loop import task_changed
from gateway.exchange.xroad import PreparedBatches, prepare_all, xroad_endpoint
from gateway.fhir.formats import load_type_infos
from gateway.fhir.resource_types import STORED_TYPES
from gateway.outbox.api import router as outbox_router
from gateway.outbox.dispatcher import Dispatcher
from gateway.store.database import Database
from gateway.store.migrate import upgrade

FHIR_BASE_PATH = "/fhir"
ADMIN_API_PATH = "/admin/api"


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    migrate: bool = True,
    serving: bool = False,
) -> Starlette:
    """Builds the application; ``migrate`` brings the schema up to date first, and
    ``serving`` (a process that only serves it) loads at start-up what requests would
    load on first use and then settles the garbage collector (``warm_up``,
    ``heap.settle_heap``).

    The FHIR API is a lean Starlette application at ``/fhir`` (its handlers need no
    dependency injection, and every request skips FastAPI's middleware); the admin API,
    the auth endpoints and the OpenAPI document are a FastAPI application beside it,
    reachable as ``app.state.api``.
    """
    settings = settings or Settings.from_env()
    database = database or Database(settings.database_url)
    if migrate:
        upgrade(database.engine)

    api = FastAPI(
        title="Silta gateway",
        version=__version__,
        description="FHIR R4 interoperability gateway for Kela, social services and healthcare",
    )
    api.include_router(admin_router, prefix=ADMIN_API_PATH)
    api.include_router(outbox_router, prefix=ADMIN_API_PATH)
    api.router.routes.append(Mount("/auth", routes=auth_routes()))

    audit = AuditLog(database)
    dispatcher = Dispatcher(database) if settings.outbox_dispatcher else None

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if serving:
            warm_up()
            settle_heap()
        audit.start()
        if dispatcher is not None:
            dispatcher.start()
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.close()
            audit.stop()
            database.dispose()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            # SMART discovery lives under the FHIR base, before the FHIR routes claim it.
            Route(f"{FHIR_BASE_PATH}/.well-known/smart-configuration", smart_configuration),
            # POST to the base itself (no trailing slash) is a transaction or batch.
            Route(FHIR_BASE_PATH, transaction_or_batch, methods=["POST"]),
            Mount(FHIR_BASE_PATH, routes=fhir_routes()),
            Route("/exchange/xroad", xroad_endpoint, methods=["POST"]),
            Mount("/", app=api),
        ],
    )
    tokens = VerifiedTokens(database)
    for application in (app, api):
        application.state.settings = settings
        application.state.database = database
        application.state.tokens = tokens
        application.state.audit = audit
        application.state.write_hooks = (task_changed,)
        errors.install(application)
    app.state.api = api
    app.state.xroad_batches = PreparedBatches(partial(prepare_all, database))
    return app


def warm_up() -> None:
    """Loads what requests would otherwise load on first use: the Kela message mappings
    with their XSDs and code tables, and the structure of every stored resource type and
    of its data types (a fresh process took 441 ms over its first X-Road message, 17 ms
    after this). Loaded before the heap is settled, they are frozen with start-up."""
    for direction in DIRECTIONS:
        mappings(direction)
    load_type_infos(STORED_TYPES)


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` worker processes (the schema is already migrated)."""
    return create_app(migrate=False, serving=True)
