"""Command-line administration of clients and signing keys (to be attached as
``silta admin client`` and ``silta admin key``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from gateway.auth.clients import disable_client, list_clients, register_client
from gateway.auth.keys import SIGNING_ALGORITHMS, rotate_signing_key, signing_keys
from gateway.config import DEFAULT_DATABASE_URL
from gateway.errors import FhirError
from gateway.store.database import Database
from gateway.store.migrate import upgrade

client_app = typer.Typer(help="Registered backend-service clients", no_args_is_help=True)
key_app = typer.Typer(help="The gateway's token-signing keys", no_args_is_help=True)

DatabaseOption = typer.Option(
    DEFAULT_DATABASE_URL, "--database", envvar="SILTA_DATABASE_URL", help="SQLAlchemy database URL"
)


def _open(url: str) -> Database:
    db = Database(url)
    upgrade(db.engine)
    return db


def _fail(error: FhirError) -> typer.Exit:
    typer.echo(f"error: {error.diagnostics}", err=True)
    return typer.Exit(code=1)


@client_app.command("add")
def add(
    client_id: str = typer.Option(..., "--id", help="client_id the client puts in iss and sub"),
    org: str = typer.Option(..., "--org", help="Organisation the client acts for"),
    jwks: Path = typer.Option(
        ..., "--jwks", exists=True, dir_okay=False, help="JWK Set file with its public keys"
    ),
    scope: str = typer.Option(..., "--scope", help='Space-separated scopes, e.g. "system/*.rs"'),
    admin: bool = typer.Option(False, "--admin", help="May use the admin APIs"),
    purpose: str | None = typer.Option(None, "--purpose", help="Default purpose-of-use code"),
    database: str = DatabaseOption,
) -> None:
    """Registers a client."""
    db = _open(database)
    try:
        client = register_client(
            db,
            client_id=client_id,
            organization_id=org,
            jwks=jwks.read_text(encoding="utf-8"),
            scopes=scope,
            is_admin=admin,
            default_purpose=purpose,
        )
    except FhirError as error:
        raise _fail(error) from error
    finally:
        db.dispose()
    kids = ", ".join(k["kid"] for k in client.jwks["keys"])
    typer.echo(
        f"registered client {client.client_id} for {client.organization_id}: "
        f"scopes {' '.join(client.scopes)}; keys {kids}"
    )


@client_app.command("list")
def list_command(database: str = DatabaseOption) -> None:
    """Lists the registered clients."""
    db = _open(database)
    try:
        clients = list_clients(db)
    finally:
        db.dispose()
    table = Table("client_id", "organisation", "status", "admin", "purpose", "scopes", "keys")
    for c in clients:
        table.add_row(
            c.client_id,
            c.organization_id,
            c.status,
            "yes" if c.is_admin else "",
            c.default_purpose or "",
            " ".join(c.scopes),
            ", ".join(k["kid"] for k in c.jwks["keys"]),
        )
    Console(width=200).print(table)


@client_app.command("disable")
def disable(
    client_id: str = typer.Argument(..., help="client_id to disable"),
    database: str = DatabaseOption,
) -> None:
    """Disables a client: no new tokens, and its current tokens are refused."""
    db = _open(database)
    try:
        disable_client(db, client_id)
    except FhirError as error:
        raise _fail(error) from error
    finally:
        db.dispose()
    typer.echo(f"client {client_id} is disabled")


@key_app.command("rotate")
def rotate(
    algorithm: str = typer.Option(
        "ES384", "--algorithm", help=f"One of {', '.join(SIGNING_ALGORITHMS)}"
    ),
    database: str = DatabaseOption,
) -> None:
    """Creates a new signing key; the old one verifies tokens until they expire."""
    if algorithm not in SIGNING_ALGORITHMS:
        typer.echo(f"error: algorithm must be one of {', '.join(SIGNING_ALGORITHMS)}", err=True)
        raise typer.Exit(code=1)
    db = _open(database)
    try:
        key = rotate_signing_key(db, algorithm=algorithm)
    finally:
        db.dispose()
    typer.echo(f"new signing key {key.kid} ({key.algorithm}) is active")


@key_app.command("list")
def list_keys(database: str = DatabaseOption) -> None:
    """Lists the signing keys (public parts only)."""
    db = _open(database)
    try:
        keys = signing_keys(db)
    finally:
        db.dispose()
    table = Table("kid", "algorithm", "created", "retired")
    for key in keys:
        retired = "" if key.retired_at is None else _when(key.retired_at)
        table.add_row(key.kid, key.algorithm, _when(key.created_at), retired)
    Console(width=200).print(table)


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
