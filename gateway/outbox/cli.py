"""Command line of the outbox, attached as ``silta admin outbox``: list, show and
retry messages, and deliver everything due now (``drain``)."""

from __future__ import annotations

import typer
from lxml import etree
from rich.console import Console
from rich.table import Table

from gateway.admin.cli import DatabaseOption, open_database
from gateway.fhir.formats import hardened_parser
from gateway.outbox import messages
from gateway.outbox.dispatcher import Dispatcher
from gateway.outbox.messages import OutboxMessage
from gateway.search.values import format_instant

outbox_app = typer.Typer(help="Outbound messages and their delivery", no_args_is_help=True)


def _instant(micros: int | None) -> str:
    return "" if micros is None else format_instant(micros)


@outbox_app.command("list")
def list_command(
    status: str | None = typer.Option(None, "--status", help="pending, delivered or dead"),
    org: str | None = typer.Option(None, "--org", help="Receiving organisation"),
    limit: int = typer.Option(100, "--limit", min=1),
    database: str = DatabaseOption,
) -> None:
    """Lists messages, newest first, with the count in each status."""
    with open_database(database) as db, db.read() as conn:
        found = messages.list_messages(conn, status=status, organization_id=org, limit=limit)
        counts = messages.count_by_status(conn)
    table = Table(
        "id", "message id", "to", "service", "status", "attempts", "next attempt", "last error"
    )
    for m in found:
        table.add_row(
            str(m.id),
            m.message_id,
            m.organization_id,
            m.service_code,
            m.status,
            str(m.attempts),
            _instant(m.next_attempt_at) if m.status == "pending" else "",
            m.last_error or "",
        )
    Console().print(table)
    typer.echo(", ".join(f"{status}: {count}" for status, count in counts.items()))


@outbox_app.command("show")
def show_command(id: int = typer.Argument(...), database: str = DatabaseOption) -> None:
    """Shows one message with its payload."""
    with open_database(database) as db, db.read() as conn:
        message = messages.get_message(conn, id)
    _print(message)


@outbox_app.command("retry")
def retry_command(id: int = typer.Argument(...), database: str = DatabaseOption) -> None:
    """Makes a pending or dead message due now (a dead one with a new series of attempts)."""
    with open_database(database) as db, db.write() as conn:
        message = messages.retry(conn, id)
    typer.echo(f"outbox message {message.id} ({message.message_id}) is due now")


@outbox_app.command("drain")
def drain_command(database: str = DatabaseOption) -> None:
    """Delivers every message due now, once each; failures wait for their next attempt."""
    with open_database(database) as db:
        dispatcher = Dispatcher(db)
        try:
            result = dispatcher.drain()
        finally:
            dispatcher.close()
    typer.echo(f"delivered {result.delivered}, to retry {result.retrying}, dead {result.dead}")


def _print(message: OutboxMessage) -> None:
    for label, value in (
        ("id", str(message.id)),
        ("message id", message.message_id),
        ("organisation", message.organization_id),
        ("url", message.url),
        ("service", message.service_code),
        ("status", message.status),
        ("attempts", str(message.attempts)),
        ("next attempt", _instant(message.next_attempt_at) if message.status == "pending" else ""),
        ("last error", message.last_error or ""),
        ("created", _instant(message.created_at)),
        ("delivered", _instant(message.delivered_at)),
    ):
        typer.echo(f"{label + ':':14}{value}")
    typer.echo("")
    typer.echo(pretty_payload(message.payload))


def pretty_payload(payload: bytes) -> str:
    """The payload as indented XML, or as text when it is not XML."""
    try:
        root = etree.fromstring(payload, hardened_parser())
    except etree.XMLSyntaxError:
        return payload.decode("utf-8", "replace")
    text: str = etree.tostring(root, pretty_print=True, encoding="unicode")
    return text
