"""`utopia-handler demo`: watch orders flow through the real service and built-in stand-ins.

Everything runs in this process on loopback: the PowerCode, UTOPIA and SMTP stand-ins, the
service itself (waitress + worker, SQLite in a temporary folder), and a sender of realistic
callbacks. At the end it prints what happened to every order.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import httpx
from sqlalchemy import select

from utopia_handler import accounts
from utopia_handler.emulators import Emulators, start_emulators
from utopia_handler.emulators.seed import MISSED_DEMO_ORDER
from utopia_handler.logs import setup_logging
from utopia_handler.report import order_story, test_emails
from utopia_handler.runtime import Runtime, build_runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.settings import load_settings
from utopia_handler.store import queries
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import Order, ReconcileOutcome, ReconcileRun
from utopia_handler.timeutil import utcnow

PLAIN_ORDER = "UIA202611-004217"
UNIT_ORDER = "UIA202611-004218"
UNMAPPED_ORDER = "UIA202611-004219"
EXISTING_CUSTOMER_ORDER = "UIA202611-004220"
GEOCODE_ORDER = "UIA202611-004221"
UNKNOWN_ORDER = "UIA202611-999999"
MISSED_ORDER = MISSED_DEMO_ORDER[0]
RECONCILE_SECONDS = 2
# The demo's routing table: one made-up message UTOPIA might send, routed to a staff e-mail.
ROUTED_MSG = "Project Cancelled"
DEMO_ROUTES = f"""# The demo's settings file: the routing table of UTOPIA messages.
[[messages]]
match = "{ROUTED_MSG}"
action = "notify"
"""


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_environment(emulators: Emulators, data_dir: Path, port: int) -> dict[str, str]:
    """Settings for the demo: the stand-ins, a fresh SQLite file, quick retries, one route."""
    config = data_dir / "demo.toml"
    config.write_text(DEMO_ROUTES, encoding="utf-8")
    return {
        "UTOPIA_HANDLER_CONFIG": str(config),
        **emulators.env(),
        "DATA_DIR": str(data_dir),
        "FLASK_PORT": str(port),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "UTOPIA_CALLBACK_TOKEN": secrets.token_urlsafe(24),
        "EMAIL_SENDER": "utopia-handler@isp.example",
        "EMAIL_RECIPIENTS": "provisioning@isp.example, support@isp.example",
        "TICKET_TEMPLATE_DIR": str(data_dir / "ticket_descriptions"),
        "RETRY_BASE_SECONDS": "0.5",
        "RETRY_MAX_SECONDS": "2",
        "POLL_SECONDS": "0.2",
        # Reconciliation every 2 s, so the missed order is found while you watch.
        "RECONCILE_INTERVAL_SECONDS": str(RECONCILE_SECONDS),
        # The demo serves plain http on loopback; a browser would drop a Secure cookie there.
        "SESSION_COOKIE_SECURE": "false",
    }


def send_demo_callbacks(url: str, token: str) -> list[str]:
    """Send the demo's callbacks; returns one line per delivery with the answer."""
    deliveries = [
        {"event": "Project Update", "orderref": PLAIN_ORDER, "msg": "Project New Order"},
        # The same callback again, at the same moment: stored as a repeat, no second order.
        {"event": "Project Update", "orderref": PLAIN_ORDER, "msg": "Project New Order"},
        {"event": "Project Update", "orderref": UNIT_ORDER, "msg": "Project New Order"},
        {"event": "Project Update", "orderref": UNMAPPED_ORDER, "msg": "Project New Order"},
        {
            "event": "Project Update",
            "orderref": EXISTING_CUSTOMER_ORDER,
            "msg": "Project New Order",
        },
        {"event": "Project Update", "orderref": GEOCODE_ORDER, "msg": "Project New Order"},
        {"event": "Project Update", "orderref": UNKNOWN_ORDER, "msg": "Project New Order"},
        {"event": "Test", "orderref": "UIA202611-000001", "msg": "Test"},
        {"event": "Project Update", "orderref": PLAIN_ORDER, "msg": "Project Install Scheduled"},
        # Routed by the demo's settings file: staff get an e-mail about it.
        {"event": "Project Update", "orderref": UNIT_ORDER, "msg": ROUTED_MSG},
        {"event": "Project Update", "orderref": "UIA202611-004222"},  # no msg: refused, not stored
    ]
    lines: list[str] = []
    with httpx.Client(base_url=url, timeout=10) as client:

        def deliver(body: dict[str, str]) -> str:
            answer = client.post("/api-callback", params={"token": token}, json=body)
            return f"  {body.get('msg', '(no msg)')!r:<30} {body['orderref']:<18} -> {answer.status_code} {answer.text.strip()}"

        with ThreadPoolExecutor(4) as pool:
            lines.extend(pool.map(deliver, deliveries))
        wrong = client.post("/api-callback", params={"token": "wrong-token"}, json=deliveries[0])
        lines.append(
            f"  {'(wrong token)':<30} {PLAIN_ORDER:<18} -> {wrong.status_code} {wrong.text.strip()}"
        )
    return lines


def wait_until_settled(handle: ServiceHandle, timeout: float, *refs: str) -> bool:
    """Wait until the orders `refs` exist, no order is active and no e-mail is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with handle.runtime.store.read() as session:
            known = all(queries.find_order(session, ref) is not None for ref in refs)
            if known and queries.all_work_finished(session):
                return True
        time.sleep(0.2)
    return False


def wait_for_baseline(handle: ServiceHandle, timeout: float) -> ReconcileRun | None:
    """The worker's first good reconciliation (the baseline), once it is recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with handle.runtime.store.read() as session:
            run = session.scalar(
                select(ReconcileRun).where(
                    ReconcileRun.outcome == ReconcileOutcome.OK, ReconcileRun.baseline.is_(True)
                )
            )
        if run is not None:
            return run
        time.sleep(0.1)
    return None


def run_demo(*, stay_up: bool, port: int = 5050, settle_timeout: float = 60.0) -> int:
    """Run the demo; returns the process exit code."""
    data_dir = Path(tempfile.mkdtemp(prefix="utopia-handler-demo-"))
    emulators = start_emulators(seed=True)
    environment = demo_environment(emulators, data_dir, _free_port(port))
    settings = load_settings(environment, dotenv_path=data_dir / ".env")
    setup_logging(settings.log_file, "INFO", to_stdout=False)
    runtime = build_runtime(settings)
    runtime.store.migrate()
    handle = ServiceHandle(runtime).start()
    try:
        # One fault outside, to show a retry: PowerCode answers 503 to the first ticket request.
        emulators.powercode.faults.add("createTicket", "fail", count=1, status=503, retry_after=1)
        click.secho("UTOPIA handler demo", bold=True)
        click.echo(
            f"service:   {handle.url}  (SQLite at {settings.database_url.removeprefix('sqlite:///')})"
        )
        click.echo(
            f"PowerCode stand-in: {emulators.powercode.base_url}   UTOPIA stand-in: {emulators.utopia.base_url}"
        )
        click.echo(f"SMTP stand-in: {emulators.smtp.host}:{emulators.smtp.port}")
        click.echo(
            f"routing:   {ROUTED_MSG!r} -> notify  (settings file {environment['UTOPIA_HANDLER_CONFIG']})"
        )
        demo_password = create_demo_admin(runtime)
        click.echo(
            f"console:   {handle.url}/  log in as {DEMO_ADMIN} with password {demo_password}\n"
        )
        click.secho(
            f"Reconciliation with UTOPIA's order list (every {RECONCILE_SECONDS} s):", bold=True
        )
        baseline = wait_for_baseline(handle, settle_timeout)
        if baseline is None:
            click.echo("  the first reconciliation did not happen in time")
        else:
            click.echo(
                f"  first run, the baseline: the {baseline.new_count} orders UTOPIA lists already "
                "are recorded, not provisioned (their callbacks below provision them)"
            )
        click.secho("\nCallbacks sent (answers as UTOPIA sees them):", bold=True)
        token = environment["UTOPIA_CALLBACK_TOKEN"]
        for line in send_demo_callbacks(handle.url, token):
            click.echo(line)
        # An order whose callback never comes: only reconciliation can find it.
        emulators.utopia.add_order(*MISSED_DEMO_ORDER)
        click.echo(
            f"  {'(no callback ever)':<30} {MISSED_ORDER:<18} -> added to the UTOPIA stand-in only"
        )
        click.echo("\nworking...", nl=False)
        settled = wait_until_settled(handle, settle_timeout, MISSED_ORDER)
        click.echo(" done.\n" if settled else " still busy after the time limit.\n")
        print_report(handle, emulators)
        click.secho("Where to look next:", bold=True)
        click.echo(
            f"  the console:     {handle.url}/  (user {DEMO_ADMIN}, password {demo_password})"
        )
        click.echo(f"  reconciliation:  {handle.url}/reconciliation")
        click.echo(f"  log file:        {settings.log_file}")
        click.echo(
            f"  an order's story: DATABASE_URL={settings.database_url} ./run orders show {UNMAPPED_ORDER}"
        )
        if stay_up:
            click.echo(f"\nThe service stays up at {handle.url} (token {token}). Send your own:")
            click.echo(
                f"  curl -s -X POST '{handle.url}/api-callback?token={token}' "
                f'-d \'{{"orderref": "{PLAIN_ORDER}", "msg": "Project New Order"}}\''
            )
            click.echo("Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                while True:  # timed sleeps, so Ctrl-C is handled promptly (see server.run_forever)
                    time.sleep(0.5)
        return 0 if settled else 1
    finally:
        handle.stop()
        runtime.close()
        emulators.stop()


def print_report(handle: ServiceHandle, emulators: Emulators) -> None:
    """What happened to each order, and the e-mails staff received."""
    click.secho("Orders:", bold=True)
    with handle.runtime.store.read() as session:
        for order in session.scalars(select(Order).order_by(Order.id)):
            for line in order_story(session, order):
                click.echo(line)
            click.echo("")
        tests = test_emails(session)
        if tests:
            click.echo(
                f"Test callbacks: {len(tests)} test e-mail(s) {', '.join(n.state.value for n in tests)}\n"
            )
        waiting = queries.count_orders_by_state(session)
        runs = list(session.scalars(select(ReconcileRun).order_by(ReconcileRun.id)))
    click.secho(f"Reconciliation runs ({len(runs)}):", bold=True)
    for run in runs:
        if run.outcome != ReconcileOutcome.OK:
            click.echo(f"  {run.started_at:%H:%M:%S} {run.outcome.value}: {run.error}")
        elif run.new_refs:
            did = "recorded (baseline)" if run.baseline else "found, no callback"
            click.echo(
                f"  {run.started_at:%H:%M:%S} listed {run.listed_count}, {did}: "
                + ", ".join(run.new_refs)
            )
    quiet = sum(1 for run in runs if run.outcome == ReconcileOutcome.OK and not run.new_refs)
    if quiet:
        click.echo(f"  and {quiet} run(s) that found every listed order known")
    click.echo("")
    click.secho(
        f"E-mails received by the SMTP stand-in ({len(emulators.smtp.messages)}):", bold=True
    )
    for message in emulators.smtp.messages:
        files = [part.get_filename() for part in message.iter_attachments()]
        attached = f"  [attached: {', '.join(str(f) for f in files)}]" if files else ""
        click.echo(f"  {message['Subject']}{attached}")
    click.echo("")
    click.echo(
        "Orders by state: "
        + ", ".join(f"{state.value} {count}" for state, count in sorted(waiting.items()))
    )
    click.echo("")


DEMO_ADMIN = "demo-admin"


def create_demo_admin(runtime: Runtime) -> str:
    """Add the demo's admin user with a fresh random password, and return the password."""
    password = secrets.token_urlsafe(12)
    with runtime.store.write() as session:
        accounts.add_user(session, DEMO_ADMIN, password, Role.ADMIN, utcnow(), actor="demo")
    return password
