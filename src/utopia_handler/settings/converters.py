"""Text (or a TOML value) to a typed value, or `SettingsError` with one line a person can act on.

Every converter takes `(label, raw)`: the label names the setting and where it was found
(`FLASK_PORT`, `MAIL_SECURITY (in /srv/.env)`, `[ticket] category (in site.toml)`), the raw value
is a string from the environment or `.env`, or whatever TOML holds. A message is
"<label>: <problem>; <fix>", and never echoes a secret.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from jinja2 import Environment, TemplateError, TemplateSyntaxError

from utopia_handler.settings.schema import IPNetwork, Secret

C = TypeVar("C", bound=str)
Converter = Callable[[str, object], object]


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line a person can act on."""


MASK = "********"
# A URL parameter whose name holds one of these (any case) is a credential.
_CREDENTIAL_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "sig", "cred", "session")
_URL_PARAMETER = re.compile(r"(?P<start>[?&#;])(?P<name>[^=&#;?]*)=[^&#;]*")
RANDOM_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
MAX_ID = 2**31 - 1  # PowerCode ids are 32-bit database keys
# PowerCode serves its web pages and both APIs on port 444. The old handler's PC_URL named no port
# and it added ":444" to the API and to the customer link; a PC_URL with a port is kept as given.
POWERCODE_PORT = 444

_INT_RE = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})")
_ADDRESS_RE = re.compile(r"[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\.][^@\s<>(),;:\"\[\]\\]*")
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]+")
_BCRYPT_RE = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
_SIMPLE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_PLACEHOLDER_WORDS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "password", "todo", "example"}
)
_PLACEHOLDER_PREFIXES = ("xxx", "your", "replace")
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_FORBIDDEN_CHARS = frozenset("\x00\r\n")


def fail(name: str, problem: str, fix: str) -> NoReturn:
    """Raise the one-line `SettingsError` "<name>: <problem>; <fix>"."""
    message = f"{name}: {problem}; {fix}"
    raise SettingsError(" ".join(message.splitlines()))


# --- showing values in messages ------------------------------------------------------------------


def show(value: object) -> str:
    """A non-secret value for a message: quoted, escaped onto one line, and kept short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def show_key(key: str) -> str:
    """A TOML key as it would be written in the file, quoted when it needs quotes."""
    if _SIMPLE_KEY_RE.fullmatch(key):
        return key
    quoted = json.dumps(key)
    return quoted if len(quoted) <= 80 else quoted[:77] + '..."'


def mask_credentials(url: str) -> str:
    """`url` with every credential written into it hidden, for showing: the password (or a lone
    token) before the host, and the value of each query, path or fragment parameter named like a
    credential (`password`, `sslpassword`, `token`, `api_key`, `secret`...), whatever its case."""
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    # The authority ends at the query or fragment, not at a "/": SQLAlchemy reads a password
    # up to the last "@", slashes and all. A path of its own (sqlite:////var/...) has none.
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if at and not authority.startswith("/"):
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    tail = _URL_PARAMETER.sub(_mask_parameter, tail)
    authority = _URL_PARAMETER.sub(_mask_parameter, authority)  # ;key=value in the path
    return f"{head}{sep}{authority}{tail}"


def _mask_parameter(match: re.Match[str]) -> str:
    name = unquote(match.group("name")).casefold()
    if any(word in name for word in _CREDENTIAL_WORDS):
        return f"{match.group('start')}{match.group('name')}={MASK}"
    return match.group(0)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str):
        return "text"
    return "a date or time"


# --- text and secrets ----------------------------------------------------------------------------


def checked_text(label: str, raw: object) -> str:
    """The raw text if it is a string that fits on one line and can reach the OS; never echoed."""
    if not isinstance(raw, str):
        fail(label, f"expected text, got {_kind(raw)}", "write it as a quoted string")
    if any(char in _FORBIDDEN_CHARS for char in raw):
        fail(label, "contains a line break or NUL character", "put the value on one line")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        fail(label, "is not valid UTF-8 text", "retype the value")
    return raw


def to_text(label: str, raw: object) -> str:
    """One line of text, spaces around it removed."""
    return checked_text(label, raw).strip()


def to_nonempty_text(label: str, raw: object) -> str:
    """Text that is not empty."""
    text = to_text(label, raw)
    if not text:
        fail(label, "is empty", "give it a value or remove it")
    return text


def to_secret(label: str, raw: object) -> Secret:
    """A secret that is neither empty nor a placeholder such as "changeme"; never echoed."""
    value = checked_text(label, raw).strip()
    if not value:
        fail(label, "is empty", "set a real value or remove the line")
    folded = value.casefold()
    if (
        folded in _PLACEHOLDER_WORDS
        or folded.startswith(_PLACEHOLDER_PREFIXES)
        or (folded.startswith("<") and folded.endswith(">"))
    ):
        fail(label, "looks like a placeholder", "set a real value or remove the line")
    return Secret(value)


def token(*, url_safe: bool = False) -> Callable[[str, object], Secret]:
    """A random secret of 16+ characters; `url_safe`: only characters a URL carries unescaped."""

    def convert(label: str, raw: object) -> Secret:
        secret = to_secret(label, raw)
        if len(secret.reveal()) < 16:
            fail(
                label,
                "is shorter than 16 characters",
                f"use 16+ random characters, e.g. from {RANDOM_HINT}",
            )
        if url_safe and not _TOKEN_RE.fullmatch(secret.reveal()):
            fail(
                label,
                "has characters that need escaping in the callback URL",
                f"use only letters, digits and - _ . ~, e.g. from {RANDOM_HINT}",
            )
        return secret

    return convert


def to_bcrypt_hash(label: str, raw: object) -> Secret:
    """A bcrypt hash as the old handler stored it ($2b$...)."""
    secret = to_secret(label, raw)
    if not _BCRYPT_RE.fullmatch(secret.reveal()):
        fail(
            label,
            "is not a bcrypt hash ($2b$...)",
            "copy it unchanged from the old handler, or set ADMIN_PASS instead",
        )
    return secret


def _list_items(label: str, raw: object) -> list[object]:
    """The items of a TOML list, or of text separated by commas and/or spaces."""
    if isinstance(raw, list):
        return list(raw)
    return [item for item in re.split(r"[,\s]+", checked_text(label, raw)) if item]


def to_signing_secrets(label: str, raw: object) -> tuple[Secret, ...]:
    """Standard Webhooks secrets, `whsec_` + base64 of 16 to 128 random bytes; never echoed."""
    secrets_ = tuple(to_secret(label, item) for item in _list_items(label, raw))
    if not secrets_:
        fail(label, "is empty", "set one or more whsec_... secrets or remove the line")
    for position, secret in enumerate(secrets_, start=1):
        text = secret.reveal()
        if not text.startswith("whsec_"):
            fail(label, f"secret {position} does not start with whsec_", "copy it whole")
        try:
            key = base64.b64decode(text[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            fail(label, f"secret {position} is not whsec_ + base64", "copy it whole")
        if not 16 <= len(key) <= 128:
            fail(
                label,
                f"secret {position} holds {len(key)} bytes",
                "use 16 to 128 random bytes, e.g. whsec_ + base64 of 32 bytes",
            )
    return secrets_


# --- numbers, flags and choices ------------------------------------------------------------------


def to_int(label: str, raw: object, *, low: int, high: int | None = None) -> int:
    """A whole number from `low` to `high`."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and _INT_RE.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        fail(label, f"{show(raw)} is not a whole number", f"use a number {_range(low, high)}")
    if value < low or (high is not None and value > high):
        fail(label, f"{value} is out of range", f"use a number {_range(low, high)}")
    return value


def _range(low: int, high: int | None) -> str:
    return f"from {low} to {high}" if high is not None else f"of at least {low}"


def integer(low: int, high: int | None = None) -> Callable[[str, object], int]:
    """A converter to a whole number from `low` to `high`."""

    def convert(label: str, raw: object) -> int:
        return to_int(label, raw, low=low, high=high)

    return convert


def to_id(label: str, raw: object) -> int:
    """A PowerCode id: a positive 32-bit number."""
    return to_int(label, raw, low=1, high=MAX_ID)


def to_days(label: str, raw: object) -> int:
    """A number of days in a year, 0 included."""
    return to_int(label, raw, low=0, high=366)


def to_positive_float(label: str, raw: object, *, high: float | None = None) -> float:
    """A number above 0 (and at most `high`), e.g. seconds."""
    if isinstance(raw, float) or (isinstance(raw, int) and not isinstance(raw, bool)):
        # A huge TOML integer would overflow float(); anything this big is out of range anyway.
        value = float(raw) if abs(raw) < 1e15 else math.inf
    elif isinstance(raw, str) and _FLOAT_RE.fullmatch(raw.strip()):
        value = float(raw.strip())
    else:
        fail(label, f"{show(raw)} is not a number", "use a number of seconds, e.g. 30 or 2.5")
    limit = f" and at most {high:g}" if high is not None else ""
    if not math.isfinite(value) or value <= 0 or (high is not None and value > high):
        fail(label, f"{show(raw)} is out of range", f"use a number above 0{limit}")
    return value


def number(high: float | None = None) -> Callable[[str, object], float]:
    """A converter to a number above 0 and at most `high`."""

    def convert(label: str, raw: object) -> float:
        return to_positive_float(label, raw, high=high)

    return convert


def to_hours_as_seconds(label: str, raw: object) -> float:
    """A number of hours above 0, as seconds."""
    return to_positive_float(label, raw) * 3600.0


def to_bool(label: str, raw: object) -> bool:
    """true/false, yes/no, on/off or 1/0, in any case."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().casefold()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    fail(label, f"{show(raw)} is not true or false", "use true/false, yes/no, on/off or 1/0")


def to_choice(label: str, raw: object, choices: tuple[C, ...]) -> C:
    """One of `choices`, matched ignoring case, returned as spelled in `choices`."""
    word = to_text(label, raw).casefold()
    for choice_ in choices:
        if choice_.casefold() == word:
            return choice_
    fail(label, f"{show(raw)} is not allowed", f"use one of {', '.join(choices)}")


def choice(choices: tuple[C, ...]) -> Callable[[str, object], C]:
    """A converter to one of `choices`."""

    def convert(label: str, raw: object) -> C:
        return to_choice(label, raw, choices)

    return convert


def choice_list(choices: tuple[C, ...]) -> Callable[[str, object], tuple[C, ...]]:
    """A converter to one or more of `choices`: comma-separated text or a TOML list, each once."""

    def convert(label: str, raw: object) -> tuple[C, ...]:
        items = raw if isinstance(raw, list) else to_text(label, raw).split(",")
        picked = tuple(
            to_choice(label, item, choices)
            for item in items
            if not (isinstance(item, str) and not item.strip())
        )
        if not picked:
            fail(label, "is empty", f"name one or more of {', '.join(choices)}, comma-separated")
        for index, value in enumerate(picked):
            if value in picked[:index]:
                fail(label, f"{value} is listed twice", "list each once")
        return picked

    return convert


# --- ids and services ----------------------------------------------------------------------------


def to_ids(label: str, raw: object) -> tuple[int, ...]:
    """Positive ids from a TOML list, a single number, or comma-separated text."""
    items: list[object]
    if isinstance(raw, list):
        items = list(raw)
    elif isinstance(raw, str):
        items = [item for item in (part.strip() for part in raw.split(",")) if item]
    else:
        items = [raw]
    ids = tuple(to_id(label, item) for item in items)
    for index, value in enumerate(ids):
        if value in ids[:index]:
            fail(label, f"id {value} is listed twice", "list each id once")
    return ids


def to_always_services(label: str, raw: object) -> tuple[tuple[int, int], ...]:
    """Always-added services as (id, quantity): ids, or tables `{ service = 172, quantity = 2 }`."""
    items = raw if isinstance(raw, list) else [raw]
    result: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, dict):
            if set(item) - {"service", "quantity"} or "service" not in item:
                fail(
                    label,
                    f"has an entry {show(item)}",
                    "write a service id, or { service = 172, quantity = 2 } for a fee priced "
                    "per unit",
                )
            quantity = to_int(label, item.get("quantity", 1), low=1, high=1000)
            pairs = [(to_id(label, item["service"]), quantity)]
        else:
            pairs = [(service_id, 1) for service_id in to_ids(label, item)]
        for service_id, quantity in pairs:
            if any(service_id == known for known, _ in result):
                fail(label, f"id {service_id} is listed twice", "list each id once")
            result.append((service_id, quantity))
    return tuple(result)


_PRODUCT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def read_speed_products(text: str) -> tuple[tuple[tuple[int, str], ...], list[str]]:
    """PowerCode service id -> UTOPIA product id pairs from `164=1000, 165=2000` text, and the
    problems found (one parser for the settings and the console)."""
    pairs: list[tuple[int, str]] = []
    problems: list[str] = []
    for part in (p for p in re.split(r"[\s,]+", text) if p):
        raw_id, equals, product = part.partition("=")
        if not equals or not raw_id.isdigit() or not 0 < int(raw_id) < 2**31:
            problems.append(
                f"{part!r}: write the PowerCode service id, =, then UTOPIA's product id"
            )
        elif not _PRODUCT.fullmatch(product):
            problems.append(f"{part!r}: UTOPIA's product id is letters, digits, _ . or -")
        elif any(int(raw_id) == known for known, _ in pairs):
            problems.append(f"service {raw_id} is listed twice")
        else:
            pairs.append((int(raw_id), product))
    return tuple(pairs), problems


def to_speed_products(label: str, raw: object) -> tuple[tuple[int, str], ...]:
    """The speed change's mapping: text `164=1000, 165=2000`, or a TOML table `164 = "1000"`."""
    if isinstance(raw, dict):
        raw = ", ".join(f"{key}={value}" for key, value in raw.items())
    pairs, problems = read_speed_products(checked_text(label, raw))
    if problems:
        fail(label, problems[0], "write PowerCode service id = UTOPIA product id, e.g. 164=1000")
    return pairs


def to_user_name(label: str, raw: object) -> str:
    """A PowerCode user as named in the ticket: text such as "Sales", or a number."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        fail(label, f"is {_kind(raw)}", 'write the user\'s name in quotes, e.g. "Sales"')
    return to_nonempty_text(label, str(raw))


# --- addresses, paths and templates --------------------------------------------------------------


def to_url(label: str, raw: object) -> str:
    """An http(s) URL with a host and no credentials in it."""
    text = to_text(label, raw)
    shown = show(mask_credentials(text))
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError:
        fail(label, f"{shown} is not a valid URL", "use http(s)://host[:port][/path]")
    if parts.scheme.lower() not in ("http", "https"):
        fail(label, f"{shown} must start with http:// or https://", "fix the scheme")
    if parts.username is not None or parts.password is not None:
        fail(label, "contains a user name or password", "put credentials in the API key setting")
    if not parts.hostname or any(char.isspace() or not char.isprintable() for char in text):
        fail(label, f"{shown} is not a valid URL", "use http(s)://host[:port][/path]")
    return text


def to_base_url(label: str, raw: object) -> str:
    """An http(s) URL without a trailing slash."""
    return to_url(label, raw).rstrip("/")


def to_powercode_url(label: str, raw: object) -> str:
    """PowerCode's web address; without a port it means port 444, as the old handler added."""
    url = to_base_url(label, raw)
    parts = urlsplit(url)
    if parts.port is not None:
        return url
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@" if userinfo else ""
    return urlunsplit(
        parts._replace(netloc=f"{netloc}{host}:{POWERCODE_PORT}", path=parts.path.rstrip("/"))
    )


def to_database_url(label: str, raw: object) -> str:
    """An SQLAlchemy URL of SQLite or PostgreSQL; a password in it is never shown."""
    url = to_text(label, raw)
    if not url.lower().startswith(("sqlite", "postgresql")):
        fail(
            label,
            f"{show(mask_credentials(url))} is neither SQLite nor PostgreSQL",
            "use sqlite:///path/to/file.db or postgresql://user@host/dbname",
        )
    return url


def to_host(label: str, raw: object) -> str:
    """A host name or address, e.g. mail.isp.net."""
    host = to_text(label, raw)
    if any(char.isspace() or not char.isprintable() or char in "/@" for char in host):
        fail(label, f"{show(host)} is not a host name", "use a name or address like mail.isp.net")
    return host


def _to_address(label: str, text: str) -> str:
    if not _ADDRESS_RE.fullmatch(text) or text.endswith("."):
        fail(label, f"{show(text)} is not an e-mail address", "use addresses like ops@isp.net")
    return text


def to_addresses(label: str, raw: object) -> tuple[str, ...]:
    """E-mail addresses from a TOML list or comma-separated text."""
    items = raw if isinstance(raw, list) else to_text(label, raw).split(",")
    texts = [to_text(label, item) for item in items]
    return tuple(_to_address(label, text) for text in texts if text)


def to_sender(label: str, raw: object) -> str:
    """A bare address or `Display Name <address>`."""
    text = to_text(label, raw)
    address = text
    if text.endswith(">") and "<" in text:
        address = text[text.rfind("<") + 1 : -1]
    _to_address(label, address)
    return text


def to_networks(label: str, raw: object) -> tuple[IPNetwork, ...]:
    """Networks in CIDR notation (a bare address is a /32 or /128)."""
    networks: list[IPNetwork] = []
    for item in _list_items(label, raw):
        text = to_text(label, item)
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            fail(label, f"{show(text)} is not a network", "use CIDR, e.g. 203.0.113.0/24")
        if network not in networks:
            networks.append(network)
    return tuple(networks)


def to_path(label: str, raw: object) -> Path:
    """A file or folder, `~` expanded, made absolute against the working directory."""
    return Path(os.path.abspath(os.path.expanduser(to_text(label, raw))))


def to_relative_path(label: str, raw: object) -> Path:
    """A file or folder as written (relative ones stay relative)."""
    return Path(to_text(label, raw))


def to_readable_file(label: str, raw: object) -> Path:
    """An absolute path to a file this process can open."""
    path = to_path(label, raw)
    if not _is_readable_file(path):
        fail(
            label,
            f"{path} is not a readable file",
            "point it at the PEM file of the certificate PowerCode uses, or unset it",
        )
    return path


def _is_readable_file(path: Path) -> bool:
    try:
        with path.open("rb"):
            return True
    except (OSError, ValueError):  # missing, a folder, no permission, a name too long...
        return False


def to_filename(label: str, raw: object) -> str:
    """A plain file name, no folder in it."""
    name = to_nonempty_text(label, raw)
    if "/" in name or "\\" in name or name in (".", ".."):
        fail(label, f"{show(name)} is not a plain file name", "name a file inside the folder")
    return name


def to_template(label: str, raw: object) -> str:
    """A Jinja2 template that parses."""
    text = to_nonempty_text(label, raw)
    try:
        Environment(autoescape=True).parse(text)
    except TemplateSyntaxError as exc:
        fail(label, f"is not a valid template ({exc.message})", "fix the {{ }} / {% %} syntax")
    except (TemplateError, RecursionError):
        fail(label, "is not a valid template", "fix the {{ }} / {% %} syntax")
    return text
