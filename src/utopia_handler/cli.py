"""The `utopia-handler` command: parse arguments, then call the same functions the service uses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from utopia_handler.settings import Settings, SettingsError, describe_settings, load_settings
from utopia_handler.store.models import OrderState, Step


def _settings(ctx: click.Context, *, require_runtime: bool = True) -> Settings:
    """Load settings or stop with the one-line reason (exit code 2)."""
    config: Path | None = ctx.obj.get("config")
    try:
        return load_settings(os.environ, config_path=config, require_runtime=require_runtime)
    except SettingsError as problem:
        click.echo(f"configuration error: {problem}", err=True)
        sys.exit(2)


@click.group()
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    help="TOML file with plan mappings and other tables (or UTOPIA_HANDLER_CONFIG).",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """UTOPIA Fiber callbacks in, PowerCode customers, plans, tickets and staff e-mails out."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


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


@cli.command("check-config")
@click.option("--lenient", is_flag=True, help="Only check types and formats, not completeness.")
@click.pass_context
def check_config(ctx: click.Context, lenient: bool) -> None:
    """Validate the settings and print the effective values, secrets masked."""
    settings = _settings(ctx, require_runtime=not lenient)
    for name, value in describe_settings(settings):
        click.echo(f"{name} = {value}")
    click.echo("configuration OK")


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


@orders.command("retry")
@click.argument("order_ref")
@click.option("--from-step", type=click.Choice([s.value for s in Step if s != Step.FINISHED]))
@click.pass_context
def orders_retry(ctx: click.Context, order_ref: str, from_step: str | None) -> None:
    """Queue an order again (after fixing what it waited for)."""
    from utopia_handler.actions import ActionRefused, retry_order
    from utopia_handler.store.db import Store
    from utopia_handler.timeutil import utcnow

    store = Store(_settings(ctx.find_root(), require_runtime=False).database_url)
    try:
        with store.write() as session:
            order = retry_order(
                session, order_ref, utcnow(), Step(from_step) if from_step else None
            )
            click.echo(f"{order.order_ref} queued again at step {order.step.value}")
    except ActionRefused as refusal:
        click.echo(str(refusal), err=True)
        sys.exit(1)
    finally:
        store.close()


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
    from utopia_handler.demo import run_demo

    sys.exit(run_demo(stay_up=not once, port=port))


def main() -> None:
    cli(obj={})
