"""Settings: where values come from, how legacy .env files map, and how mistakes are reported."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from utopia_handler.settings import (
    PlanMapping,
    Secret,
    Settings,
    SettingsError,
    describe_settings,
    load_settings,
)

PC_KEY = "pc-key-7Hq2Lx9Wm4Rt"
UTOPIA_KEY = "utopia-key-Zk3Pv8Nc1Yd"
FLASK_SECRET = "flask-secret-Jr5Tb2Qw8Xe"
CALLBACK_TOKEN = "cb-token-Gm7Vs4Hy1Ua"
PORTAL_PASSWORD = "portal-pass-Ef6Kd9Lz"
MAIL_PASSWORD = "smtp-pass-Bn3Wq7Rc"

# A .env as the old handler's operators wrote it, plus the one new required value.
LEGACY_DOTENV = f"""
PC_API_KEY={PC_KEY}
PC_URL=https://pc.example.net:444
PC_URL_API=https://pc.example.net:444/api/1/index.php
PC_URL_UAPI=https://pc.example.net:444/uapi/
PC_VERIFY_SSL=true
PC_CUST_TAGS=3, 7,
SERVICE_PLAN_1GBPS_ID=164
SERVICE_PLAN_250MBPS_ID=163
SERVICE_PLAN_BOND_FEE_ID=172
CUSTOMER_PORTAL_PASSWORD={PORTAL_PASSWORD}
UTOPIA_API_KEY={UTOPIA_KEY}
UTOPIA_URL_ENDPOINT=https://api.utopiafiber.com
MAIL_SERVER=relay.example.net
MAIL_PORT=25
EMAIL_SENDER=noreply@example.net
EMAIL_RECIPIENTS=ops@example.net, billing@example.net
FLASK_HOST=10.1.2.3
FLASK_PORT=5050
SECRET_KEY={FLASK_SECRET}
TICKET_TEMPLATE_DIR=ticket_descriptions
TICKET_TEMPLATE_FILE=new_desc.txt
UTOPIA_CALLBACK_TOKEN={CALLBACK_TOKEN}
"""

FULL_TOML = """
[plans]
"250 Mbps" = 163
"1 Gbps" = 164
"Business 2 Gbps" = 180

[provisioning]
always_add_services = [172]
unmapped_plan = "skip"
tag_ids = [3, 7]

[ticket]
summary = "New install: {{ customer_name }}"
category = 3
ticket_type = 2
status = 1
responsible_user = "Install Team"
responsible_group = 4
customer_viewable = false
template_dir = "templates"
template_file = "install.html"

[customer]
tax_zone_id = 1
invoice_preference = "Both"
bill_day = "1"
due_by_days = 15
grace_period_days = 5

[portal]
username = "site_id"
password = "none"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load(
    tmp_path: Path,
    environ: dict[str, str] | None = None,
    *,
    dotenv: str = "",
    toml: str | None = None,
    require_runtime: bool = False,
) -> Settings:
    """Load with only the given inputs: explicit environ, a .env in tmp_path, an optional TOML."""
    env = {"DATA_DIR": str(tmp_path / "data"), **(environ or {})}
    config = write(tmp_path / "config.toml", toml) if toml is not None else None
    return load_settings(
        env,
        config_path=config,
        dotenv_path=write(tmp_path / ".env", dotenv),
        require_runtime=require_runtime,
    )


def load_error(tmp_path: Path, environ: dict[str, str] | None = None, **kwargs: object) -> str:
    """Load expecting a SettingsError; return its message after checking it is one line."""
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, environ, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    return message


# --- sources and precedence ----------------------------------------------------------------------


def test_environment_beats_dotenv_beats_toml(tmp_path: Path) -> None:
    toml = "FLASK_PORT = 7001\nLOG_LEVEL = 'debug'\nMAIL_PORT = 2525\n"
    dotenv = "FLASK_PORT=7002\nLOG_LEVEL=warning\n"

    settings = load(tmp_path, {"FLASK_PORT": "7003"}, dotenv=dotenv, toml=toml)

    assert settings.web.port == 7003  # environment wins over .env and TOML
    assert settings.log_level == "WARNING"  # .env wins over TOML
    assert settings.mail.port == 2525  # TOML numbers are taken as numbers
    assert settings.sources == (
        "environment",
        str(tmp_path / ".env"),
        str(tmp_path / "config.toml"),
    )


def test_config_file_can_be_named_in_dotenv(tmp_path: Path) -> None:
    config = write(tmp_path / "site.toml", '[plans]\n"500 Mbps" = 170\n')

    settings = load(tmp_path, dotenv=f"UTOPIA_HANDLER_CONFIG={config}\n")

    assert settings.provisioning.plans == (PlanMapping("500 Mbps", 170),)
    assert str(config) in settings.sources


def test_dotenv_references_expand_from_given_environment_only(tmp_path: Path) -> None:
    dotenv = "PC_URL_API=${PC_URL}/api/1/index.php\n"

    settings = load(tmp_path, {"PC_URL": "https://pc.example.net:444"}, dotenv=dotenv)

    assert settings.powercode.api_url == "https://pc.example.net:444/api/1/index.php"


def test_defaults_without_any_configuration(tmp_path: Path) -> None:
    settings = load(tmp_path)

    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'utopia-handler.db'}"
    assert settings.log_file == tmp_path / "data" / "api_class.log"
    assert settings.web.host == "127.0.0.1"
    assert settings.web.allow_unauthenticated_callbacks is False
    assert settings.powercode.verify_ssl is True
    assert settings.worker.retry_deadline_seconds == 24 * 3600
    assert settings.provisioning.unmapped_plan == "hold"
    assert settings.provisioning.portal.password == "random"


# --- legacy .env and TOML tables -----------------------------------------------------------------


def test_legacy_dotenv_alone_reproduces_old_behaviour(tmp_path: Path) -> None:
    settings = load(tmp_path, dotenv=LEGACY_DOTENV, require_runtime=True)

    provisioning = settings.provisioning
    assert set(provisioning.plans) == {PlanMapping("1 Gbps", 164), PlanMapping("250 Mbps", 163)}
    assert provisioning.always_services == (172,)
    assert provisioning.tag_ids == (3, 7)
    assert provisioning.portal.password == "shared"
    assert provisioning.portal.shared_password == Secret(PORTAL_PASSWORD)
    assert provisioning.ticket.template_dir == Path("ticket_descriptions")
    assert provisioning.ticket.template_file == "new_desc.txt"
    assert settings.mail.recipients == ("ops@example.net", "billing@example.net")
    assert settings.powercode.api_key == Secret(PC_KEY)
    assert settings.powercode.customer_link(42).startswith("https://pc.example.net:444/index.php")
    assert settings.web.host == "10.1.2.3"


def test_toml_tables_are_parsed(tmp_path: Path) -> None:
    settings = load(tmp_path, toml=FULL_TOML)

    provisioning = settings.provisioning
    assert provisioning.plans == (
        PlanMapping("250 Mbps", 163),
        PlanMapping("1 Gbps", 164),
        PlanMapping("Business 2 Gbps", 180),
    )
    assert provisioning.always_services == (172,)
    assert provisioning.unmapped_plan == "skip"
    assert provisioning.tag_ids == (3, 7)
    ticket = provisioning.ticket
    assert ticket.summary == "New install: {{ customer_name }}"
    assert (ticket.category, ticket.ticket_type, ticket.status) == (3, 2, 1)
    assert (ticket.responsible_user, ticket.responsible_group) == ("Install Team", 4)
    assert ticket.customer_viewable is False
    # A relative folder in the TOML file is next to the file, not the working directory.
    assert ticket.template_dir == tmp_path / "templates"
    assert ticket.template_file == "install.html"
    customer = provisioning.customer
    assert customer.tax_zone_id == 1
    assert customer.invoice_preference == "Both"
    assert customer.bill_day == "1"
    assert (customer.due_by_days, customer.grace_period_days) == (15, 5)
    assert provisioning.portal.username == "site_id"
    assert provisioning.portal.password == "none"


def test_legacy_variables_override_toml_tables(tmp_path: Path) -> None:
    environ = {
        "SERVICE_PLAN_1GBPS_ID": "200",
        "SERVICE_PLAN_250MBPS_ID": "201",
        "SERVICE_PLAN_BOND_FEE_ID": "173",
        "PC_CUST_TAGS": "9",
        "TICKET_TEMPLATE_FILE": "legacy.txt",
    }
    toml = '[plans]\n"1GBPS" = 164\n"Business" = 180\n[provisioning]\n'
    toml += "always_add_services = [172]\ntag_ids = [3, 7]\n"

    settings = load(tmp_path, environ, toml=toml)

    provisioning = settings.provisioning
    # The TOML entry keeps its text (matched ignoring case and spaces) but takes the new id.
    assert provisioning.plans == (
        PlanMapping("1GBPS", 200),
        PlanMapping("Business", 180),
        PlanMapping("250 Mbps", 201),
    )
    assert provisioning.always_services == (172, 173)
    assert provisioning.tag_ids == (9,)
    assert provisioning.ticket.template_file == "legacy.txt"


def test_bond_fee_already_listed_is_not_added_twice(tmp_path: Path) -> None:
    toml = "[provisioning]\nalways_add_services = [172, 180]\n"

    settings = load(tmp_path, {"SERVICE_PLAN_BOND_FEE_ID": "172"}, toml=toml)

    assert settings.provisioning.always_services == (172, 180)


def test_pc_url_is_derived_from_the_api_url(tmp_path: Path) -> None:
    settings = load(tmp_path, {"PC_URL_API": "http://pc.lan:444/api/1/index.php"})

    assert settings.powercode.web_url == "http://pc.lan:444"
    assert settings.powercode.uapi_url == "http://pc.lan:444/uapi/"


def test_api_urls_default_from_pc_url(tmp_path: Path) -> None:
    settings = load(tmp_path, {"PC_URL": "https://pc.example.net:444/"})

    assert settings.powercode.web_url == "https://pc.example.net:444"
    assert settings.powercode.api_url == "https://pc.example.net:444/api/1/index.php"
    assert settings.powercode.uapi_url == "https://pc.example.net:444/uapi/"


@pytest.mark.parametrize(
    ("pc_url", "web_url"),
    [
        ("https://pc.example.net", "https://pc.example.net:444"),
        ("https://pc.example.net/", "https://pc.example.net:444"),
        ("https://pc.example.net:8444", "https://pc.example.net:8444"),
        ("https://[2001:db8::7]", "https://[2001:db8::7]:444"),
    ],
)
def test_a_pc_url_without_a_port_means_port_444_as_the_old_handler_added(
    tmp_path: Path, pc_url: str, web_url: str
) -> None:
    settings = load(tmp_path, {"PC_URL": pc_url})

    assert settings.powercode.web_url == web_url
    assert settings.powercode.api_url == f"{web_url}/api/1/index.php"
    assert settings.powercode.uapi_url == f"{web_url}/uapi/"
    assert settings.powercode.customer_link(7).startswith(f"{web_url}/index.php?q&page=")


def test_an_explicit_api_url_is_kept_as_given(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        {"PC_URL": "https://pc.example.net", "PC_URL_API": "https://api.pc.example.net/x.php"},
    )

    assert settings.powercode.api_url == "https://api.pc.example.net/x.php"
    assert settings.powercode.web_url == "https://pc.example.net:444"


def test_an_old_env_without_ticket_or_customer_variables_sends_the_production_values(
    tmp_path: Path,
) -> None:
    provisioning = load(tmp_path, dotenv=LEGACY_DOTENV).provisioning

    ticket = provisioning.ticket
    assert (ticket.category, ticket.ticket_type, ticket.status) == (54, 21, 1)
    assert (ticket.responsible_user, ticket.responsible_group) == ("Sales", 4)
    assert ticket.customer_viewable is True
    customer = provisioning.customer
    assert (customer.tax_zone_id, customer.due_by_days, customer.grace_period_days) == (1, 0, 10)
    assert (customer.invoice_preference, customer.bill_day) == ("Email", "Activation Date")


def test_a_numeric_responsible_user_is_kept_as_text(tmp_path: Path) -> None:
    settings = load(tmp_path, toml="[ticket]\nresponsible_user = 12\n")

    assert settings.provisioning.ticket.responsible_user == "12"


def test_always_added_services_may_carry_a_quantity(tmp_path: Path) -> None:
    toml = "[provisioning]\nalways_add_services = [172, { service = 180, quantity = 3 }]\n"
    provisioning = load(tmp_path, toml=toml).provisioning

    assert provisioning.always_services == (172, 180)
    assert (provisioning.quantity_of(172), provisioning.quantity_of(180)) == (1, 3)


def test_the_bond_fee_quantity_comes_from_the_env(tmp_path: Path) -> None:
    provisioning = load(
        tmp_path, {"SERVICE_PLAN_BOND_FEE_ID": "172", "SERVICE_PLAN_BOND_FEE_QUANTITY": "2"}
    ).provisioning

    assert provisioning.always_services == (172,)
    assert provisioning.quantity_of(172) == 2


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        (
            "[provisioning]\nalways_add_services = [{ service = 180, quantity = 0 }]\n",
            "out of range",
        ),
        ("[provisioning]\nalways_add_services = [{ id = 180 }]\n", "has an entry"),
        ("[provisioning]\nalways_add_services = [180, { service = 180 }]\n", "listed twice"),
        ("[ticket]\nresponsible_user = true\n", "responsible_user"),
    ],
)
def test_bad_quantities_and_users_are_refused(tmp_path: Path, toml: str, named: str) -> None:
    assert named in load_error(tmp_path, toml=toml)


def test_ca_bundle_replaces_verify_flag(tmp_path: Path) -> None:
    bundle = write(tmp_path / "pc-ca.pem", "-----BEGIN CERTIFICATE-----\n")

    settings = load(tmp_path, {"PC_CA_BUNDLE": str(bundle)})

    assert settings.powercode.verify == str(bundle)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("TRUE", True), ("yes", True), ("On", True), ("1", True), ("off", False), ("No", False)],
)
def test_bool_words(tmp_path: Path, text: str, expected: bool) -> None:
    settings = load(tmp_path, {"ALLOW_UNAUTHENTICATED_CALLBACKS": text})

    assert settings.web.allow_unauthenticated_callbacks is expected


# --- runtime requirements ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "PC_API_KEY",
        "PC_URL",
        "UTOPIA_API_KEY",
        "MAIL_SERVER",
        "EMAIL_SENDER",
        "EMAIL_RECIPIENTS",
        "SECRET_KEY",
        "UTOPIA_CALLBACK_TOKEN",
        "CUSTOMER_PORTAL_PASSWORD",
    ],
)
def test_missing_runtime_setting_is_named(tmp_path: Path, name: str) -> None:
    # PC_URL_API would stand in for PC_URL, so both go when PC_URL is the one under test.
    dropped = {name, "PC_URL_API", "PC_URL_UAPI"} if name == "PC_URL" else {name}
    toml = '[portal]\npassword = "shared"\n'
    dotenv = "\n".join(
        line for line in LEGACY_DOTENV.splitlines() if line.partition("=")[0] not in dropped
    )

    message = load_error(tmp_path, dotenv=dotenv, toml=toml, require_runtime=True)

    assert message.startswith(f"{name}: ")
    assert "not set" in message


def test_missing_plans_are_reported_at_runtime(tmp_path: Path) -> None:
    dotenv = LEGACY_DOTENV.replace("SERVICE_PLAN_1GBPS_ID", "#").replace("SERVICE_PLAN_250", "#")

    message = load_error(tmp_path, dotenv=dotenv, require_runtime=True)

    assert message.startswith("[plans]: ")


def test_unauthenticated_callbacks_must_be_chosen_explicitly(tmp_path: Path) -> None:
    dotenv = LEGACY_DOTENV.replace("UTOPIA_CALLBACK_TOKEN", "#")

    message = load_error(tmp_path, dotenv=dotenv, require_runtime=True)
    settings = load(
        tmp_path,
        {"ALLOW_UNAUTHENTICATED_CALLBACKS": "true"},
        dotenv=dotenv,
        require_runtime=True,
    )

    assert "ALLOW_UNAUTHENTICATED_CALLBACKS=true" in message
    assert settings.web.callback_token is None
    assert settings.web.allow_unauthenticated_callbacks is True


def test_short_secret_key_is_refused_at_runtime(tmp_path: Path) -> None:
    message = load_error(
        tmp_path, {"SECRET_KEY": "Kq8-short"}, dotenv=LEGACY_DOTENV, require_runtime=True
    )

    assert message.startswith("SECRET_KEY: ")
    assert "Kq8-short" not in message


def test_lenient_loading_tolerates_missing_settings(tmp_path: Path) -> None:
    settings = load(tmp_path, toml='[portal]\npassword = "shared"\n', require_runtime=False)

    assert settings.powercode.api_key is None
    assert settings.mail.recipients == ()
    assert settings.provisioning.plans == ()
    assert settings.provisioning.portal.password == "shared"


# --- format errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("FLASK_PORT", "50x0", "'50x0' is not a whole number"),
        ("FLASK_PORT", "70000", "70000 is out of range"),
        ("WORKER_CONCURRENCY", "0", "0 is out of range"),
        ("MAIL_PORT", "2.5", "'2.5' is not a whole number"),
        ("SERVICE_PLAN_1GBPS_ID", "-4", "-4 is out of range"),
        ("PC_CUST_TAGS", "3,seven", "'seven' is not a whole number"),
        ("POLL_SECONDS", "nan", "'nan' is not a number"),
        ("LEASE_SECONDS", "0", "'0' is out of range"),
    ],
)
def test_bad_number_names_the_variable_and_value(
    tmp_path: Path, name: str, value: str, shown: str
) -> None:
    message = load_error(tmp_path, {name: value})

    assert message.startswith(f"{name}: {shown}; ")


def test_reconciliation_asks_the_configured_networks(tmp_path: Path) -> None:
    assert load(tmp_path).utopia.reconciled_networks() == (None,)  # one call, no `network`
    assert load(tmp_path, {"UTOPIA_NETWORK": "bozeman"}).utopia.reconciled_networks() == (
        "BOZEMAN",
    )
    both = load(tmp_path, {"UTOPIA_NETWORK": "UTOPIA", "UTOPIA_NETWORKS": " utopia,IdahoFalls, "})
    assert both.utopia.reconciled_networks() == ("UTOPIA", "IDAHOFALLS")
    listed = load(tmp_path, toml='UTOPIA_NETWORKS = ["BOZEMAN", "UTOPIA"]\n')
    assert listed.utopia.networks == ("BOZEMAN", "UTOPIA")
    defaults = load(tmp_path).reconcile
    assert (defaults.enabled, defaults.interval_seconds, defaults.alert_seconds) == (
        True,
        900,
        24 * 3600.0,
    )


@pytest.mark.parametrize(
    ("environ", "start"),
    [
        ({"UTOPIA_NETWORKS": "UTOPIA,PROVO"}, "UTOPIA_NETWORKS: 'PROVO' is not allowed"),
        ({"UTOPIA_NETWORKS": "UTOPIA,utopia"}, "UTOPIA_NETWORKS: UTOPIA is listed twice"),
        ({"UTOPIA_NETWORKS": " , "}, "UTOPIA_NETWORKS: is empty"),
        ({"RECONCILE_INTERVAL_SECONDS": "0"}, "RECONCILE_INTERVAL_SECONDS: 0 is out of range"),
        ({"RECONCILE_ENABLED": "sometimes"}, "RECONCILE_ENABLED: 'sometimes' is not true or"),
        (
            {"RECONCILE_INTERVAL_SECONDS": "7200", "RECONCILE_ALERT_HOURS": "2"},
            "RECONCILE_ALERT_HOURS: 2 h is not longer than RECONCILE_INTERVAL_SECONDS (7200 s)",
        ),
    ],
)
def test_bad_reconciliation_settings_say_what_to_fix(
    tmp_path: Path, environ: dict[str, str], start: str
) -> None:
    assert load_error(tmp_path, environ).startswith(start)


def test_bad_bool_names_the_variable(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"PC_VERIFY_SSL": "maybe"})

    assert message.startswith("PC_VERIFY_SSL: 'maybe' is not true or false")


@pytest.mark.parametrize("name", ["PC_URL", "PC_URL_API", "PC_URL_UAPI", "UTOPIA_URL_ENDPOINT"])
def test_url_must_be_http_or_https(tmp_path: Path, name: str) -> None:
    message = load_error(tmp_path, {name: "ftp://pc.example.net/"})

    assert message.startswith(f"{name}: ")
    assert "http:// or https://" in message


def test_url_with_credentials_is_refused_without_echoing_them(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"PC_URL": "https://admin:Hunter2pw@pc.example.net:444"})

    assert message.startswith("PC_URL: ")
    assert "Hunter2pw" not in message


def test_missing_ca_bundle_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"

    message = load_error(tmp_path, {"PC_CA_BUNDLE": str(missing)})

    assert message.startswith("PC_CA_BUNDLE: ")
    assert str(missing) in message


def test_error_in_dotenv_names_the_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, dotenv="MAIL_SECURITY=tls\n")

    assert message.startswith(f"MAIL_SECURITY (in {tmp_path / '.env'}): 'tls' is not allowed")


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[ticket]\ncategroy = 3\n", "[ticket] categroy"),
        ("[tickets]\ncategory = 3\n", "[tickets]"),
        ("PC_URLL = 'https://pc:444'\n", "PC_URLL"),
        ("[customer]\ninvoice_preference = 'Fax'\n", "[customer] invoice_preference"),
        ("[portal]\npassword = 'hunter'\n", "[portal] password"),
        ("[provisioning]\ntag_ids = [3, 3]\n", "[provisioning] tag_ids"),
        ("[ticket]\nsummary = '{{ customer_name'\n", "[ticket] summary"),
        ("[ticket]\ntemplate_file = '../../etc/passwd'\n", "[ticket] template_file"),
        ("[plans]\n'250 Mbps' = 'fast'\n", '[plans] "250 Mbps"'),
        ("plans = 5\n", "[plans]"),
        ("FLASK_PORT = 5050.5\n", "FLASK_PORT"),
        ("MAIL_SERVER = 25\n", "MAIL_SERVER"),
    ],
)
def test_bad_toml_content_is_named(tmp_path: Path, toml: str, named: str) -> None:
    message = load_error(tmp_path, toml=toml)

    assert message.startswith(named)


def test_duplicate_plan_text_is_refused(tmp_path: Path) -> None:
    toml = '[plans]\n"250 Mbps" = 163\n" 250mbps " = 165\n'

    message = load_error(tmp_path, toml=toml)

    assert message.startswith('[plans] " 250mbps "')
    assert "'250 Mbps'" in message


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, toml='[plans]\n"250 Mbps" = 163\n"1 Gbps" = \n')

    assert str(tmp_path / "config.toml") in message
    assert "line 3" in message


def test_named_toml_file_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"

    message = load_error(tmp_path, {"UTOPIA_HANDLER_CONFIG": str(missing)})

    assert message.startswith("UTOPIA_HANDLER_CONFIG: ")
    assert str(missing) in message


def test_bad_recipient_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"EMAIL_RECIPIENTS": "ops@example.net, billing at example"})

    assert message.startswith("EMAIL_RECIPIENTS: 'billing at example' is not an e-mail address")


def test_database_url_must_be_sqlite_or_postgresql(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"DATABASE_URL": "mysql://app:Db5ecretPw@db/handler"})

    assert message.startswith("DATABASE_URL: ")
    assert "Db5ecretPw" not in message


# --- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "PC_API_KEY",
        "UTOPIA_API_KEY",
        "SECRET_KEY",
        "UTOPIA_CALLBACK_TOKEN",
        "MAIL_PASSWORD",
        "CUSTOMER_PORTAL_PASSWORD",
    ],
)
@pytest.mark.parametrize(
    "value",
    ["changeme", "Change-Me", "SECRET", "password", "xxxxxxxx", "your-api-key-here", "<api key>",
     "replace_me_please", "todo", "example", "   "],
)  # fmt: skip
def test_placeholder_secret_is_refused_without_echo(tmp_path: Path, name: str, value: str) -> None:
    message = load_error(tmp_path, {name: value})

    name_part, _, explanation = message.partition(": ")
    assert name_part == name
    assert value.strip() == "" or value not in explanation
    assert "placeholder" in explanation or "empty" in explanation


def test_placeholder_secret_in_toml_is_refused_without_echo(tmp_path: Path) -> None:
    message = load_error(tmp_path, toml="PC_API_KEY = 'your-powercode-key'\n")

    assert message.startswith("PC_API_KEY (in ")
    assert "your-powercode-key" not in message


def test_describe_masks_every_secret(tmp_path: Path) -> None:
    environ = {
        "MAIL_USERNAME": "relay-user",
        "MAIL_PASSWORD": MAIL_PASSWORD,
        "DATABASE_URL": "postgresql://handler:Pg7Passw0rdX@db.internal/handler",
    }
    settings = load(tmp_path, environ, dotenv=LEGACY_DOTENV, require_runtime=True)

    lines = describe_settings(settings)
    rendered = "\n".join(f"{name} = {value}" for name, value in lines)
    values = dict(lines)

    for secret in (
        PC_KEY,
        UTOPIA_KEY,
        FLASK_SECRET,
        CALLBACK_TOKEN,
        PORTAL_PASSWORD,
        MAIL_PASSWORD,
        "Pg7Passw0rdX",
    ):
        assert secret not in rendered
    assert values["powercode.api_key"] == "********"
    assert values["provisioning.portal.shared_password"] == "********"
    assert values["database_url"] == "postgresql://handler:********@db.internal/handler"
    assert values["powercode.api_url"] == "https://pc.example.net:444/api/1/index.php"
    assert values["mail.recipients"] == "ops@example.net, billing@example.net"
    assert "'250 Mbps' -> 163" in values["provisioning.plans"]
    assert values["sources"].startswith("environment")


def test_describe_marks_unset_secrets(tmp_path: Path) -> None:
    values = dict(describe_settings(load(tmp_path)))

    assert values["powercode.api_key"] == "(not set)"
    assert values["web.callback_token"] == "(not set)"


def test_secret_repr_and_str_hide_the_value() -> None:
    secret = Secret(PC_KEY)

    assert PC_KEY not in repr(secret)
    assert PC_KEY not in str(secret)
    assert PC_KEY not in f"{secret}"
    assert secret.reveal() == PC_KEY


def test_settings_repr_hides_secrets(tmp_path: Path) -> None:
    settings = load(tmp_path, dotenv=LEGACY_DOTENV)

    assert PC_KEY not in repr(settings)
    assert PORTAL_PASSWORD not in repr(settings)


def test_settings_are_immutable(tmp_path: Path) -> None:
    settings = load(tmp_path, dotenv=LEGACY_DOTENV)

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.web.port = 80  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.log_level = "DEBUG"  # type: ignore[misc]
    assert isinstance(settings.provisioning.plans, tuple)
    assert settings.web.port == 5050


# --- garbage in ----------------------------------------------------------------------------------

VARIABLES = [
    line.partition("=")[0] for line in LEGACY_DOTENV.splitlines() if "=" in line
] + [
    "DATA_DIR", "DATABASE_URL", "LOG_FILE", "LOG_LEVEL", "ALLOW_UNAUTHENTICATED_CALLBACKS",
    "MAX_CALLBACK_BYTES", "WEB_THREADS", "WORKER_CONCURRENCY", "LEASE_SECONDS", "POLL_SECONDS",
    "RETRY_BASE_SECONDS", "RETRY_MAX_SECONDS", "RETRY_DEADLINE_HOURS", "RUN_WORKER_IN_SERVE",
    "UTOPIA_NETWORK", "UTOPIA_CONNECT_TIMEOUT", "UTOPIA_READ_TIMEOUT", "PC_CA_BUNDLE",
    "PC_CONNECT_TIMEOUT", "PC_READ_TIMEOUT", "MAIL_SECURITY", "MAIL_USERNAME", "MAIL_PASSWORD",
    "MAIL_TIMEOUT", "MAIL_ATTACH_CONTRACT", "UTOPIA_HANDLER_CONFIG", "UTOPIA_NETWORKS",
    "RECONCILE_ENABLED", "RECONCILE_INTERVAL_SECONDS", "RECONCILE_ALERT_HOURS",
]  # fmt: skip
NASTY = [
    "", " ", "\x00", "a\nb", "\r", "9" * 5000, "1e999", "-1", "+0", "0x10", "\uff11\uff12", "1_000",
    "http://[::1", "http://h:99999", "https://", "//host", "${UNDEFINED}", "'", '"', "\\", "é",
    "\u202e", "\ud800", "<>", "a@b@c", "@", ",", ",,,", "inf", "-inf", "NaN", "true", "1.5.5",
]  # fmt: skip


def test_garbage_values_only_ever_raise_settings_error(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    alphabet = "aZ09 .,:;/@<>[]{}$%\\'\"\t\x00\x7fé-_+=?&#~"
    samples = NASTY + ["".join(rng.choices(alphabet, k=rng.randint(1, 24))) for _ in range(40)]
    outcomes = 0
    for name in VARIABLES:
        for value in samples:
            try:
                load(tmp_path, {name: value})
            except SettingsError as error:
                message = str(error)
                assert "\n" not in message and "\r" not in message
                if name in {"PC_API_KEY", "SECRET_KEY", "MAIL_PASSWORD"} and len(value) > 3:
                    assert value not in message
            outcomes += 1
    assert outcomes == len(VARIABLES) * len(samples)


@pytest.mark.parametrize(
    "toml",
    [
        "FLASK_PORT = 99999999999999999999999999\n",
        "POLL_SECONDS = 1e400\n",
        "LEASE_SECONDS = 99999999999999999999999999999\n",
        "PC_CUST_TAGS = [[1]]\n",
        "EMAIL_RECIPIENTS = [1, 2]\n",
        "PC_VERIFY_SSL = 1979-05-27\n",
        "[plans]\n'' = 1\n",
        "[plans.sub]\nx = 1\n",
        "[ticket]\nsummary = 5\n",
        "[provisioning]\nalways_add_services = 'abc'\n",
        f"FLASK_PORT = {'9' * 5000}\n",
        "\xff\xfe",
    ],
)
def test_garbage_toml_only_ever_raises_settings_error(tmp_path: Path, toml: str) -> None:
    message = load_error(tmp_path, toml=toml)

    assert ": " in message
