"""`utopia-handler doctor`: whether the real connections work, one line per check, and what to do.

Every check changes nothing anywhere: PowerCode is asked for a search that finds nobody, UTOPIA
for a contract that cannot exist, the mail relay is greeted and logged in to but given no message
(unless the person asks for a test e-mail). Each check catches its own failures, so one broken
connection never hides the state of the others.
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from utopia_handler.clients.errors import OutsideError, RejectedError
from utopia_handler.clients.http import ssl_verify
from utopia_handler.clients.powercode import PROBE_SEARCH, PowerCodeClient
from utopia_handler.clients.utopia import NotOurOrder, UtopiaClient
from utopia_handler.notify.smtp import SmtpSender
from utopia_handler.settings import Settings, Timeouts
from utopia_handler.store.db import Store, migration_status
from utopia_handler.timeutil import utcnow

# Short enough that a person waits for the answer; long enough for a real server on the WAN.
DOCTOR_TIMEOUTS = Timeouts(connect=5.0, read=15.0)
# A reference shaped like UTOPIA's that no order can have.
IMPOSSIBLE_ORDER_REF = "UIA000000-000000"
LOW_DISK_BYTES = 1 << 30
VERY_LOW_DISK_BYTES = 100 << 20
CLOCK_SKEW_WARN_SECONDS = 60.0


@dataclass(frozen=True)
class Check:
    """One check's result: `ok`, or a problem and what to do about it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # passed, but worth a look

    def line(self) -> str:
        """The check as one line for a terminal."""
        mark = "ok  " if self.ok and not self.warning else "warn" if self.ok else "FAIL"
        text_ = f"{mark} {self.name}: {self.detail}"
        return f"{text_} -> {self.fix}" if self.fix else text_


def run_checks(
    settings: Settings,
    *,
    send_test_email: bool = False,
    now: Callable[[], datetime] = utcnow,
) -> list[Check]:
    """Every check, in the order a person fixes things: database, PowerCode, UTOPIA, mail, clock."""
    checks = check_database(settings)
    powercode_checks, server_date = check_powercode(settings)
    checks += powercode_checks
    checks.append(check_utopia(settings))
    checks += check_mail(settings, send_test_email=send_test_email)
    checks.append(check_clock(server_date, now()))
    return checks


# Database ---------------------------------------------------------------------------------------


def check_database(settings: Settings) -> list[Check]:
    """Reachable, at the newest migration, writable, and (SQLite) room on its disk."""
    store = Store(settings.database_url)
    try:
        try:
            with store.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            return [
                Check(
                    "database",
                    False,
                    f"cannot connect ({type(error).__name__})",
                    "check DATABASE_URL and that the database server runs",
                )
            ]
        checks = [Check("database", True, "reachable")]
        current, heads = migration_status(store)
        if current != heads:
            checks.append(
                Check(
                    "database schema",
                    False,
                    f"at {sorted(current) or 'nothing'}, the code needs {sorted(heads)}",
                    "run `utopia-handler db upgrade`",
                )
            )
            return checks
        checks.append(Check("database schema", True, "at the newest migration"))
        checks.append(_writable(store))
        checks += _free_disk(settings)
        return checks
    finally:
        store.close()


def _writable(store: Store) -> Check:
    try:
        with store.engine.connect() as connection, connection.begin() as transaction:
            # A real write that changes nothing, then undone: takes the write lock like an order.
            connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
            transaction.rollback()
    except SQLAlchemyError as error:
        return Check(
            "database writes",
            False,
            f"refused ({type(error).__name__})",
            "give the service's user write access to the database (and, for SQLite, its folder)",
        )
    return Check("database writes", True, "accepted")


def _free_disk(settings: Settings) -> list[Check]:
    url = make_url(settings.database_url)
    if not url.get_backend_name().startswith("sqlite") or not url.database:
        return []  # the database server's disk is its administrator's to watch
    folder = Path(url.database).resolve().parent
    free = shutil.disk_usage(folder).free
    shown = f"{free / (1 << 30):.1f} GiB free under {folder}"
    if free < VERY_LOW_DISK_BYTES:
        return [Check("disk", False, shown, "free space: callbacks cannot be stored without it")]
    if free < LOW_DISK_BYTES:
        return [Check("disk", True, shown, "free some space soon", warning=True)]
    return [Check("disk", True, shown)]


# PowerCode --------------------------------------------------------------------------------------


def check_powercode(settings: Settings) -> tuple[list[Check], datetime | None]:
    """The classic API and the UAPI answer and accept the key; also PowerCode's clock, if told."""
    powercode = settings.powercode
    if not powercode.api_url:
        return [Check("powercode", False, "no address set", "set PC_URL (or PC_URL_API)")], None
    with PowerCodeClient(
        powercode.api_url,
        powercode.uapi_url,
        powercode.api_key.reveal() if powercode.api_key else "",
        verify=powercode.verify,
        timeouts=DOCTOR_TIMEOUTS,
    ) as client:
        try:
            client.search_customers(PROBE_SEARCH)
        except OutsideError as error:
            return [_powercode_problem("powercode API", powercode.api_url, error)], None
        checks = [Check("powercode API", True, f"{powercode.api_url} answers and accepts the key")]
        try:
            client.list_tag_ids(0)
            checks.append(Check("powercode UAPI", True, "answers and accepts the key"))
        except RejectedError as error:
            if error.code == 401:
                checks.append(
                    Check(
                        "powercode UAPI",
                        False,
                        "refused the key (HTTP 401)",
                        "check PC_URL_UAPI; the UAPI takes the same key as the classic API",
                    )
                )
            else:
                # Customer 0 does not exist: any refusal other than 401 came from past the login.
                checks.append(Check("powercode UAPI", True, "answers and accepts the key"))
        except OutsideError as error:
            checks.append(_powercode_problem("powercode UAPI", powercode.uapi_url, error))
    return checks, _server_date(powercode.web_url or powercode.api_url, powercode.verify)


def _powercode_problem(name: str, url: str, error: OutsideError) -> Check:
    """A failed PowerCode call, told apart by what went wrong, with what to do."""
    message = error.message
    lowered = message.casefold()
    if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
        return Check(name, False, f"TLS failed: {message}", _trust_advice(url))
    if "could not connect" in lowered or "connect timed out" in lowered:
        return Check(
            name,
            False,
            f"unreachable: {message}",
            "check the host and port in PC_URL (PowerCode's API is on 444), DNS and firewalls",
        )
    if "url must start" in lowered or "invalid url" in lowered:
        return Check(name, False, message, "PC_URL must be https://host or https://host:444")
    if "not a powercode api reply" in lowered or " http 404" in lowered:
        return Check(
            name, False, message, "the address answers but is not PowerCode's API: check PC_URL_API"
        )
    if isinstance(error, RejectedError):
        # PowerCode binds each key to the address it may be used from; the words of its refusal
        # have not been published, so both readings are named when the message does not say.
        if any(word in lowered for word in ("ip", "address", "host", "allowed", "permission")):
            fix = "PowerCode does not allow this key from this server's address: add the address "
            fix += "to the key (Config > System Configuration > API)"
        elif "key" in lowered or "auth" in lowered:
            fix = "check PC_API_KEY; PowerCode also refuses a key used from another address than "
            fix += "the one it was made for"
        else:
            fix = "PowerCode refused a search that changes nothing: check PC_API_KEY and the "
            fix += "address the key is bound to"
        return Check(name, False, f"refused: {message}", fix)
    return Check(name, False, message, "PowerCode had a fault; try again, and check its logs")


def _trust_advice(url: str) -> str:
    """How to trust PowerCode's certificate, with its fingerprint when it can be read."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return "check PC_CA_BUNDLE"
    try:
        pem = ssl.get_server_certificate(
            (parts.hostname, parts.port or 443), timeout=DOCTOR_TIMEOUTS.connect
        )
    except (OSError, ValueError):
        return "check PC_CA_BUNDLE (the certificate could not be read)"
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    shown = ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2))
    return (
        f"the server's certificate has SHA-256 fingerprint {shown}; if PowerCode's administrator "
        "sees the same one, save it (openssl s_client -connect HOST:444 -showcerts </dev/null | "
        "openssl x509 > powercode.pem) and set PC_CA_BUNDLE=powercode.pem"
    )


# UTOPIA -----------------------------------------------------------------------------------------


def check_utopia(settings: Settings) -> Check:
    """A contract look-up that cannot succeed: "No valid records" means the key works."""
    utopia = settings.utopia
    with UtopiaClient(
        utopia.url,
        utopia.api_key.reveal() if utopia.api_key else "",
        timeouts=DOCTOR_TIMEOUTS,
        network=utopia.network,
    ) as client:
        try:
            client.lookup_contract(IMPOSSIBLE_ORDER_REF)
        except NotOurOrder:
            return Check("utopia", True, f"{utopia.url} answers and accepts the key")
        except RejectedError as error:
            if error.code == 401:
                return Check(
                    "utopia", False, "refused the key (401)", "check UTOPIA_API_KEY with UTOPIA"
                )
            return Check(
                "utopia", False, error.message, "check UTOPIA_URL_ENDPOINT and UTOPIA_NETWORK"
            )
        except OutsideError as error:
            return Check(
                "utopia",
                False,
                f"unreachable: {error.message}",
                "check UTOPIA_URL_ENDPOINT, DNS and that this server may reach the internet",
            )
    return Check("utopia", True, f"{utopia.url} answers and accepts the key")


# Mail -------------------------------------------------------------------------------------------


def check_mail(settings: Settings, *, send_test_email: bool) -> list[Check]:
    """Connect, EHLO, STARTTLS and login as configured; optionally one test e-mail to staff."""
    mail = settings.mail
    sender = SmtpSender(
        mail.server,
        mail.port,
        security=mail.security,
        username=mail.username,
        password=mail.password.reveal() if mail.password else None,
        timeout=DOCTOR_TIMEOUTS.read,
    )
    try:
        steps = sender.check()
    except OutsideError as error:
        fix = "check MAIL_SERVER, MAIL_PORT and MAIL_SECURITY"
        if "login" in error.message:
            fix = "check MAIL_USERNAME and MAIL_PASSWORD"
        return [Check("mail relay", False, error.message, fix)]
    checks = [Check("mail relay", True, f"{mail.server}:{mail.port}: {steps}")]
    if send_test_email:
        checks.append(_send_test(sender, settings))
    return checks


def _send_test(sender: SmtpSender, settings: Settings) -> Check:
    mail = settings.mail
    if not mail.recipients:
        return Check("test e-mail", False, "no recipients", "set EMAIL_RECIPIENTS")
    message = EmailMessage()
    message["Subject"] = "utopia-handler doctor: test e-mail"
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.recipients)
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = make_msgid(domain="utopia-handler.local")
    message.set_content(
        "This e-mail was sent by `utopia-handler doctor --send-test`: staff e-mails reach you.\n"
    )
    try:
        sender.send(message)
    except OutsideError as error:
        return Check(
            "test e-mail", False, error.message, "check EMAIL_SENDER and the relay's rules"
        )
    return Check("test e-mail", True, f"sent to {len(mail.recipients)} recipient(s)")


# Clock ------------------------------------------------------------------------------------------


def _server_date(url: str, verify: bool | str) -> datetime | None:
    """PowerCode's clock from the Date header of a plain page request, or None."""
    try:
        response = httpx.head(url, timeout=DOCTOR_TIMEOUTS.connect, verify=ssl_verify(verify))
    except (TimeoutError, httpx.HTTPError, OSError, ValueError):
        return None
    header = response.headers.get("Date")
    if not header:
        return None
    try:
        return parsedate_to_datetime(header).replace(tzinfo=None)
    except (TypeError, ValueError):
        return None


def check_clock(server_date: datetime | None, now: datetime) -> Check:
    """Our clock against PowerCode's: leases, retries and the audit log all trust it."""
    if server_date is None:
        return Check("clock", True, "PowerCode sent no Date to compare with", warning=True)
    skew = (now - server_date).total_seconds()
    if abs(skew) > CLOCK_SKEW_WARN_SECONDS:
        return Check(
            "clock",
            True,
            f"{skew:+.0f} s against PowerCode",
            "run NTP (systemd-timesyncd or chrony) on this server",
            warning=True,
        )
    return Check("clock", True, f"{skew:+.0f} s against PowerCode")
