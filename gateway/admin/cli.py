"""Command line for the admin register: ``org_app`` (organisations) and
``agreement_app`` (data-sharing agreements), attached as ``silta admin org`` and
``silta admin agreement``. Every command brings the schema up to date first."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

import typer
from rich.console import Console
from rich.table import Table

from gateway.admin import agreements as svc
from gateway.admin import organizations as orgs
from gateway.config import DEFAULT_DATABASE_URL, Settings
from gateway.errors import FhirError
from gateway.policy.rules import purposes_of_use
from gateway.search.values import format_instant
from gateway.services.context import RequestContext
from gateway.store.database import Database
from gateway.store.migrate import upgrade

# As gateway.cli's option; defined here so that gateway.cli can import this module.
DatabaseOption = typer.Option(
    DEFAULT_DATABASE_URL, "--database", envvar="SILTA_DATABASE_URL", help="SQLAlchemy database URL"
)

org_app = typer.Typer(help="Organisations that exchange data through Silta", no_args_is_help=True)
agreement_app = typer.Typer(
    help="Data-sharing agreements between organisations", no_args_is_help=True
)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


@contextmanager
def open_database(url: str) -> Iterator[Database]:
    """A migrated database; gateway errors become a message and exit status 1."""
    db = Database(url)
    try:
        upgrade(db.engine)
        yield db
    except FhirError as error:
        typer.echo(f"error: {error.diagnostics}", err=True)
        for issue in error.issues:
            if issue.expression:
                typer.echo(f"  {', '.join(issue.expression)}: {issue.diagnostics}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()


def _split(value: str, option: str) -> tuple[str, str]:
    system, bar, rest = value.rpartition("|")
    if not bar or not system or not rest:
        raise typer.BadParameter(f"'{value}' is not SYSTEM|VALUE", param_hint=option)
    return system, rest


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a date YYYY-MM-DD", param_hint=option) from None


@org_app.command("add")
def org_add(
    id: str = typer.Option(..., "--id", help="FHIR id of the organisation"),
    name: str = typer.Option(..., "--name"),
    type: str = typer.Option(..., "--type", help=", ".join(orgs.organization_types())),
    identifier: list[str] = typer.Option(
        [], "--identifier", help="SYSTEM|VALUE, e.g. urn:oid:1.2.246.10|0246246-0"
    ),
    municipality: list[str] = typer.Option(
        [], "--municipality", help="Municipality code served (wellbeing areas)"
    ),
    database: str = DatabaseOption,
) -> None:
    """Registers an organisation and its FHIR Organization/ID."""
    identifiers = tuple(orgs.Identifier(*_split(v, "--identifier")) for v in identifier)
    org = orgs.Organization(id, name, type, identifiers, tuple(municipality))
    with open_database(database) as db:
        settings = Settings.from_env(database_url=database)
        base = settings.public_base_url or "http://127.0.0.1:8080/fhir"
        ctx = RequestContext(db=db, settings=settings, base_url=base)
        orgs.create_organization(ctx, org=org)
    typer.echo(f"organisation {id} registered (Organization/{id})")


@org_app.command("list")
def org_list(database: str = DatabaseOption) -> None:
    """Lists the registered organisations."""
    with open_database(database) as db:
        found = orgs.list_organizations(db)
    table = Table("id", "name", "type", "identifiers", "municipalities")
    for o in found:
        table.add_row(
            o.id,
            o.name,
            o.type,
            "\n".join(f"{i.system}|{i.value}" for i in o.identifiers),
            " ".join(o.municipalities),
        )
    Console().print(table)


@agreement_app.command("add")
def agreement_add(
    provider: str = typer.Option(..., "--provider", help="Organisation that discloses"),
    recipient: str = typer.Option(..., "--recipient", help="Organisation that receives"),
    resource_type: list[str] = typer.Option(..., "--resource-type", help="FHIR resource type"),
    category: list[str] = typer.Option(
        [], "--category", help="SYSTEM|CODE narrowing the resource type(s)"
    ),
    purpose: list[str] = typer.Option(..., "--purpose", help=", ".join(purposes_of_use())),
    consent_required: bool = typer.Option(False, "--consent-required"),
    write: bool = typer.Option(False, "--write", help="The recipient may also write"),
    legal_basis: str = typer.Option(..., "--legal-basis", help="Statute, e.g. '1301/2014 §41'"),
    legal_basis_text: str = typer.Option("", "--legal-basis-text"),
    valid_from: str | None = typer.Option(None, "--valid-from", help="YYYY-MM-DD"),
    valid_until: str | None = typer.Option(None, "--valid-until", help="YYYY-MM-DD"),
    database: str = DatabaseOption,
) -> None:
    """Records a draft agreement and prints its id."""
    tokens: list[str | None] = list(category) or [None]
    categories = tuple(svc.parse_category(rt, token) for rt in resource_type for token in tokens)
    terms = svc.AgreementTerms(
        provider=provider,
        recipient=recipient,
        categories=categories,
        purposes=tuple(purpose),
        legal_basis=svc.LegalBasis(legal_basis, legal_basis_text),
        consent_required=consent_required,
        write_allowed=write,
        valid_from=_parse_date(valid_from, "--valid-from"),
        valid_until=_parse_date(valid_until, "--valid-until"),
    )
    with open_database(database) as db:
        created = svc.create_agreement(db, terms=terms, actor=_actor())
    typer.echo(created.id)


@agreement_app.command("approve")
def agreement_approve(
    agreement_id: str = typer.Argument(..., metavar="ID"),
    as_org: str = typer.Option(..., "--as", help="The approving party"),
    database: str = DatabaseOption,
) -> None:
    """Approves the agreement on behalf of one party."""
    with open_database(database) as db:
        result = svc.approve(db, agreement_id, as_org=as_org, actor=_actor())
    typer.echo(f"agreement {result.id} approved by {as_org}: {result.status.value}")


def _status_command(change: Callable[..., svc.Agreement], summary: str) -> Callable[..., None]:
    """The command of one status change that takes an optional reason."""

    def command(
        agreement_id: str = typer.Argument(..., metavar="ID"),
        reason: str = typer.Option("", "--reason"),
        database: str = DatabaseOption,
    ) -> None:
        with open_database(database) as db:
            result = change(db, agreement_id, actor=_actor(), reason=reason)
        typer.echo(f"agreement {result.id}: {result.status.value}")

    command.__doc__ = summary
    return command


for _name, _change, _summary in (
    ("suspend", svc.suspend, "Suspends an active agreement."),
    ("resume", svc.resume, "Resumes a suspended agreement."),
    ("terminate", svc.terminate, "Terminates an agreement for good."),
):
    agreement_app.command(_name)(_status_command(_change, _summary))


@agreement_app.command("list")
def agreement_list(
    party: str | None = typer.Option(None, "--party", help="Only agreements of this party"),
    database: str = DatabaseOption,
) -> None:
    """Lists agreements with their status today."""
    with open_database(database) as db:
        found = svc.list_agreements(db, party=party)
    table = Table("id", "provider", "recipient", "purposes", "status", "valid until")
    for a in found:
        until = a.valid_until.isoformat() if a.valid_until else "-"
        table.add_row(a.id, a.provider, a.recipient, ", ".join(a.purposes), a.status.value, until)
    Console().print(table)


@agreement_app.command("show")
def agreement_show(
    agreement_id: str = typer.Argument(..., metavar="ID"),
    database: str = DatabaseOption,
) -> None:
    """Shows an agreement and its history."""
    with open_database(database) as db:
        a = svc.get_agreement(db, agreement_id)
        history = svc.agreement_history(db, agreement_id)
    categories = ", ".join(
        c.resource_type + (f" ({c.token})" if c.token else "") for c in a.categories
    )
    lines = [
        f"agreement {a.id} (version {a.version})",
        f"  status:           {a.status.value}",
        f"  provider:         {a.provider}",
        f"  recipient:        {a.recipient}",
        f"  categories:       {categories}",
        f"  purposes:         {', '.join(a.purposes)}",
        f"  legal basis:      {a.legal_basis.statute} {a.legal_basis.text}".rstrip(),
        f"  consent required: {'yes' if a.consent_required else 'no'}",
        f"  write allowed:    {'yes' if a.write_allowed else 'no'}",
        f"  valid:            {a.valid_from.isoformat()} to "
        + (a.valid_until.isoformat() if a.valid_until else "open-ended"),
        f"  approvals:        {', '.join(a.approvals) or '-'}",
    ]
    typer.echo("\n".join(lines))
    table = Table("version", "at", "actor", "action", "status", title="history")
    for e in history:
        table.add_row(str(e.version), format_instant(e.at), e.actor, e.action, e.status.value)
    Console().print(table)
