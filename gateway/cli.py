"""The ``silta`` command line."""

from __future__ import annotations

import os

import typer
import uvicorn
from typer.core import TyperOption

from adapters.xroad.cli import xroad_app
from gateway.admin.cli import agreement_app, org_app
from gateway.api.allocator import AllocatorError, allocator_in_use, restart_with_allocator
from gateway.audit.cli import audit_app
from gateway.auth.cli import client_app, key_app
from gateway.config import DEFAULT_DATABASE_URL
from gateway.demo import demo
from gateway.outbox.cli import outbox_app
from gateway.store.database import Database
from gateway.store.migrate import upgrade

app = typer.Typer(help="Silta interoperability gateway", no_args_is_help=True)
admin_app = typer.Typer(
    help="Administration directly on the database (works without any token)",
    no_args_is_help=True,
)
admin_app.add_typer(client_app, name="client")
admin_app.add_typer(key_app, name="key")
admin_app.add_typer(org_app, name="org")
admin_app.add_typer(agreement_app, name="agreement")
admin_app.add_typer(audit_app, name="audit")
admin_app.add_typer(xroad_app, name="xroad")
admin_app.add_typer(outbox_app, name="outbox")
app.add_typer(admin_app, name="admin")
app.command()(demo)

DatabaseOption = typer.Option(
    DEFAULT_DATABASE_URL, "--database", envvar="SILTA_DATABASE_URL", help="SQLAlchemy database URL"
)


def _given_options(ctx: typer.Context) -> list[str]:
    """The command's options as command-line arguments, each with its value as parsed
    (defaults and environment included), so that a restart runs exactly this command."""
    arguments: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, TyperOption) or param.name is None:
            continue
        value = ctx.params[param.name]
        if param.is_flag:
            arguments += param.opts[:1] if value else param.secondary_opts[:1]
        else:
            for one in value if param.multiple else (value,):
                arguments += (param.opts[0], str(one))
    return arguments


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int = typer.Option(8080, help="TCP port"),
    database: str = DatabaseOption,
    workers: int = typer.Option(1, min=1, help="Worker processes"),
    log_level: str = typer.Option("warning", help="uvicorn log level"),
) -> None:
    """Runs the gateway; the FHIR base is http://HOST:PORT/fhir."""
    try:
        restart_with_allocator(["-m", "gateway.cli", "serve", *_given_options(ctx)])
    except AllocatorError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    os.environ["SILTA_DATABASE_URL"] = database
    db = Database(database)
    upgrade(db.engine)
    db.dispose()
    typer.echo(
        f"Silta FHIR R4 base: http://{host}:{port}/fhir  "
        f"(database: {database}; memory allocator: {allocator_in_use()})"
    )
    uvicorn.run(
        "gateway.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )


@app.command()
def migrate(database: str = DatabaseOption) -> None:
    """Brings the database schema up to date."""
    db = Database(database)
    upgrade(db.engine)
    db.dispose()
    typer.echo("database schema is up to date")


if __name__ == "__main__":
    app()
