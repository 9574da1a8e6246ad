"""The settings table: one declaration from which reading, check-config and the README follow."""

from __future__ import annotations

import subprocess
import sys
import types
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

from utopia_handler.settings import (
    _SECRET_VARIABLES,
    _TABLE_KEYS,
    _VARIABLES,
    Secret,
    Settings,
    describe_settings,
    load_settings,
)
from utopia_handler.settings.table import (
    ARRAY_TABLES,
    README_END,
    README_START,
    TABLE_KEYS,
    VARIABLES,
    readme_section,
    readme_table,
)

README = Path(__file__).resolve().parents[1] / "README.md"
SRC = Path(__file__).resolve().parents[1] / "src"

# Every variable set to a valid value, and every TOML key: what a full installation may write.
FULL_ENV = {
    "PC_URL": "https://pc.example.net",
    "PC_URL_API": "https://pc.example.net:444/api/1/index.php",
    "PC_URL_UAPI": "https://pc.example.net:444/uapi/",
    "PC_API_KEY": "pc-key-7Hq2Lx9Wm4Rt",
    "PC_VERIFY_SSL": "true",
    "PC_CONNECT_TIMEOUT": "4",
    "PC_READ_TIMEOUT": "20",
    "PC_CUST_TAGS": "3,7",
    "SERVICE_PLAN_1GBPS_ID": "164",
    "SERVICE_PLAN_250MBPS_ID": "163",
    "SERVICE_PLAN_BOND_FEE_ID": "172",
    "SERVICE_PLAN_BOND_FEE_QUANTITY": "2",
    "CUSTOMER_PORTAL_PASSWORD": "portal-pass-Ef6Kd9Lz",
    "UTOPIA_API_KEY": "utopia-key-Zk3Pv8Nc1Yd",
    "UTOPIA_URL_ENDPOINT": "https://api.utopiafiber.com/",
    "UTOPIA_NETWORK": "utopia",
    "UTOPIA_NETWORKS": "utopia, bozeman",
    "RECONCILE_ENABLED": "no",
    "RECONCILE_INTERVAL_SECONDS": "600",
    "RECONCILE_ALERT_HOURS": "12",
    "UTOPIA_CONNECT_TIMEOUT": "3",
    "UTOPIA_READ_TIMEOUT": "25",
    "MAIL_SERVER": "relay.example.net",
    "MAIL_PORT": "587",
    "MAIL_SECURITY": "starttls",
    "MAIL_USERNAME": "relay-user",
    "MAIL_PASSWORD": "smtp-pass-Bn3Wq7Rc",
    "EMAIL_SENDER": "Handler <noreply@example.net>",
    "EMAIL_RECIPIENTS": "ops@example.net, billing@example.net",
    "MAIL_TIMEOUT": "15",
    "MAIL_ATTACH_CONTRACT": "no",
    "FLASK_HOST": "10.1.2.3",
    "FLASK_PORT": "5051",
    "WEB_WORKERS": "3",
    "WEB_THREADS": "6",
    "MAX_CALLBACK_BYTES": "2048",
    "SECRET_KEY": "flask-secret-Jr5Tb2Qw8Xe",
    "UTOPIA_CALLBACK_TOKEN": "cb-token-Gm7Vs4Hy1Ua",
    "ALLOW_UNAUTHENTICATED_CALLBACKS": "false",
    "TICKET_TEMPLATE_DIR": "tickets",
    "TICKET_TEMPLATE_FILE": "install.txt",
    "DATABASE_URL": "postgresql://handler:Pg7Passw0rdX@db.internal/handler",
    "LOG_LEVEL": "debug",
    "RETENTION_DAYS": "90",
    "WORKER_CONCURRENCY": "2",
    "RETRY_BASE_SECONDS": "2",
    "RETRY_MAX_SECONDS": "60",
    "RETRY_DEADLINE_HOURS": "1.5",
    "LEASE_SECONDS": "30",
    "POLL_SECONDS": "0.5",
    "RUN_WORKER_IN_SERVE": "off",
    "ADMIN_USER": "admin",
    "ADMIN_PASS_HASH": "$2b$12$" + "Kq8Vx2Lm4Nz6Pr0Ts1Wy3Bc5Df7Gh9Jk" + "Xe5Rt7Yu9Io1Pa3Sd5Fg7",
    "ADMIN_PASS": "first-admin-pass-Qx4",
    "SESSION_COOKIE_SECURE": "true",
    "METRICS_TOKEN": "metrics-token-0123456789",
    "CALLBACK_SIGNING_SECRETS": "whsec_" + "QUJDREVGR0hJSktMTU5PUA==",
    "CALLBACK_ALLOWED_NETWORKS": "203.0.113.0/24",
    "TRUSTED_PROXIES": "127.0.0.1",
    "CALLBACK_RATE_LIMIT": "2.5",
    "CALLBACK_RATE_BURST": "7",
    "CALLBACK_STORE_WAIT_SECONDS": "3",
}
FULL_TOML = """
[plans]
"Business 2 Gbps" = 180
[provisioning]
always_add_services = [{ service = 181, quantity = 3 }]
unmapped_plan = "skip"
tag_ids = [9]
[ticket]
template_dir = "templates"
template_file = "t.txt"
summary = "{{ customer_name }}"
category = 3
ticket_type = 2
status = 1
responsible_user = "Install Team"
responsible_group = 4
customer_viewable = false
message_summary = "{{ msg }}: {{ order_ref }}"
[customer]
tax_zone_id = 2
invoice_preference = "Both"
bill_day = "1"
due_by_days = 15
grace_period_days = 5
[portal]
username = "site_id"
password = "shared"
[[messages]]
match = "Project Cancelled"
action = "hold"
[[messages]]
pattern = "Port(ing)? Complete.*"
action = "note"
"""


def leaf_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every non-dataclass field of Settings by dotted name, with its type."""
    hints = get_type_hints(cls)
    leaves: dict[str, Any] = {}
    for item in fields(cls):
        kind = hints[item.name]
        if isinstance(kind, type) and is_dataclass(kind):
            leaves |= leaf_fields(kind, f"{prefix}{item.name}.")
        else:
            leaves[f"{prefix}{item.name}"] = kind
    return leaves


def matches(value: object, kind: Any) -> bool:
    """Whether a value fits a field's annotation (the forms the schema uses)."""
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        return any(matches(value, option) for option in get_args(kind))
    if origin is Literal:
        return value in get_args(kind)
    if origin is tuple:
        arguments = get_args(kind)
        if not isinstance(value, tuple):
            return False
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return all(matches(item, arguments[0]) for item in value)
        return len(value) == len(arguments) and all(map(matches, value, arguments))
    if kind is float:
        return isinstance(value, float)
    if kind is type(None):
        return value is None
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def value_at(settings: Settings, path: str) -> object:
    value: object = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


@pytest.fixture
def full(tmp_path: Path) -> Settings:
    config = tmp_path / "config.toml"
    config.write_text(FULL_TOML, encoding="utf-8")
    return load_settings(
        {**FULL_ENV, "DATA_DIR": str(tmp_path / "data")},
        config_path=config,
        dotenv_path=tmp_path / "none.env",
    )


def test_the_readme_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")

    assert readme_section() in text, (
        "README.md's settings table differs from the declaration; run "
        "`python -m utopia_handler.settings README.md` and commit the result"
    )
    assert text.count(README_START) == 1 and text.count(README_END) == 1


def test_the_generator_prints_the_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "utopia_handler.settings"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": ""},
    )

    assert printed.stdout.strip() == readme_table()
    assert printed.stderr == ""


def test_every_variable_fills_a_field_and_every_field_is_filled() -> None:
    leaves = leaf_fields(Settings)
    filled = {v.fills for v in VARIABLES if v.fills} | {k.fills for k in TABLE_KEYS}
    filled |= {array.fills for array in ARRAY_TABLES}  # [[messages]], the routing table
    filled.add("provisioning.plans")  # also the free-form [plans] table

    assert filled <= set(leaves), sorted(filled - set(leaves))
    assert set(leaves) - filled == {"sources"}  # the files read, worked out by the loader
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    assert len({(k.table, k.key) for k in TABLE_KEYS}) == len(TABLE_KEYS)


def test_the_old_name_lists_are_derived_from_the_table() -> None:
    assert {v.name for v in VARIABLES if v.secret} == _SECRET_VARIABLES
    assert _SECRET_VARIABLES <= _VARIABLES
    assert "UTOPIA_HANDLER_CONFIG" not in _VARIABLES  # names the TOML file, so not in it
    assert list(_TABLE_KEYS) == ["plans", "provisioning", "ticket", "customer", "portal"]
    assert _TABLE_KEYS["plans"] == frozenset()
    assert _TABLE_KEYS["portal"] == {"username", "password"}


def test_every_variable_and_key_reaches_its_field_with_the_declared_type(
    full: Settings, tmp_path: Path
) -> None:
    for path, kind in leaf_fields(Settings).items():
        assert matches(value_at(full, path), kind), (path, value_at(full, path))
    assert full.web.port == 5051
    assert full.utopia.network == "UTOPIA"
    assert full.utopia.reconciled_networks() == ("UTOPIA", "BOZEMAN")
    assert (full.reconcile.enabled, full.reconcile.interval_seconds) == (False, 600)
    assert full.reconcile.alert_seconds == 12 * 3600
    assert full.worker.retry_deadline_seconds == 1.5 * 3600
    assert full.provisioning.always_services == (181, 172)
    assert full.provisioning.service_quantities == ((172, 2), (181, 3))
    assert full.provisioning.tag_ids == (3, 7)  # the variable beats the [provisioning] key
    assert full.provisioning.ticket.template_dir == Path("tickets")
    assert full.provisioning.portal.password == "shared"
    assert [(r.match, r.pattern, r.action) for r in full.routing.messages] == [
        ("Project Cancelled", None, "hold"),
        (None, "Port(ing)? Complete.*", "note"),
    ]


def test_check_config_masks_every_field_a_secret_variable_fills(full: Settings) -> None:
    shown = dict(describe_settings(full))
    rendered = repr(shown)

    for variable in VARIABLES:
        if variable.secret:
            assert set(shown[variable.fills].split(", ")) == {"********"}, variable.name
            assert FULL_ENV[variable.name] not in rendered
    assert shown["database_url"] == "postgresql://handler:********@db.internal/handler"
    assert not any(isinstance(value, Secret) for value in shown.values())
