"""`utopia-handler import-old PATH`: the old handler's users, failed orders, ticket template and .env.

The samples in tests/fixtures/old_handler are made up (see tests/fixtures/README.md); the old
handler's files were never published, so the readers are tried on other shapes here too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from tests.conftest import FIXTURES
from tests.console.conftest import log_in
from tests.reliability.privacy_watch import watch_secret
from utopia_handler import actions, config_store
from utopia_handler.app import create_app
from utopia_handler.cli import cli
from utopia_handler.import_old.importer import translate_template
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.console_models import AuditEntry, ConfigKind, ConfigVersion, Role, User
from utopia_handler.store.models import Notification, Order, OrderState, Step
from utopia_handler.timeutil import utcnow

OLD = FIXTURES / "old_handler"
# The old .env's secrets: never printed by the report, never logged or stored (privacy watch).
OLD_SECRETS = (
    "9f3c1e7a5b2d4f6e8a0c1b3d5e7f9a2c",
    "utp_live_4b8e2a6c9d1f3e5a7b9c0d2e4f6a8b1c",
    "Welcome2Fiber!",
    "fiber-2022-key",
)
OLD_PASSWORDS = {"dana.whitfield": "dana-old-console-2023", "admin": "admin-old-handler-2022"}
A_BCRYPT_HASH = "$2b$10$H/KQwxEzvpwyMjOTp/Ev0uX02haUplT3u8ge3CEFnPKhWXoPVRn9q"


@pytest.fixture
def run(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)  # no stray .env from the working folder
    watch_secret(*OLD_SECRETS)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=base_env, obj={})

    return invoke


def _counts(runtime: Runtime) -> dict[str, int]:
    with runtime.store.read() as session:
        return {
            model.__name__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (User, Order, ConfigVersion, AuditEntry, Notification)
        }


def _order(runtime: Runtime, ref: str) -> Order | None:
    with runtime.store.read() as session:
        return queries.find_order(session, ref)


def test_users_failed_orders_and_the_template_come_over(
    run: Callable[..., Result], runtime: Runtime
) -> None:
    result = run("import-old", str(OLD))
    assert result.exit_code == 0, result.output
    out = result.output

    with runtime.store.read() as session:
        roles = {user.name: user.role for user in session.scalars(select(User))}
    # "may edit config" makes an admin; ADMIN_USER of the old .env comes over as an admin too.
    assert roles == {"dana.whitfield": Role.ADMIN, "sam.ortega": Role.OPERATOR, "admin": Role.ADMIN}
    assert "not imported: 'Lee Park': a user name is 1 to 64" in out
    assert "temp.install: the password in users.json is not a bcrypt hash" in out
    assert "install-crew-2024" not in out

    waiting = _order(runtime, "UIA202502-011873")
    assert waiting is not None and waiting.state == OrderState.WAITING
    assert waiting.reason is not None
    assert (
        "powercode_create_customer: PowerCode createCustomer failed: statusCode 12"
        in waiting.reason
    )
    assert "retried 0 times there" in waiting.reason
    # Two entries about one order: the last one counts, and the count is kept.
    twice = _order(runtime, "UIA202503-001562")
    assert twice is not None and twice.state == OrderState.WAITING
    assert twice.site_id == "204511"
    assert twice.reason is not None
    assert "connect timeout=30 (retried 2 times there" in twice.reason
    assert "2 entries in failed_orders.json" in twice.reason

    for ref, by, note in (
        ("UIA202502-012044", "dana.whitfield", "Created PC#4411 by hand with the 250 Mbps plan"),
        ("UIA202503-002210", "sam.ortega", "Quantity set to 1 in PowerCode"),  # nested format
    ):
        resolved = _order(runtime, ref)
        assert resolved is not None and resolved.state == OrderState.DONE
        assert resolved.resolved_by_hand and resolved.step == Step.FINISHED
        assert resolved.reason is not None
        assert f"resolved by hand by {by} in the old handler" in resolved.reason
        assert note in resolved.reason

    for bad in ("TEST-ORDER-1", "uia202503-00177"):
        assert f"not imported: '{bad}': not a UTOPIA order ref" in out
        assert _order(runtime, bad) is None
    assert "not imported: (no order ref): 1 entry names no order" in out

    with runtime.store.read() as session:
        [template] = config_store.history(session, ConfigKind.TICKET_TEMPLATE)
        emails = session.scalar(select(func.count()).select_from(Notification))
        actions_done = sorted(
            entry.action
            for entry in session.scalars(select(AuditEntry).where(AuditEntry.actor == "import-old"))
        )
    source = template.value["source"]
    assert source.count("{{ customer_name }}") == 2 and "{customer_name}" not in source.replace(
        "{{ customer_name }}", ""
    )
    assert template.created_by == "import-old"
    assert template.note == (
        "from the old handler: new_desc.txt; last edited by dana.whitfield at 2025-01-21 15:42:07"
    )
    assert "{customer_name} -> {{ customer_name }} (2 places)" in out
    assert emails == 0  # staff knew of these failures: importing them e-mails nobody
    assert actions_done == (
        ["import_failed_order"] * 4 + ["import_old", "save_ticket_template"] + ["user_add"] * 3
    )
    assert out.rstrip().endswith("imported: 8; here already: 0; not imported: 5")

    # A waiting order is retried like any other: from the contract lookup, as a new run.
    with runtime.store.write() as session:
        retried = actions.retry_order(session, "UIA202502-011873", utcnow(), actor="test")
        assert (retried.state, retried.step) == (OrderState.IN_PROGRESS, Step.LOOKUP_CONTRACT)


def test_a_second_run_imports_nothing_twice(run: Callable[..., Result], runtime: Runtime) -> None:
    assert run("import-old", str(OLD)).exit_code == 0
    before = _counts(runtime)
    again = run("import-old", str(OLD))
    assert again.exit_code == 0, again.output
    assert _counts(runtime) == before
    assert "here already: dana.whitfield: a user of that name exists (admin)" in again.output
    assert "here already: UIA202502-011873: known already (waiting)" in again.output
    assert "here already: new_desc.txt: as version 1" in again.output
    assert again.output.rstrip().endswith("imported: 0; here already: 8; not imported: 5")


def test_an_imported_bcrypt_user_logs_in_and_sees_the_waiting_order(
    run: Callable[..., Result], make_runtime: Callable[..., Runtime]
) -> None:
    runtime = make_runtime(SESSION_COOKIE_SECURE="false")  # the test client speaks plain http
    assert run("import-old", str(OLD)).exit_code == 0
    app = create_app(runtime)
    with runtime.store.read() as session:
        old_hash = session.scalars(select(User.password_hash).where(User.name == "dana.whitfield"))
        assert next(iter(old_hash)).startswith("$2b$12$")  # kept as it was

    dana = app.test_client()
    assert log_in(dana, "dana.whitfield", "wrong-password-for-dana").status_code == 401
    assert log_in(dana, "dana.whitfield", OLD_PASSWORDS["dana.whitfield"]).status_code == 303
    assert dana.get("/settings").status_code == 200  # an admin
    with runtime.store.read() as session:
        users = {u.name: u for u in session.scalars(select(User))}
    assert users["dana.whitfield"].password_hash.startswith("$argon2id$")  # upgraded at login
    assert log_in(app.test_client(), "admin", OLD_PASSWORDS["admin"]).status_code == 303

    waiting = _order(runtime, "UIA202502-011873")
    assert waiting is not None
    page = dana.get(f"/orders/{waiting.id}").get_data(as_text=True)
    assert "username already in use" in page  # the old message, in the reason
    assert "import-old" in page  # the audit row, in the timeline
    listed = dana.get("/orders?state=waiting").get_data(as_text=True)
    assert "UIA202502-011873" in listed and "UIA202503-001562" in listed


def test_the_env_report_says_what_changes_meaning_and_what_is_missing(
    run: Callable[..., Result], runtime: Runtime
) -> None:
    out = run("import-old", str(OLD)).output
    env = out[out.index(".env (checked with this handler's settings loader") :]
    changed, _, rest = env.partition("  missing:")
    missing, _, unused = rest.partition("  not read by this handler:")
    for expected in (
        "PC_URL 'https://powercode.isp.example' names no port: it means "
        "https://powercode.isp.example:444",
        "silently gave it the 250 Mbps plan (service 163)",
        "each is added with quantity 1; the old handler sent 5",
        "SERVICE_PLAN_BOND_FEE_ID=172: added once per order",
        "SERVICE_PLAN_BOND_FEE_QUANTITY=5",
        "ticket fields: the old .env had none; this handler sends category 54, ticket type 21",
        "createCustomer now also sends tax zone 1",
        "PC_VERIFY_SSL=false",
        "FLASK_HOST=0.0.0.0",
        "ADMIN_USER: creates the first admin only while the database has no user",
    ):
        assert expected in changed, expected
    assert "UTOPIA_CALLBACK_TOKEN: is not set" in missing
    assert "SECRET_KEY: is shorter than 16 characters" in missing
    assert "TRUSTED_PROXIES: not set" in missing
    assert "FLASK_DEBUG (debug mode is never on here)" in unused
    assert "LOG_FILE_NAME" in unused
    for secret in OLD_SECRETS:
        assert secret not in out
    assert "$2b$12$19ByaI" not in out  # nor a password hash


def test_a_dry_run_writes_nothing(
    run: Callable[..., Result], base_env: dict[str, str], make_runtime: Callable[..., Runtime]
) -> None:
    data_dir = Path(base_env["DATA_DIR"])
    first = run("import-old", str(OLD), "--dry-run")
    assert first.exit_code == 0, first.output
    assert "(dry run: nothing is written)" in first.output
    assert "would import: dana.whitfield: admin" in first.output
    assert "the database does not exist yet" in first.output
    assert first.output.rstrip().endswith("would import: 8; here already: 0; not imported: 5")
    assert not data_dir.exists()  # not even an empty database file

    runtime = make_runtime()  # a database now, migrated and empty
    before = _counts(runtime)
    again = run("import-old", str(OLD), "--dry-run")
    assert again.exit_code == 0, again.output
    assert "would import: UIA202502-011873: waits for a person" in again.output
    assert _counts(runtime) == before == dict.fromkeys(before, 0)


def _write(folder: Path, name: str, content: object) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content, indent=2)
    path.write_text(text, encoding="utf-8")


def test_other_shapes_of_the_files_are_read_too(
    run: Callable[..., Result], runtime: Runtime, tmp_path: Path
) -> None:
    old = tmp_path / "old-install"
    # Users as a list under "users", other key names, unknown keys, a missing hash.
    users = {
        "version": 2,
        "users": [
            {"username": "Kim.Lee", "hash": A_BCRYPT_HASH, "is_admin": "yes", "theme": "dark"},
            {"user": "pat", "pw_hash": A_BCRYPT_HASH, "active": False},
            {"name": "no.hash", "can_view_config": True},
        ],
    }
    # Failed orders in a data folder, as a dict keyed by order ref, with other key names.
    failures = {
        "UIA202504-000101": {
            "error": "createTicket refused: statusCode 7",
            "attempts": "4",
            "status": "resolved",
            "notes": "ticket made by hand",
            "extra": {"ignored": True},
        },
        "UIA202504-000102": {"failure": "tags"},
    }
    _write(old, "users.json", users)
    _write(old, "data/failed_orders.json", failures)
    # One template in this handler's syntax already, one naming a variable that does not exist;
    # who edited them is in a folder-wide .meta.json.
    _write(old, "ticket_descriptions/new_desc.txt", "<p>Hi {{ first_name }}</p>")
    _write(old, "ticket_descriptions/welcome.txt", "<p>Plan: {plan_name}</p>")
    _write(old, "ticket_descriptions/.meta.json", {"new_desc.txt": {"edited_by": "kim.lee"}})

    result = run("import-old", str(old))
    assert result.exit_code == 0, result.output
    out = result.output
    with runtime.store.read() as session:
        users_here = {u.name: (u.role, u.disabled) for u in session.scalars(select(User))}
        [template] = config_store.history(session, ConfigKind.TICKET_TEMPLATE)
    assert users_here == {"kim.lee": (Role.ADMIN, False), "pat": (Role.OPERATOR, True)}
    assert "not imported: no.hash: no password hash in users.json" in out

    resolved = _order(runtime, "UIA202504-000101")
    assert resolved is not None and resolved.resolved_by_hand
    assert resolved.reason is not None
    assert "ticket made by hand" in resolved.reason and "retried 4 times" in resolved.reason
    bare = _order(runtime, "UIA202504-000102")
    assert bare is not None and bare.state == OrderState.WAITING
    assert bare.reason is not None and "tags: (no message) (retries not recorded)" in bare.reason

    assert template.value["source"] == "<p>Hi {{ first_name }}</p>"
    assert template.note == "from the old handler: new_desc.txt; last edited by kim.lee"
    assert "kept as written: it uses this handler's {{ }} syntax already" in out
    assert "not imported: welcome.txt: it does not render here" in out
    assert "'plan_name' is undefined" in out
    assert "failed orders (data/failed_orders.json)" in out
    assert ".env (not found): nothing to compare" in out


def test_unreadable_files_and_refused_values_are_reported(
    run: Callable[..., Result], runtime: Runtime, tmp_path: Path
) -> None:
    old = tmp_path / "old-install"
    shutil.copytree(OLD, old)
    _write(old, "failed_orders.json", '[{"orderref": "UIA202502-011873",')
    env = (old / ".env").read_text(encoding="utf-8")
    env = env.replace("MAIL_PORT=25", "MAIL_PORT=twenty-five").replace(
        "UTOPIA_URL_ENDPOINT=https://api.utopiafiber.com", "UTOPIA_URL_ENDPOINT=api.utopiafiber"
    )
    # ADMIN_PASS in plain text instead of the hash: hashed with argon2id, never shown.
    env = "\n".join(
        "ADMIN_PASS=a-plain-old-admin-password" if line.startswith("ADMIN_PASS_HASH") else line
        for line in env.splitlines()
    )
    _write(old, ".env", env)

    result = run("import-old", str(old))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "problem: failed_orders.json is not valid JSON (line 1" in out
    refused = out[out.index("  refused by the loader:") :]
    assert "MAIL_PORT (in .env): 'twenty-five' is not a whole number" in refused
    assert "UTOPIA_URL_ENDPOINT (in .env)" in refused
    assert _order(runtime, "UIA202502-011873") is None
    assert "imported: dana.whitfield" in out  # the other files still come over
    assert "imported: admin: admin" in out and "a-plain-old-admin-password" not in out
    with runtime.store.read() as session:
        admin = session.scalars(select(User).where(User.name == "admin")).one()
    assert admin.password_hash.startswith("$argon2id$")


def test_a_template_saved_in_the_console_is_not_replaced(
    run: Callable[..., Result], runtime: Runtime
) -> None:
    with runtime.store.write() as session:
        config_store.save_ticket_template(
            session, runtime.tickets, "<p>{{ customer_name }}, welcome</p>", "alice", utcnow()
        )
    out = run("import-old", str(OLD)).output
    assert "not imported: new_desc.txt: a ticket template was saved in the console here" in out
    with runtime.store.read() as session:
        versions = config_store.history(session, ConfigKind.TICKET_TEMPLATE)
    assert [v.created_by for v in versions] == ["alice"]


def test_old_placeholders_are_written_in_this_handlers_syntax() -> None:
    source, words = translate_template("<p>{customer_name} at {address}, {customer_name}</p>")
    assert source == "<p>{{ customer_name }} at {{ address }}, {{ customer_name }}</p>"
    assert words == (
        "placeholders translated: {customer_name} -> {{ customer_name }} (2 places), "
        "{address} -> {{ address }}"
    )
    assert translate_template("<p>plain</p>") == ("<p>plain</p>", "no placeholders")
