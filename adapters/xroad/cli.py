"""Command line of the X-Road channel, attached as ``silta admin xroad``:
``member add | list | remove`` manage the register of X-Road clients."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from adapters.xroad import members
from adapters.xroad.identifiers import ClientId, InvalidIdentifier
from gateway.admin.cli import DatabaseOption, open_database

CLIENT_FORM = "INSTANCE/MEMBER_CLASS/MEMBER_CODE[/SUBSYSTEM_CODE]"

xroad_app = typer.Typer(help="The X-Road channel", no_args_is_help=True)
member_app = typer.Typer(
    help="X-Road members and subsystems of registered organisations", no_args_is_help=True
)
xroad_app.add_typer(member_app, name="member")


def _client(value: str, option: str) -> ClientId:
    try:
        return ClientId.parse(value)
    except InvalidIdentifier as error:
        raise typer.BadParameter(str(error), param_hint=option) from None


@member_app.command("add")
def member_add(
    org: str = typer.Option(..., "--org", help="Registered organisation id"),
    client: str = typer.Option(..., "--client", help=f"{CLIENT_FORM}, e.g. FI/GOV/0245437-2/kela"),
    security_server: str = typer.Option(
        ..., "--security-server", help="URL that receives the gateway's requests to it"
    ),
    service_provider: str | None = typer.Option(
        None,
        "--service-provider",
        help="Member or subsystem whose services are called (default: the client)",
    ),
    database: str = DatabaseOption,
) -> None:
    """Maps an X-Road client identifier to a registered organisation."""
    client_id = _client(client, "--client")
    provider = _client(service_provider, "--service-provider") if service_provider else None
    with open_database(database) as db, db.write() as conn:
        members.add_member(
            conn,
            client=client_id,
            organization_id=org,
            security_server_url=security_server,
            service_provider=provider,
        )
    typer.echo(f"X-Road client {client_id} registered for organisation {org}")


@member_app.command("list")
def member_list(
    org: str | None = typer.Option(None, "--org", help="Only this organisation's"),
    database: str = DatabaseOption,
) -> None:
    """Lists the registered X-Road clients."""
    with open_database(database) as db, db.read() as conn:
        found = members.list_members(conn, organization_id=org)
    table = Table("client", "type", "organisation", "security server", "service provider")
    for m in found:
        table.add_row(
            str(m.client),
            m.client.object_type,
            m.organization_id,
            m.security_server_url,
            str(m.service_provider),
        )
    Console().print(table)


@member_app.command("remove")
def member_remove(
    client: str = typer.Option(..., "--client", help=CLIENT_FORM),
    database: str = DatabaseOption,
) -> None:
    """Removes an X-Road client from the register."""
    client_id = _client(client, "--client")
    with open_database(database) as db, db.write() as conn:
        members.remove_member(conn, client_id)
    typer.echo(f"X-Road client {client_id} removed")
