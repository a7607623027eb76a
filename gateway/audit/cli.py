"""``silta admin audit``: check the log's hash chain and print a client's log extract."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from gateway.admin.cli import DatabaseOption, open_database
from gateway.audit.log import entries, verify
from gateway.search.values import format_instant

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
        found = entries(db, hetu=hetu, limit=limit)
    table = Table("when", "kind", "organisation", "client", "purpose", "action", "from", "basis")
    for entry in found:
        record = entry["record"]
        table.add_row(
            format_instant(int(entry["at"])),
            str(entry["kind"]),
            str(entry["organization"] or ""),
            str(entry["client_id"] or ""),
            str(entry["purpose"] or ""),
            str(entry["action"]),
            str(entry["provider"] or ""),
            str(record.get("agreement") or record.get("legal_basis") or ""),
        )
    Console(width=160).print(table)
    typer.echo(f"{len(found)} entries")
