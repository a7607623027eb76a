"""``silta admin audit``: check the log's hash chain and print a client's log extract."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from gateway.admin.cli import DatabaseOption, open_database
from gateway.audit.log import client_extract, entries, verify

audit_app = typer.Typer(help="The access and disclosure log", no_args_is_help=True)


@audit_app.command("verify")
def verify_command(database: str = DatabaseOption) -> None:
    """Recomputes the hash chain; exit status 1 when an entry was changed or removed."""
    with open_database(database) as db:
        result = verify(db)
    if result.ok:
        typer.echo(f"ok: {result.entries} entries, hash chain intact")
        return
    typer.echo(f"TAMPERED: {result.problem} (chain intact up to entry {result.entries})", err=True)
    raise typer.Exit(1)


@audit_app.command("client")
def client_command(
    hetu: str = typer.Argument(..., help="The client's personal identity code (HETU)"),
    database: str = DatabaseOption,
    limit: int = typer.Option(1000, help="At most this many entries, newest first"),
) -> None:
    """Who used or received the client's data (the client's right to know)."""
    with open_database(database) as db:
        extract = client_extract(entries(db, hetu=hetu, limit=limit), hetu)
    table = Table("when", "kind", "organisation", "client", "purpose", "action", "from", "basis")
    for access in extract["accesses"]:
        table.add_row(
            access["at"],
            "access",
            str(access["organization"] or ""),
            str(access["client"] or ""),
            str(access["purpose"] or ""),
            access["action"],
            "",
            "",
        )
    for disclosure in extract["disclosures"]:
        table.add_row(
            disclosure["at"],
            "disclosure",
            str(disclosure["recipient"] or ""),
            str(disclosure["client"] or ""),
            str(disclosure["purpose"] or ""),
            disclosure["action"],
            disclosure["provider"],
            str(disclosure["agreement"] or disclosure["legal_basis"] or ""),
        )
    Console(width=160).print(table)
    typer.echo(f"{len(extract['accesses'])} accesses, {len(extract['disclosures'])} disclosures")
