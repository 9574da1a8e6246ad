"""Console users: passwords, roles, sessions, login throttling and the first admin of a move-over.

Passwords are hashed with argon2id. bcrypt hashes (the old handler's `ADMIN_PASS_HASH`, and its
users brought over by `import-old`) are accepted and replaced with argon2 at the next successful
login.

Throttling counts failures per user name AND address together, in the database (so it holds
across processes and restarts), and answers them with a growing delay, never a lock: a stranger
failing for someone else's name from their own address delays only themselves, and people who
share one address (everyone behind a proxy that is not in TRUSTED_PROXIES) wait at most
`MAX_LOGIN_DELAY` for each other.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from utopia_handler import audit
from utopia_handler.logs import log_event
from utopia_handler.settings import ConsoleSettings
from utopia_handler.store.console_models import ConsoleSession, LoginFailure, Role, User
from utopia_handler.store.db import Store
from utopia_handler.text import one_line
from utopia_handler.timeutil import utcnow

log = logging.getLogger("utopia_handler.accounts")

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte "password" would be a cheap denial of service
# A failed login counts for this long. After FREE_LOGIN_FAILURES of one name from one address
# within it, each further try waits 1, 2, 4... seconds after the last failure, up to the maximum.
THROTTLE_WINDOW = timedelta(minutes=15)
FREE_LOGIN_FAILURES = 3
MAX_LOGIN_DELAY = timedelta(seconds=60)
# A failed login's name in the audit log is cut to this: it may be a password typed in the wrong box.
AUDITED_NAME_CHARS = 32
SESSION_IDLE = timedelta(hours=8)  # a working day without a click ends the session
SESSION_MAX = timedelta(hours=12)
# How stale last_seen may get before a page view writes it: most page views stay read-only.
_SEEN_RESOLUTION = timedelta(minutes=1)
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_BCRYPT_RE = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")


class AccountError(Exception):
    """A user cannot be added or changed; the message says why."""


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with the library's current recommended parameters


@cache
def _dummy_hash() -> str:
    # Checked against when the user does not exist, so the answer takes as long either way.
    return _hasher().hash(secrets.token_urlsafe(16))


def normalise_name(name: str) -> str:
    """A login name as stored: trimmed and lower case, so `Jane` and `jane` are one user."""
    return name.strip().lower()


def check_name(name: str) -> str:
    """The normalised name, or AccountError when it is not a usable login name."""
    normal = normalise_name(name)
    if not _NAME_RE.fullmatch(normal):
        raise AccountError(
            "a user name is 1 to 64 letters, digits or . _ @ - and starts with a letter or digit"
        )
    return normal


def check_password(password: str) -> None:
    """AccountError when the password is too short or absurdly long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether the password matches an argon2 or bcrypt hash."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    if stored_hash.startswith(_BCRYPT_PREFIXES):
        try:
            return bcrypt.checkpw(password.encode("utf-8"), stored_hash.encode("ascii"))
        except ValueError:  # a malformed hash, or a password over bcrypt's 72-byte limit
            return False
    try:
        return _hasher().verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _needs_rehash(stored_hash: str) -> bool:
    if stored_hash.startswith(_BCRYPT_PREFIXES):
        return True
    try:
        return _hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


# Users -------------------------------------------------------------------------------------------


def find_user(session: Session, name: str) -> User | None:
    """The user of that login name (any case), or None."""
    return session.scalar(select(User).where(User.name == normalise_name(name)))


def list_users(session: Session) -> list[User]:
    """Every user, by name."""
    return list(session.scalars(select(User).order_by(User.name)))


def add_user(
    session: Session, name: str, password: str, role: Role, now: datetime, *, actor: str
) -> User:
    """Create a user; AccountError if the name is taken or the password too weak."""
    normal = check_name(name)
    check_password(password)
    if find_user(session, normal) is not None:
        raise AccountError(f"a user named {normal!r} exists already")
    user = User(
        name=normal,
        password_hash=hash_password(password),
        role=role,
        disabled=False,
        created_at=now,
    )
    session.add(user)
    session.flush()
    audit.record(session, actor, "user_add", now, detail=f"{normal} as {role.value}")
    return user


def is_bcrypt_hash(text: str) -> bool:
    """Whether the text is a bcrypt hash as the old handler stored it ($2b$12$ and 53 more)."""
    return bool(_BCRYPT_RE.fullmatch(text))


def import_user(
    session: Session,
    name: str,
    bcrypt_hash: str,
    role: Role,
    now: datetime,
    *,
    actor: str,
    disabled: bool = False,
    source: str = "the old handler",
) -> User:
    """Add a user with the old handler's bcrypt hash, kept as it is until their first login.

    The login replaces it with an argon2id hash, as it does for ADMIN_PASS_HASH.
    AccountError when the name is unusable or taken, or the hash is not bcrypt.
    """
    normal = check_name(name)
    if not is_bcrypt_hash(bcrypt_hash):
        raise AccountError("the password hash is not a bcrypt hash ($2b$...)")
    if find_user(session, normal) is not None:
        raise AccountError(f"a user named {normal!r} exists already")
    user = User(
        name=normal, password_hash=bcrypt_hash, role=role, disabled=disabled, created_at=now
    )
    session.add(user)
    session.flush()
    state = ", disabled" if disabled else ""
    audit.record(
        session, actor, "user_add", now, detail=f"{normal} as {role.value}{state} from {source}"
    )
    return user


def _existing(session: Session, name: str) -> User:
    user = find_user(session, name)
    if user is None:
        raise AccountError(f"there is no user named {normalise_name(name)!r}")
    return user


def end_all_sessions(session: Session, user: User) -> None:
    """Log the user out everywhere."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))


def set_disabled(session: Session, name: str, disabled: bool, now: datetime, *, actor: str) -> User:
    """Disable (ending every session at once) or re-enable a user."""
    user = _existing(session, name)
    user.disabled = disabled
    if disabled:
        end_all_sessions(session, user)
    audit.record(
        session, actor, "user_disable" if disabled else "user_enable", now, detail=user.name
    )
    return user


def set_role(session: Session, name: str, role: Role, now: datetime, *, actor: str) -> User:
    """Change a user's role; their sessions end, so the new role applies from the next login."""
    user = _existing(session, name)
    old = user.role
    user.role = role
    end_all_sessions(session, user)
    audit.record(
        session, actor, "user_role", now, detail=f"{user.name}: {old.value} -> {role.value}"
    )
    return user


def set_password(session: Session, name: str, password: str, now: datetime, *, actor: str) -> User:
    """Give a user a new password; their sessions end."""
    check_password(password)
    user = _existing(session, name)
    user.password_hash = hash_password(password)
    end_all_sessions(session, user)
    audit.record(session, actor, "user_password", now, detail=user.name)
    return user


# Logging in --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginOutcome:
    """A successful login carries the user and a new session token; a refusal says why."""

    user: User | None = None
    token: str | None = None
    #: Refused unchecked: this many seconds must pass first (a growing delay, see the module).
    retry_after: int | None = None

    @property
    def throttled(self) -> bool:
        return self.retry_after is not None


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def login_delay(failures: int) -> timedelta:
    """How long after the last of `failures` recent failures (one name, one address) to wait."""
    if failures < FREE_LOGIN_FAILURES:
        return timedelta(0)
    exponent = min(failures - FREE_LOGIN_FAILURES, 30)
    return min(timedelta(seconds=2**exponent), MAX_LOGIN_DELAY)


def _pair_key(name: str, address: str) -> str:
    # One user name from one address; hashed, as the name may be a mistyped password.
    return _key(f"{normalise_name(name)}\n{address}")


def audited_name(name: str) -> str:
    """A login name as the audit log keeps a failed attempt's: on one line and cut short."""
    text = one_line(name)[:200].strip().lower() or "(empty)"
    return text if len(text) <= AUDITED_NAME_CHARS else text[: AUDITED_NAME_CHARS - 3] + "..."


def log_in(store: Store, name: str, password: str, address: str, now: datetime) -> LoginOutcome:
    """Check a login attempt, throttled per user name and address together; start a session if good.

    The password is checked outside any write transaction: SQLite has one writer at a time and
    the worker should not wait for a deliberately slow hash.
    """
    since = now - THROTTLE_WINDOW
    pair_key = _pair_key(name, address)
    with store.read() as session:
        failures, last = session.execute(
            select(func.count(), func.max(LoginFailure.at)).where(
                LoginFailure.scope == "pair", LoginFailure.key == pair_key, LoginFailure.at > since
            )
        ).one()
        wait = (last + login_delay(int(failures)) - now) if last is not None else timedelta(0)
        user = None if wait > timedelta(0) else find_user(session, name)
    if wait > timedelta(0):
        # The password is not even checked, so guessing faster than the delay gains nothing.
        return LoginOutcome(retry_after=max(1, math.ceil(wait.total_seconds())))
    stored = user.password_hash if user is not None and not user.disabled else _dummy_hash()
    good = verify_password(stored, password) and user is not None and not user.disabled
    new_hash = hash_password(password) if good and _needs_rehash(stored) else None
    with store.write() as session:
        session.execute(delete(LoginFailure).where(LoginFailure.at <= since))
        fresh = session.get(User, user.id) if good and user is not None else None
        if fresh is None or fresh.disabled:  # wrong, or disabled between the two transactions
            session.add(LoginFailure(scope="pair", key=pair_key, at=now))
            audit.record(session, audited_name(name), "login_failed", now, detail=f"from {address}")
            return LoginOutcome()
        session.execute(
            delete(LoginFailure).where(LoginFailure.scope == "pair", LoginFailure.key == pair_key)
        )
        if new_hash is not None:
            fresh.password_hash = new_hash
        fresh.last_login_at = now
        token = secrets.token_urlsafe(32)
        session.add(
            ConsoleSession(
                token_hash=_token_hash(token),
                user_id=fresh.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + SESSION_MAX,
            )
        )
        audit.record(session, fresh.name, "login", now)
    return LoginOutcome(user=fresh, token=token)


def session_user(store: Store, token: str, now: datetime) -> User | None:
    """The active user a session token belongs to, or None (expired, ended or disabled)."""
    token_hash = _token_hash(token)
    with store.read() as session:
        row = session.execute(
            select(ConsoleSession, User)
            .join(User, User.id == ConsoleSession.user_id)
            .where(ConsoleSession.token_hash == token_hash)
        ).first()
    if row is None:
        return None
    console_session: ConsoleSession = row[0]
    user: User = row[1]
    if (
        user.disabled
        or console_session.expires_at <= now
        or console_session.last_seen_at + SESSION_IDLE <= now
    ):
        return None
    if now - console_session.last_seen_at >= _SEEN_RESOLUTION:
        with store.write() as session:
            session.execute(
                update(ConsoleSession)
                .where(ConsoleSession.token_hash == token_hash)
                .values(last_seen_at=now)
            )
    return user


def log_out(session: Session, token: str, actor: str, now: datetime) -> None:
    """End one session."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _token_hash(token)))
    audit.record(session, actor, "logout", now)


# The first admin ---------------------------------------------------------------------------------


def bootstrap_admin(session: Session, console: ConsoleSettings, now: datetime) -> str | None:
    """Create ADMIN_USER as the first admin when no user exists; returns how ("hash"/"plain")."""
    if console.admin_user is None:
        return None
    if session.scalar(select(func.count()).select_from(User)):
        return None
    name = check_name(console.admin_user)
    if console.admin_pass_hash is not None:
        # Kept as the old handler stored it; replaced by an argon2 hash at the first login.
        password_hash, how = console.admin_pass_hash.reveal(), "hash"
    else:
        assert console.admin_pass is not None  # settings refuse ADMIN_USER without either
        password_hash, how = hash_password(console.admin_pass.reveal()), "plain"
    session.add(
        User(
            name=name, password_hash=password_hash, role=Role.ADMIN, disabled=False, created_at=now
        )
    )
    audit.record(session, "start-up", "user_add", now, detail=f"{name} as admin from ADMIN_USER")
    return how


def bootstrap_from_settings(store: Store, console: ConsoleSettings) -> None:
    """At start: create the first admin if asked to, and warn about a plain ADMIN_PASS."""
    if console.admin_user is None:
        return
    try:
        with store.write() as session:
            how = bootstrap_admin(session, console, utcnow())
    except IntegrityError:
        how = None  # another process created it at the same moment
    except (SQLAlchemyError, AccountError) as error:
        log_event(log, "accounts.bootstrap_failed", logging.ERROR, error=type(error).__name__)
        return
    if how is not None:
        log_event(log, "accounts.first_admin_created", source=f"ADMIN_PASS_{how.upper()}")
    if console.admin_pass is not None and console.admin_pass_hash is None:
        log_event(
            log,
            "startup.warning",
            logging.WARNING,
            problem="ADMIN_PASS holds a plain-text password: log in, then remove ADMIN_USER and "
            "ADMIN_PASS from the settings (users are kept in the database)",
        )
