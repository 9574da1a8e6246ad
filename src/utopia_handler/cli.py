"""The `utopia-handler` command: parse arguments, then call the same functions the service uses."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from utopia_handler.files import keep_files_private
from utopia_handler.settings import Settings, SettingsError, describe_settings, load_settings
from utopia_handler.store.models import OrderState, Step

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from utopia_handler.store.db import Store


def _settings(ctx: click.Context, *, require_runtime: bool = True) -> Settings:
    """Load settings or stop with the one-line reason (exit code 2)."""
    config: Path | None = ctx.obj.get("config")
    env_file: Path | None = ctx.obj.get("env_file")
    try:
        return load_settings(
            os.environ, config_path=config, dotenv_path=env_file, require_runtime=require_runtime
        )
    except SettingsError as problem:
        click.echo(f"configuration error: {problem}", err=True)
        sys.exit(2)


def cli_actor() -> str:
    """How the audit log names whoever acts with this command: `cli:<OS user name>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid {os.getuid()}"
    return f"cli:{user}"


@click.group()
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    help="TOML file with plan mappings and other tables (or UTOPIA_HANDLER_CONFIG).",
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Read settings from this file instead of ./.env (e.g. /etc/utopia-handler/env).",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None, env_file: Path | None) -> None:
    """UTOPIA Fiber callbacks in, PowerCode customers, plans, tickets and staff e-mails out."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    ctx.obj["env_file"] = env_file


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the callback endpoint and the worker in one process (the default set-up)."""
    from utopia_handler.server import run_forever

    settings = _settings(ctx)
    run_forever(settings, web=True, worker=settings.worker.run_in_serve)


@cli.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run only the worker: claim due orders and e-mails and work on them."""
    from utopia_handler.server import run_forever

    run_forever(_settings(ctx), web=False, worker=True)


@cli.command()
@click.pass_context
def web(ctx: click.Context) -> None:
    """Run only the HTTP side under gunicorn (WEB_WORKERS processes of WEB_THREADS threads)."""
    from utopia_handler.gunicorn_conf import run_web

    run_web(_settings(ctx))


@cli.command("check-config")
@click.option("--lenient", is_flag=True, help="Only check types and formats, not completeness.")
@click.option(
    "--live",
    is_flag=True,
    help="Also ask PowerCode (read-only) how it answers 'no such customer' and 'no services', "
    "and record it for every process.",
)
@click.option(
    "--probe-customer",
    type=click.IntRange(1),
    help="With --live: a PowerCode customer number with no services, to learn that reply too.",
)
@click.pass_context
def check_config(ctx: click.Context, lenient: bool, live: bool, probe_customer: int | None) -> None:
    """Validate the settings and print the effective values, secrets masked."""
    settings = _settings(ctx, require_runtime=not lenient)
    for name, value in describe_settings(settings):
        click.echo(f"{name} = {value}")
    click.echo("configuration OK")
    if live:
        _probe_live(settings, probe_customer)
    elif probe_customer is not None:
        click.echo("--probe-customer needs --live", err=True)
        sys.exit(2)


@cli.command()
@click.option("--send-test", is_flag=True, help="Also send one test e-mail to EMAIL_RECIPIENTS.")
@click.pass_context
def doctor(ctx: click.Context, send_test: bool) -> None:
    """Check the real connections (database, PowerCode, UTOPIA, mail, clock); changes nothing."""
    from utopia_handler.doctor import run_checks

    config: Path | None = ctx.obj.get("config")
    env_file: Path | None = ctx.obj.get("env_file")
    try:
        settings = load_settings(os.environ, config_path=config, dotenv_path=env_file)
    except SettingsError as problem:
        click.echo(f"FAIL settings: {problem}")
        sys.exit(1)
    click.echo("ok   settings: valid")
    checks = run_checks(settings, send_test_email=send_test)
    for check in checks:
        click.echo(check.line())
    failed = [c.name for c in checks if not c.ok]
    if failed:
        click.echo(f"{len(failed)} check(s) failed: {', '.join(failed)}")
        sys.exit(1)
    click.echo("all checks passed")


def _probe_live(settings: Settings, customer_id: int | None) -> None:
    from utopia_handler.clients.errors import OutsideError
    from utopia_handler.probe import probe_powercode
    from utopia_handler.store.db import Store
    from utopia_handler.timeutil import utcnow

    store = Store(settings.database_url)
    try:
        store.migrate()
        report = probe_powercode(settings, store, utcnow(), customer_id)
    except OutsideError as error:
        click.echo(f"PowerCode probe failed, nothing recorded: {error}", err=True)
        sys.exit(1)
    finally:
        store.close()
    for finding in report.findings:
        click.echo(f"powercode probe: {finding}")
    click.echo("PowerCode probe recorded")


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply the database migrations (serve and worker also do this at start)."""
    from utopia_handler.store.db import Store

    store = Store(_settings(ctx.find_root(), require_runtime=False).database_url)
    store.migrate()
    store.close()
    click.echo("database is up to date")


@db.command("backup")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace PATH if it exists.")
@click.pass_context
def db_backup(ctx: click.Context, path: Path, overwrite: bool) -> None:
    """Copy the SQLite database to PATH, safely while the service runs."""
    from utopia_handler.store.backup import Refused, backup_sqlite

    url = _settings(ctx.find_root(), require_runtime=False).database_url
    try:
        report = backup_sqlite(url, path, overwrite=overwrite)
    except Refused as refusal:
        click.echo(f"refused: {refusal}", err=True)
        sys.exit(1)
    click.echo(
        f"backed up {report.orders} orders to {report.path} "
        f"({report.size_bytes} bytes, integrity ok)"
    )


@db.command("restore")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def db_restore(ctx: click.Context, path: Path, yes: bool) -> None:
    """Replace the SQLite database with a backup (stop the services first)."""
    from utopia_handler.store.backup import Refused, restore_sqlite
    from utopia_handler.timeutil import utcnow

    url = _settings(ctx.find_root(), require_runtime=False).database_url
    if not yes:
        click.confirm(f"Replace the database with {path}? (the current one is kept)", abort=True)
    try:
        report = restore_sqlite(url, path, utcnow())
    except Refused as refusal:
        click.echo(f"refused: {refusal}", err=True)
        sys.exit(1)
    if report.saved_aside is not None:
        click.echo(f"the database as it was is saved as {report.saved_aside}")
    click.echo(f"restored {report.orders} orders (schema {report.revision}) from {path}")
    click.echo("start the services again; they bring the schema up to date")


@db.command("copy")
@click.option("--to", "target", required=True, help="URL of a new, empty database.")
@click.option("--from", "source", help="URL to copy from (default: DATABASE_URL).")
@click.pass_context
def db_copy(ctx: click.Context, target: str, source: str | None) -> None:
    """Copy every table into a new, empty database, e.g. from SQLite to PostgreSQL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from utopia_handler.store.backup import Refused, copy_database

    source = source or _settings(ctx.find_root(), require_runtime=False).database_url
    try:
        shown = make_url(target).render_as_string(hide_password=True)
        report = copy_database(source, target)
    except ArgumentError:
        click.echo("refused: --to is not a database URL (postgresql://user@host/dbname)", err=True)
        sys.exit(1)
    except Refused as refusal:
        click.echo(f"refused: {refusal}", err=True)
        sys.exit(1)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or type(error).__name__).splitlines()[0]
        click.echo(f"failed, nothing copied: {reason}", err=True)
        sys.exit(1)
    for table, count in report.rows.items():
        click.echo(f"  {table}: {count} rows")
    click.echo(f"copied to {shown}; set DATABASE_URL to it, then start the services")


@db.command("purge")
@click.option("--days", type=click.IntRange(min=0), help="Use this instead of RETENTION_DAYS.")
@click.pass_context
def db_purge(ctx: click.Context, days: int | None) -> None:
    """Remove raw payloads (personal data) of orders finished more than RETENTION_DAYS ago."""
    from utopia_handler.store.db import Store
    from utopia_handler.store.retention import purge_expired
    from utopia_handler.timeutil import utcnow

    settings = _settings(ctx.find_root(), require_runtime=False)
    keep = settings.retention_days if days is None else days
    store = Store(settings.database_url)
    try:
        report = purge_expired(store, utcnow(), keep)
    finally:
        store.close()
    click.echo(
        f"purged {report.orders} orders finished more than {keep} days ago "
        f"({report.callbacks} callback bodies, {report.notifications} e-mail records)"
    )


@cli.group()
def orders() -> None:
    """See and act on orders."""


@orders.command("list")
@click.option("--state", type=click.Choice([s.value for s in OrderState]))
@click.pass_context
def orders_list(ctx: click.Context, state: str | None) -> None:
    """One line per order, newest first."""
    from utopia_handler.report import all_orders, order_summary
    from utopia_handler.store.db import Store

    store = Store(_settings(ctx.find_root(), require_runtime=False).database_url)
    with store.read() as session:
        for order in all_orders(session, OrderState(state) if state else None):
            click.echo(order_summary(order))
    store.close()


@orders.command("show")
@click.argument("order_ref")
@click.pass_context
def orders_show(ctx: click.Context, order_ref: str) -> None:
    """The whole history of one order."""
    from utopia_handler.report import order_story
    from utopia_handler.store import queries
    from utopia_handler.store.db import Store

    store = Store(_settings(ctx.find_root(), require_runtime=False).database_url)
    with store.read() as session:
        order = queries.find_order(session, order_ref)
        if order is None:
            click.echo(f"no order {order_ref}", err=True)
            sys.exit(1)
        click.echo("\n".join(order_story(session, order)))
    store.close()


def _act_on_order(ctx: click.Context, act: Callable[[Session, str], str]) -> None:
    """Run one action from `utopia_handler.actions` in one transaction, as `cli:<user>`.

    Prints what was done, or the refusal on standard error with exit code 1.
    """
    from utopia_handler.actions import ActionRefused
    from utopia_handler.store.db import Store

    store = Store(_settings(ctx.find_root(), require_runtime=False).database_url)
    try:
        with store.write() as session:
            click.echo(act(session, cli_actor()))
    except ActionRefused as refusal:
        click.echo(str(refusal), err=True)
        sys.exit(1)
    finally:
        store.close()


@cli.group()
def shadow() -> None:
    """Shadow mode: what orders would have sent, and provisioning them for real."""


@shadow.command("report")
@click.pass_context
def shadow_report(ctx: click.Context) -> None:
    """Every order worked on in shadow mode and the writes recorded instead of sent."""
    from sqlalchemy import select

    from utopia_handler.report import STATE_WORDS
    from utopia_handler.store import queries
    from utopia_handler.store.db import Store
    from utopia_handler.store.models import Order

    store = Store(_settings(ctx.find_root(), require_runtime=False).database_url)
    try:
        with store.read() as session:
            orders = session.scalars(select(Order).where(Order.shadow.is_(True)).order_by(Order.id))
            for order in orders:
                click.echo(f"{order.order_ref}  would have ended: {STATE_WORDS[order.state]}")
                for write in queries.shadow_writes(session, order.id):
                    fields = ", ".join(f"{k}={v}" for k, v in write.fields.items())
                    click.echo(f"    {write.step or '-':<16} {write.action}: {fields}")
    finally:
        store.close()


@shadow.command("provision")
@click.argument("order_refs", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every order seen in shadow mode.")
@click.pass_context
def shadow_provision(ctx: click.Context, order_refs: tuple[str, ...], everything: bool) -> None:
    """Provision orders seen in shadow mode for real (they wait while shadow mode is on)."""
    from utopia_handler.actions import provision_shadow_orders
    from utopia_handler.timeutil import utcnow

    if everything == bool(order_refs):
        click.echo("name the orders to provision, or --all (not both)", err=True)
        sys.exit(2)

    def act(session: Session, actor: str) -> str:
        wanted = None if everything else list(order_refs)
        queued = provision_shadow_orders(session, wanted, utcnow(), actor=actor)
        return f"{len(queued)} order(s) queued to be provisioned for real: {', '.join(queued)}"

    _act_on_order(ctx, act)


@orders.command("retry")
@click.argument("order_ref")
@click.option("--from-step", type=click.Choice([s.value for s in Step if s != Step.FINISHED]))
@click.pass_context
def orders_retry(ctx: click.Context, order_ref: str, from_step: str | None) -> None:
    """Queue an order again (after fixing what it waited for)."""
    from utopia_handler.actions import retry_order
    from utopia_handler.timeutil import utcnow

    def act(session: Session, actor: str) -> str:
        step = Step(from_step) if from_step else None
        order = retry_order(session, order_ref, utcnow(), step, actor=actor)
        return f"{order.order_ref} queued again at step {order.step.value}"

    _act_on_order(ctx, act)


@orders.command("resolve")
@click.argument("order_ref")
@click.option("--note", required=True, help="What was done by hand (kept in the audit log).")
@click.pass_context
def orders_resolve(ctx: click.Context, order_ref: str, note: str) -> None:
    """Mark an order resolved: a person completed it by hand (in PowerCode)."""
    from utopia_handler.actions import resolve_order
    from utopia_handler.timeutil import utcnow

    def act(session: Session, actor: str) -> str:
        order = resolve_order(session, order_ref, note, utcnow(), actor=actor)
        return f"{order.order_ref} marked resolved"

    _act_on_order(ctx, act)


@orders.command("ignore")
@click.argument("order_ref")
@click.option("--note", required=True, help="Why nothing is to be done (kept in the audit log).")
@click.pass_context
def orders_ignore(ctx: click.Context, order_ref: str, note: str) -> None:
    """Stop work on an order nothing is to be done for (a retry later goes on where it stopped)."""
    from utopia_handler.actions import ignore_order
    from utopia_handler.timeutil import utcnow

    def act(session: Session, actor: str) -> str:
        order = ignore_order(session, order_ref, note, utcnow(), actor=actor)
        return f"{order.order_ref} ignored; nothing more is done unless someone retries it"

    _act_on_order(ctx, act)


@orders.command("resend-email")
@click.argument("order_ref")
@click.pass_context
def orders_resend_email(ctx: click.Context, order_ref: str) -> None:
    """Queue the order's latest staff e-mail again."""
    from utopia_handler.actions import resend_notification
    from utopia_handler.timeutil import utcnow

    def act(session: Session, actor: str) -> str:
        kind = resend_notification(session, order_ref, utcnow(), actor=actor)
        return f"the {kind} e-mail for {order_ref} is queued again"

    _act_on_order(ctx, act)


@orders.command("site-decision")
@click.argument("order_ref")
@click.argument("decision", type=click.Choice(["new-customer", "same-person"]))
@click.option("--note", required=True, help="How you know (kept in the audit log).")
@click.pass_context
def orders_site_decision(ctx: click.Context, order_ref: str, decision: str, note: str) -> None:
    """Say who lives at a waiting order's site: a new customer there, or the same person."""
    from utopia_handler.actions import decide_site
    from utopia_handler.store.models import SiteDecision
    from utopia_handler.timeutil import utcnow

    def act(session: Session, actor: str) -> str:
        answer = SiteDecision(decision.replace("-", "_"))
        order = decide_site(session, order_ref, answer, note, utcnow(), actor=actor)
        return f"{order.order_ref}: {decision} recorded; queued again at {order.step.value}"

    _act_on_order(ctx, act)


@cli.command()
@click.option(
    "--dry-run",
    is_flag=True,
    help="Say what would be done; change no order and send no e-mail (the runs are recorded, "
    "marked dry run).",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="Instead of reconciling: provision the orders recorded, not provisioned (the first "
    "run's baseline) whose order ref month is DATE's month or later. A ref carries only year and "
    "month (UIA + YYYYMM), so the day is ignored: 2026-11-20 means November 2026 onward.",
)
@click.pass_context
def reconcile(ctx: click.Context, dry_run: bool, since: datetime | None) -> None:
    """Reconcile with UTOPIA's order list now: orders it lists that no callback brought are
    provisioned (the first run only records what is listed). Exit 1 when a list could not be read.
    """
    from utopia_handler import reconcile as reconciliation
    from utopia_handler.logs import setup_logging
    from utopia_handler.runtime import build_runtime
    from utopia_handler.timeutil import utcnow

    settings = _settings(ctx)
    # Its events go to the service's log, beside the worker's runs; the report goes here.
    setup_logging(settings.log_file, settings.log_level, to_stdout=False)
    runtime = build_runtime(settings)
    try:
        runtime.store.migrate()
        if since is not None:
            report = reconciliation.provision_since(
                runtime, since.date(), utcnow(), cli_actor(), dry_run=dry_run
            )
            for line in report.lines():
                click.echo(line)
            if dry_run:
                click.echo("dry run: no order was changed")
            return
        done = reconciliation.reconcile(runtime, utcnow(), dry_run=dry_run)
        if done.not_run:
            click.echo(f"not run: {done.not_run}", err=True)
            sys.exit(1)
        for line in done.lines():
            click.echo(line)
        if not done.read_every_list:
            click.echo(f"{reconciliation.UNREAD} (see above)", err=True)
            sys.exit(1)
    finally:
        runtime.close()


@orders.command("message-retry")
@click.argument("order_ref")
@click.argument("action_id", type=int)
@click.pass_context
def orders_message_retry(ctx: click.Context, order_ref: str, action_id: int) -> None:
    """Queue a routed message's action again (its id is in `orders show`)."""
    from utopia_handler.actions import retry_message_action
    from utopia_handler.timeutil import utcnow

    def act(session: Session, actor: str) -> str:
        action = retry_message_action(session, order_ref, action_id, utcnow(), actor=actor)
        return f"{order_ref}: {action.action.value} for {action.msg!r} queued again"

    _act_on_order(ctx, act)


@orders.command("message-close")
@click.argument("order_ref")
@click.argument("action_id", type=int)
@click.option("--note", required=True, help="What was done by hand, or why nothing is to be done.")
@click.pass_context
def orders_message_close(ctx: click.Context, order_ref: str, action_id: int, note: str) -> None:
    """Close a routed message's action: done by hand, or nothing is to be done."""
    from utopia_handler.actions import close_message_action
    from utopia_handler.timeutil import utcnow

    def act(session: Session, actor: str) -> str:
        action = close_message_action(session, order_ref, action_id, note, utcnow(), actor=actor)
        return f"{order_ref}: {action.action.value} for {action.msg!r} closed"

    _act_on_order(ctx, act)


# Console users -----------------------------------------------------------------------------------

ROLE_CHOICE = click.Choice(["viewer", "operator", "admin"])


def _read_password() -> str:
    """A new password from a hidden prompt (twice), or one line of standard input when piped.

    Never an argument: arguments end up in shell history and in `ps` for every user to read.
    """
    if sys.stdin.isatty():
        password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    return sys.stdin.readline().rstrip("\r\n")


def _users_store(ctx: click.Context) -> Store:
    from utopia_handler.store.db import Store

    store = Store(_settings(ctx.find_root(), require_runtime=False).database_url)
    store.migrate()  # the first user is often added before the service first starts
    return store


def _change_user(ctx: click.Context, change: Callable[[Session], str]) -> None:
    from utopia_handler.accounts import AccountError

    store = _users_store(ctx)
    try:
        with store.write() as session:
            click.echo(change(session))
    except AccountError as problem:
        click.echo(f"refused: {problem}", err=True)
        sys.exit(1)
    finally:
        store.close()


@cli.group()
def users() -> None:
    """Console users: add, list, disable, enable, change role or password."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, required=True, help="viewer, operator or admin.")
@click.pass_context
def users_add(ctx: click.Context, name: str, role: str) -> None:
    """Add a console user; the password is read from a hidden prompt or standard input."""
    from utopia_handler.accounts import add_user
    from utopia_handler.store.console_models import Role
    from utopia_handler.timeutil import utcnow

    password = _read_password()

    def change(session: Session) -> str:
        user = add_user(session, name, password, Role(role), utcnow(), actor=cli_actor())
        return f"user {user.name} added as {user.role.value}"

    _change_user(ctx, change)


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """One line per user: name, role, active or disabled, last log-in."""
    from utopia_handler.accounts import list_users

    store = _users_store(ctx)
    try:
        with store.read() as session:
            for user in list_users(session):
                status = "disabled" if user.disabled else "active"
                last = f"{user.last_login_at:%Y-%m-%d %H:%M} UTC" if user.last_login_at else "never"
                click.echo(f"{user.name:<24} {user.role.value:<9} {status:<9} last log-in {last}")
    finally:
        store.close()


@users.command("disable")
@click.argument("name")
@click.pass_context
def users_disable(ctx: click.Context, name: str) -> None:
    """Disable a user and end their sessions at once."""
    from utopia_handler.accounts import set_disabled
    from utopia_handler.timeutil import utcnow

    _change_user(
        ctx,
        lambda session: (
            f"user {set_disabled(session, name, True, utcnow(), actor=cli_actor()).name} "
            "disabled; their sessions have ended"
        ),
    )


@users.command("enable")
@click.argument("name")
@click.pass_context
def users_enable(ctx: click.Context, name: str) -> None:
    """Let a disabled user log in again."""
    from utopia_handler.accounts import set_disabled
    from utopia_handler.timeutil import utcnow

    _change_user(
        ctx,
        lambda session: (
            f"user {set_disabled(session, name, False, utcnow(), actor=cli_actor()).name} enabled"
        ),
    )


@users.command("set-role")
@click.argument("name")
@click.argument("role", type=ROLE_CHOICE)
@click.pass_context
def users_set_role(ctx: click.Context, name: str, role: str) -> None:
    """Change a user's role; their sessions end, the new role applies from the next log-in."""
    from utopia_handler.accounts import set_role
    from utopia_handler.store.console_models import Role
    from utopia_handler.timeutil import utcnow

    _change_user(
        ctx,
        lambda session: (
            f"user {set_role(session, name, Role(role), utcnow(), actor=cli_actor()).name} is now "
            f"{role}; their sessions have ended"
        ),
    )


@users.command("set-password")
@click.argument("name")
@click.pass_context
def users_set_password(ctx: click.Context, name: str) -> None:
    """Give a user a new password (hidden prompt or standard input); their sessions end."""
    from utopia_handler.accounts import set_password
    from utopia_handler.timeutil import utcnow

    password = _read_password()
    _change_user(
        ctx,
        lambda session: (
            f"password of {set_password(session, name, password, utcnow(), actor=cli_actor()).name}"
            " changed; their sessions have ended"
        ),
    )


@cli.command("import-old")
@click.argument("path", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--dry-run", is_flag=True, help="Print what would be imported; write nothing.")
@click.pass_context
def import_old(ctx: click.Context, path: Path, dry_run: bool) -> None:
    """Bring the old handler's users, failed orders and ticket template over from its folder PATH.

    Also checks its .env with this handler's settings loader and says what means something else
    here and what is missing. Running it again imports nothing twice.
    """
    from utopia_handler.import_old.files import read_old_installation
    from utopia_handler.import_old.importer import database_missing, report_lines, run_import
    from utopia_handler.store.db import Store
    from utopia_handler.tickets import TicketRenderer
    from utopia_handler.timeutil import utcnow

    settings = _settings(ctx.find_root(), require_runtime=False)
    old = read_old_installation(path.resolve())
    # Only to check that an imported template renders; the template file is never read.
    renderer = TicketRenderer(Path(os.devnull), settings.provisioning.ticket.summary)
    url = settings.database_url
    store = None if dry_run and database_missing(url) else Store(url)
    try:
        plan = run_import(store, old, renderer, utcnow(), dry_run=dry_run)
    finally:
        if store is not None:
            store.close()
    for line in report_lines(plan, dry_run=dry_run):
        click.echo(line)


@cli.command()
@click.option("--powercode-port", default=8444, show_default=True)
@click.option("--utopia-port", default=8445, show_default=True)
@click.option("--smtp-port", default=8025, show_default=True)
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to every API call.")
def emulate(powercode_port: int, utopia_port: int, smtp_port: int, latency: float) -> None:
    """Run the PowerCode, UTOPIA and SMTP stand-ins, seeded with made-up orders."""
    from utopia_handler.emulators import serve_forever, start_emulators

    emulators = start_emulators(
        seed=True,
        latency=latency,
        powercode_port=powercode_port,
        utopia_port=utopia_port,
        smtp_port=smtp_port,
    )
    click.echo("Stand-ins running. Point the service at them with:")
    for name, value in emulators.env().items():
        click.echo(f"  {name}={value}")
    click.echo("Seeded orders: " + ", ".join(sorted(emulators.utopia.orders)))
    click.echo("Ctrl-C to stop.")
    serve_forever(emulators)


@cli.command()
@click.option("--once", is_flag=True, help="Exit after the report instead of staying up.")
@click.option("--port", default=5050, show_default=True, help="Port for the service (0: any free).")
def demo(once: bool, port: int) -> None:
    """Start the stand-ins and the service on SQLite, send sample orders, report what happened."""
    from utopia_handler.harness.demo import run_demo

    sys.exit(run_demo(stay_up=not once, port=port))


@cli.command()
@click.option("--orders", default=500, show_default=True, help="How many orders to send.")
@click.option("--kills", default=20, show_default=True, help="How many times to SIGKILL serve.")
@click.option("--seed", default=1, show_default=True, help="Random seed (same seed, same plan).")
@click.option("--duration", default=900.0, show_default=True, help="Time cap in seconds.")
@click.option("--database-url", help="An empty database to use instead of a temporary SQLite.")
@click.option(
    "--keep",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the run's folder (logs, SQLite file) here.",
)
def chaos(
    orders: int, kills: int, seed: int, duration: float, database_url: str | None, keep: Path | None
) -> None:
    """Send orders while injecting faults and SIGKILLing the service; count what was lost or doubled.

    Exits 1 unless no order was lost and no customer or service was created twice.
    """
    from utopia_handler.harness.chaos import ChaosOptions, run_chaos

    options = ChaosOptions(
        orders=orders,
        kills=kills,
        seed=seed,
        duration=duration,
        database_url=database_url,
        workdir=keep,
    )
    report = run_chaos(options, echo=click.echo)
    for line in report.lines():
        click.echo(line)
    sys.exit(0 if report.ok else 1)


@cli.command()
@click.argument("site_id")
@click.pass_context
def site(ctx: click.Context, site_id: str) -> None:
    """Print what UTOPIA and PowerCode say about SITE_ID (the console's site panel, as text)."""
    from utopia_handler.site_panel import SiteLookup, panel_text

    if not site_id.strip().isdigit():
        click.echo("SITE_ID must be UTOPIA's numeric site id", err=True)
        sys.exit(2)
    lookup = SiteLookup.from_settings(_settings(ctx))
    try:
        click.echo(panel_text(lookup.panel(site_id)))
    finally:
        lookup.close()


# Exit statuses of `subscriber`: documented in its help and in README.
EXIT_REFUSED, EXIT_STILL_RUNNING, EXIT_WAITS_FOR_PERSON = 1, 3, 4


@cli.command()
@click.argument("action", type=click.Choice(["suspend", "unsuspend", "change-speed", "cancel"]))
@click.argument("order_ref")
@click.option("--note", required=True, help="Why (kept with the action and in the audit log).")
@click.option("--cid", default="", help="UTOPIA's customer id, when UTOPIA does not give it.")
@click.option("--service", "service_id", type=int, help="change-speed: the new PowerCode service.")
@click.option(
    "--product",
    default="",
    help="change-speed: UTOPIA's product id (default: the speed mapping's for --service).",
)
@click.option("--date", "issue_date", default="", help="YYYY-MM-DD (cancel: required).")
@click.option("--yes", is_flag=True, help="Do not ask; queue it at once.")
@click.option("--dry-run", is_flag=True, help="Show the plan; send nothing.")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0, 600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for a running worker to finish it.",
)
@click.pass_context
def subscriber(
    ctx: click.Context,
    action: str,
    order_ref: str,
    note: str,
    cid: str,
    service_id: int | None,
    product: str,
    issue_date: str,
    yes: bool,
    dry_run: bool,
    wait_seconds: float,
) -> None:
    """Suspend, unsuspend, change the speed of or cancel an order's subscriber, in UTOPIA and
    PowerCode together.

    Shows what will be sent and asks (unless --yes), then queues the action as durable work.
    With a worker running it waits up to --wait seconds for it; with none, it runs the action
    here. Exit status: 0 done; 1 refused (bad input, a problem in the plan, not confirmed);
    2 usage error; 3 queued and still running (a worker goes on with it); 4 waits for a person
    (the console's order page says why).
    """
    import socket

    from utopia_handler.lifecycle import ActionRefused
    from utopia_handler.runtime import build_runtime
    from utopia_handler.store.models import MessageActionState
    from utopia_handler.subscriber import SubscriberAction, plan_action
    from utopia_handler.subscriber_work import queue_action, run_or_wait
    from utopia_handler.timeutil import utcnow

    if not note.strip():
        click.echo("refused: a note is required", err=True)
        sys.exit(EXIT_REFUSED)
    actor = f"cli:{getpass.getuser()}"
    runtime = build_runtime(_settings(ctx))
    try:
        runtime.store.migrate()
        try:
            plan = plan_action(
                runtime,
                order_ref,
                SubscriberAction(action),
                typed_cid=cid,
                service_id=service_id,
                product=product,
                issue_date=issue_date,
                note=note,
                actor=actor,
            )
        except LookupError as missing:
            click.echo(f"refused: {missing}", err=True)
            sys.exit(EXIT_REFUSED)
        for line in plan.lines():
            click.echo(line)
        if dry_run:
            click.echo("dry run: nothing was sent")
            return
        if plan.problems:
            click.echo("refused: the plan cannot run (see above)", err=True)
            sys.exit(EXIT_REFUSED)
        if not yes and not click.confirm("Send this?", default=False):
            click.echo("not sent", err=True)
            sys.exit(EXIT_REFUSED)
        try:
            with runtime.store.write() as session:
                queued = queue_action(
                    session, plan, note, actor, utcnow(), shadow=runtime.settings.shadow_mode
                )
                action_id = queued.id
        except ActionRefused as refused:
            click.echo(f"refused: {refused}", err=True)
            sys.exit(EXIT_REFUSED)
        click.echo(f"queued as subscriber action {action_id}")
        owner = f"cli:{socket.gethostname()}:{os.getpid()}"
        final = run_or_wait(runtime, action_id, wait_seconds, owner)
        for step in final.steps:
            mark = "done" if step.get("done") else "not done"
            click.echo(f"  {step['name']}: {step.get('detail') or mark}")
        if final.state == MessageActionState.DONE:
            click.echo("done: UTOPIA and PowerCode are in step")
            return
        if final.state == MessageActionState.PENDING:
            click.echo(f"still running: {final.detail or 'queued for the worker'}")
            sys.exit(EXIT_STILL_RUNNING)
        click.echo(f"waits for a person: {final.detail}")
        sys.exit(EXIT_WAITS_FOR_PERSON)
    finally:
        runtime.close()


def main() -> None:
    """The `utopia-handler` command."""
    keep_files_private()
    cli(obj={})
