"""Operator commands: `flask --app webapi db upgrade` and `flask --app webapi buzon add ...`."""

from __future__ import annotations

import click
from flask import Blueprint, current_app

from tasks.store.migrate import apply_migrations

bp = Blueprint("cli", __name__, cli_group=None)


@bp.cli.group("db")
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def upgrade() -> None:
    """Apply the SQL migrations, then the changed function files (needs DATABASE_URL; with Supabase use its
    connection string)."""
    settings = current_app.extensions["campaigns"].settings
    if not settings.database_url:
        raise click.ClickException("DATABASE_URL is not set: migrations need a direct Postgres connection "
                                   "(Supabase: Project Settings > Database > Connection string).")
    applied = apply_migrations(settings.database_url)
    click.echo(f"Applied: {', '.join(applied)}" if applied else "Schema already up to date.")


@bp.cli.group("buzon")
def buzon() -> None:
    """Sender (buzón) credentials."""


@buzon.command("add")
@click.argument("name")
@click.option("--phone-number-id", required=True, help="WhatsApp phone number id of the sender.")
@click.option("--token", envvar="WHATSAPP_ACCESS_TOKEN", prompt=True, hide_input=True,
              help="Access token (or WHATSAPP_ACCESS_TOKEN; prompted when absent, so it stays out of shell history).")
@click.option("--mps", type=click.IntRange(min=1), default=None, help="Messages per second allowed for this number.")
def add_buzon(name: str, phone_number_id: str, token: str, mps: int | None) -> None:
    """Register or update a buzón's credentials."""
    row = current_app.extensions["campaigns"].store.upsert_sender(name, phone_number_id, token, mps)
    click.echo(f"Buzón '{row['buzon']}' registered for phone number id {row['phone_number_id']}.")


@buzon.command("list")
def list_buzones() -> None:
    """List registered buzones (without tokens)."""
    for row in current_app.extensions["campaigns"].store.list_senders():
        click.echo(f"{row['buzon']}\t{row['phone_number_id']}\t{row['messages_per_second'] or 'default'} msg/s")
