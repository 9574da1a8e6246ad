"""Plan, apply and report the import of an old handler installation.

The plan sets every record of the old files against the database by its natural key (user name,
order ref, ticket template content) and says, for each, what it becomes, that it is here already,
or why it cannot come over. Applying it goes through the same functions a person's actions do:
`accounts.import_user`, `lifecycle.import_failed_order`, `config_store.save_ticket_template`,
each writing its audit row as `import-old`. Running it again finds everything here already.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from utopia_handler import accounts, audit, config_store, lifecycle
from utopia_handler.config_store import ConfigInvalid
from utopia_handler.import_old.files import OldFailure, OldInstallation, OldTemplate, OldUser
from utopia_handler.settings.old_env import OldEnvReview
from utopia_handler.store import queries
from utopia_handler.store.console_models import ConfigKind, Role
from utopia_handler.store.db import Store
from utopia_handler.tickets import TicketRenderer, from_legacy_syntax

ACTOR = "import-old"
ORDER_REF_RE = re.compile(r"UIA[0-9]{6}-[0-9]{6}")
_SITE_RE = re.compile(r"[A-Za-z0-9-]{1,32}")
_JINJA_PLACEHOLDER_RE = re.compile(r"\{\{ ([A-Za-z_]\w*) \}\}")
_MESSAGE_LIMIT = 1000
_ALL_VERSIONS = 100_000
_ENV_HASH = ".env ADMIN_USER with ADMIN_PASS_HASH"
_ENV_PLAIN = ".env ADMIN_USER with ADMIN_PASS"

T = TypeVar("T")


class Outcome(enum.StrEnum):
    NEW = "new"
    HERE = "here already"
    REFUSED = "not imported"


@dataclass(frozen=True)
class Planned(Generic[T]):
    """One record of the old files: what becomes of it (`text`), and what to write if new."""

    outcome: Outcome
    key: str  # user name, order ref or template file, as the report names it
    text: str
    record: T | None = None


@dataclass(frozen=True)
class NewUser:
    name: str
    role: Role
    disabled: bool
    source: str
    bcrypt_hash: str | None  # None: `plain_password` (ADMIN_PASS) is hashed with argon2id
    plain_password: str | None = None


@dataclass(frozen=True)
class NewOrder:
    order_ref: str
    reason: str  # the old failure, for the order's reason
    resolution: str | None  # the old resolution; None: the order waits for a person
    site_id: str | None
    audit_detail: str


@dataclass(frozen=True)
class NewTemplate:
    source: str  # in this handler's syntax
    note: str


@dataclass
class ImportPlan:
    """Everything the import would do, and would not; `applied` once it was written."""

    old: OldInstallation
    users: list[Planned[NewUser]] = field(default_factory=list)
    orders: list[Planned[NewOrder]] = field(default_factory=list)
    templates: list[Planned[NewTemplate]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the database, not one record
    applied: bool = False

    def count(self, outcome: Outcome) -> int:
        """How many records of every kind have this outcome."""
        items: list[Planned[Any]] = [*self.users, *self.orders, *self.templates]
        return sum(1 for item in items if item.outcome == outcome)


# Planning ---------------------------------------------------------------------------------------


def plan_import(
    session: Session | None, old: OldInstallation, renderer: TicketRenderer
) -> ImportPlan:
    """What importing `old` into the database of `session` (None: an empty one) would do."""
    plan = ImportPlan(old=old)
    plan.users = _plan_users(session, old)
    plan.orders = _plan_orders(session, old.failures, old.unnamed_failures)
    plan.templates = _plan_templates(session, old.templates, renderer)
    return plan


def _plan_users(session: Session | None, old: OldInstallation) -> list[Planned[NewUser]]:
    planned: list[Planned[NewUser]] = []
    seen: dict[str, str] = {}
    candidates: list[tuple[OldUser, str]] = [(u, "users.json") for u in old.users]
    admin = _env_admin(old.env)
    if admin is not None:
        candidates.append(admin)
    for user, source in candidates:
        shown = user.name or "(no name)"
        try:
            name = accounts.check_name(user.name)
        except accounts.AccountError as problem:
            hint = "add them under such a name with `utopia-handler users add NAME --role ROLE`"
            planned.append(Planned(Outcome.REFUSED, repr(shown), f"{problem}; {hint}"))
            continue
        if name in seen:
            if source != "users.json":
                continue  # ADMIN_USER is one of the users of the file: the file's entry counts
            planned.append(
                Planned(Outcome.REFUSED, name, f"the same user as {seen[name]!r} (case is ignored)")
            )
            continue
        seen[name] = user.name
        existing = accounts.find_user(session, name) if session is not None else None
        if existing is not None:
            planned.append(
                Planned(
                    Outcome.HERE,
                    name,
                    f"a user of that name exists ({existing.role.value}); left as it is",
                )
            )
            continue
        role = Role.ADMIN if user.may_edit_config else Role.OPERATOR
        new = _new_user(user, name, role, source)
        if isinstance(new, str):
            planned.append(Planned(Outcome.REFUSED, name, new))
            continue
        state = ", disabled as there" if user.disabled else ""
        why = "may edit the config there" if role == Role.ADMIN else "may not edit the config there"
        how = (
            "the old password works (bcrypt, replaced by argon2id at the first log-in)"
            if new.bcrypt_hash is not None
            else "ADMIN_PASS is its password (hashed with argon2id now)"
        )
        planned.append(
            Planned(Outcome.NEW, name, f"{role.value} ({why}){state}, from {source}; {how}", new)
        )
    return planned


def _new_user(user: OldUser, name: str, role: Role, source: str) -> NewUser | str:
    """The user to create, or why it cannot be (never showing the password or its hash)."""
    secret = user.password_hash
    hint = f"add them with `utopia-handler users add {name} --role {role.value}`"
    if source == _ENV_PLAIN and secret is not None:
        try:
            accounts.check_password(secret)
        except accounts.AccountError as problem:
            return f"ADMIN_PASS: {problem}; {hint}"
        return NewUser(name, role, user.disabled, source, None, plain_password=secret)
    if not secret:
        return f"no password hash in {source}; {hint}"
    if not accounts.is_bcrypt_hash(secret):
        return f"the password in {source} is not a bcrypt hash ($2b$...); {hint}"
    return NewUser(name, role, user.disabled, source, secret)


def _env_admin(env: OldEnvReview | None) -> tuple[OldUser, str] | None:
    """ADMIN_USER of the old .env, as one more admin with ADMIN_PASS_HASH (or ADMIN_PASS)."""
    if env is None or not env.values.get("ADMIN_USER", "").strip():
        return None
    name = env.values["ADMIN_USER"].strip()
    raw_hash = env.values.get("ADMIN_PASS_HASH", "").strip()
    if raw_hash:
        return OldUser(name, raw_hash, True, disabled=False), _ENV_HASH
    plain = env.values.get("ADMIN_PASS", "")
    return OldUser(name, plain or None, True, disabled=False), _ENV_PLAIN


def _plan_orders(
    session: Session | None, failures: Sequence[OldFailure], unnamed: int
) -> list[Planned[NewOrder]]:
    planned: list[Planned[NewOrder]] = []
    for failure in failures:
        ref = failure.order_ref
        if not ORDER_REF_RE.fullmatch(ref):
            planned.append(
                Planned(
                    Outcome.REFUSED,
                    repr(ref[:80]),
                    "not a UTOPIA order ref (UIA, 6 digits, '-', 6 digits, as UIA202502-011873)",
                )
            )
            continue
        order = queries.find_order(session, ref) if session is not None else None
        if order is not None:
            planned.append(
                Planned(Outcome.HERE, ref, f"known already ({order.state.value}); left as it is")
            )
            continue
        new = _new_order(failure)
        if new.resolution is None:
            text = f"waits for a person: {_failure_words(failure)}"
        else:
            text = f"done, resolved by hand: {_resolution_words(failure)}"
        planned.append(Planned(Outcome.NEW, ref, text, new))
    if unnamed:
        entries = "1 entry names" if unnamed == 1 else f"{unnamed} entries name"
        planned.append(Planned(Outcome.REFUSED, "(no order ref)", f"{entries} no order"))
    return planned


def _failure_words(failure: OldFailure) -> str:
    """The old failure in a few words, without its message (it may name the customer)."""
    retries = (
        f", retried {failure.retry_count} times there" if failure.retry_count is not None else ""
    )
    entries = f", {failure.entries} entries" if failure.entries > 1 else ""
    return f"{failure.failure_type or 'failure of unknown type'}{retries}{entries}"


def _resolution_words(failure: OldFailure) -> str:
    by = failure.resolved_by or "someone"
    at = f" on {failure.resolved_at}" if failure.resolved_at else ""
    return f"by {by}{at} in the old handler"


def _new_order(failure: OldFailure) -> NewOrder:
    message = failure.message[:_MESSAGE_LIMIT] or "(no message)"
    kind = failure.failure_type or "failure of unknown type"
    retried = (
        f"retried {failure.retry_count} times there"
        if failure.retry_count is not None
        else "retries not recorded"
    )
    when = (
        f"last failed {failure.failed_at} by the old handler's clock" if failure.failed_at else ""
    )
    facts = ", ".join(part for part in (retried, when) if part)
    if failure.entries > 1:
        facts += f", {failure.entries} entries in failed_orders.json"
    old = f"{kind}: {message} ({facts})"
    reason = (
        f"failed in the old handler, imported: {old}. A retry runs every step from the contract "
        "lookup and finds a customer the old handler may have made"
    )
    resolution = None
    if failure.resolved:
        note = failure.note or "(no note)"
        resolution = (
            f"resolved by hand by {failure.resolved_by or 'someone'} in the old handler"
            f"{' on ' + failure.resolved_at if failure.resolved_at else ''}: {note}; "
            f"it had failed there: {old}"
        )
    site = failure.site_id if failure.site_id and _SITE_RE.fullmatch(failure.site_id) else None
    detail = f"from failed_orders.json: {old}"
    if resolution is not None:
        detail += f"; {_resolution_words(failure)}: {failure.note or '(no note)'}"
    return NewOrder(failure.order_ref, reason, resolution, site, detail)


def content_hash(source: str) -> str:
    """The natural key of a ticket template: the SHA-256 of its text."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def translate_template(source: str) -> tuple[str, str]:
    """The template in this handler's syntax, and what was translated, in words."""
    if "{{" in source or "{%" in source:
        return source, "kept as written: it uses this handler's {{ }} syntax already"
    translated = from_legacy_syntax(source)
    names = Counter(_JINJA_PLACEHOLDER_RE.findall(translated))
    if not names:
        return translated, "no placeholders"
    words = ", ".join(
        f"{{{name}}} -> {{{{ {name} }}}}" + (f" ({count} places)" if count > 1 else "")
        for name, count in names.items()
    )
    return translated, f"placeholders translated: {words}"


def _plan_templates(
    session: Session | None, templates: Sequence[OldTemplate], renderer: TicketRenderer
) -> list[Planned[NewTemplate]]:
    # The one in use goes last, so it is the version in force; the others become history.
    ordered = sorted(templates, key=lambda t: (t.in_use, t.edited_at, t.name))
    versions = (
        config_store.history(session, ConfigKind.TICKET_TEMPLATE, limit=_ALL_VERSIONS)
        if session is not None
        else []
    )
    stored = {content_hash(str(v.value.get("source", ""))): v for v in versions}
    saved_in_console = next((v for v in versions if v.created_by != ACTOR), None)
    translated = [translate_template(t.source) for t in ordered]
    here = [
        content_hash(source) in stored or content_hash(t.source) in stored
        for t, (source, _) in zip(ordered, translated, strict=True)
    ]
    last_here = max((i for i, is_here in enumerate(here) if is_here), default=-1)
    planned: list[Planned[NewTemplate]] = []
    for index, (template, (source, words)) in enumerate(zip(ordered, translated, strict=True)):
        edited = _edited_words(template)
        if here[index]:
            version = stored.get(content_hash(source)) or stored[content_hash(template.source)]
            planned.append(Planned(Outcome.HERE, template.name, f"as version {version.id}"))
            continue
        if saved_in_console is not None:
            planned.append(
                Planned(
                    Outcome.REFUSED,
                    template.name,
                    f"a ticket template was saved in the console here (version "
                    f"{saved_in_console.id} by {saved_in_console.created_by}); the old one would "
                    "replace it: paste it in the console if it should",
                )
            )
            continue
        if index < last_here:
            planned.append(
                Planned(
                    Outcome.REFUSED,
                    template.name,
                    f"older than {ordered[last_here].name}, which is here already; importing it "
                    "now would put it in force instead",
                )
            )
            continue
        try:
            config_store.preview_ticket(renderer, source)
        except ConfigInvalid as invalid:
            planned.append(
                Planned(
                    Outcome.REFUSED,
                    template.name,
                    f"it does not render here: {'; '.join(invalid.problems)} ({words})",
                )
            )
            continue
        in_force = "in force" if index == len(ordered) - 1 else "kept in the history"
        note = f"from the old handler: {template.name}{edited}"
        planned.append(
            Planned(
                Outcome.NEW,
                template.name,
                f"a new ticket template version, {in_force}; {words}{edited}",
                NewTemplate(source, note),
            )
        )
    return planned


def _edited_words(template: OldTemplate) -> str:
    by = f" by {template.edited_by}" if template.edited_by else ""
    at = f" at {template.edited_at}" if template.edited_at else ""
    return f"; last edited{by}{at}" if by or at else ""


# Applying ---------------------------------------------------------------------------------------


def apply_import(
    session: Session, plan: ImportPlan, renderer: TicketRenderer, now: datetime
) -> ImportPlan:
    """Write what the plan marks new, in the caller's transaction; the plan as it was applied."""
    users = [_apply_user(session, item, now) for item in plan.users]
    orders = [_apply_order(session, item, now) for item in plan.orders]
    templates = [_apply_template(session, item, renderer, now) for item in plan.templates]
    applied = replace(plan, users=users, orders=orders, templates=templates, applied=True)
    imported = applied.count(Outcome.NEW)
    if imported:
        counts = (
            f"{_count(users)} users, {_count(orders)} orders, {_count(templates)} ticket templates"
        )
        audit.record(session, ACTOR, "import_old", now, detail=f"from {plan.old.folder}: {counts}")
    return applied


def _count(items: Sequence[Planned[T]]) -> int:
    return sum(1 for item in items if item.outcome == Outcome.NEW)


def _apply_user(session: Session, item: Planned[NewUser], now: datetime) -> Planned[NewUser]:
    new = item.record
    if item.outcome != Outcome.NEW or new is None:
        return item
    try:
        if new.bcrypt_hash is not None:
            accounts.import_user(
                session,
                new.name,
                new.bcrypt_hash,
                new.role,
                now,
                actor=ACTOR,
                disabled=new.disabled,
                source=f"the old handler's {new.source}",
            )
        else:
            assert new.plain_password is not None
            user = accounts.add_user(
                session, new.name, new.plain_password, new.role, now, actor=ACTOR
            )
            user.disabled = new.disabled
    except accounts.AccountError as problem:  # added meanwhile, by someone else
        return replace(item, outcome=Outcome.REFUSED, text=str(problem), record=None)
    return item


def _apply_order(session: Session, item: Planned[NewOrder], now: datetime) -> Planned[NewOrder]:
    new = item.record
    if item.outcome != Outcome.NEW or new is None:
        return item
    order = lifecycle.import_failed_order(
        session, new.order_ref, new.reason, now, site_id=new.site_id, resolution=new.resolution
    )
    if order is None:  # recorded meanwhile, by a callback
        return replace(item, outcome=Outcome.HERE, text="known already", record=None)
    audit.record(
        session, ACTOR, "import_failed_order", now, order_ref=new.order_ref, detail=new.audit_detail
    )
    return item


def _apply_template(
    session: Session, item: Planned[NewTemplate], renderer: TicketRenderer, now: datetime
) -> Planned[NewTemplate]:
    new = item.record
    if item.outcome != Outcome.NEW or new is None:
        return item
    version = config_store.save_ticket_template(
        session, renderer, new.source, ACTOR, now, note=new.note
    )
    return replace(item, text=f"version {version.id}: {item.text}")


# Running ----------------------------------------------------------------------------------------


def run_import(
    store: Store | None,
    old: OldInstallation,
    renderer: TicketRenderer,
    now: datetime,
    *,
    dry_run: bool,
) -> ImportPlan:
    """Plan the import and, unless `dry_run`, write it in one transaction.

    `store` is None on a dry run against an SQLite file that does not exist yet: opening it
    would create it, and a dry run writes nothing.
    """
    if store is None:
        plan = plan_import(None, old, renderer)
        plan.notes.append("the database does not exist yet: planned as for an empty one")
        return plan
    if dry_run:
        try:
            with store.read() as session:
                return plan_import(session, old, renderer)
        except SQLAlchemyError as error:
            plan = plan_import(None, old, renderer)
            plan.notes.append(
                f"the database could not be read ({type(error).__name__}; not migrated yet?): "
                "planned as for an empty one"
            )
            return plan
    store.migrate()
    with store.write() as session:
        plan = plan_import(session, old, renderer)
        return apply_import(session, plan, renderer, now)


def database_missing(database_url: str) -> bool:
    """Whether the database is an SQLite file that does not exist (yet)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return False
    return not url.database or url.database == ":memory:" or not Path(url.database).exists()


# The report -------------------------------------------------------------------------------------


def report_lines(plan: ImportPlan, *, dry_run: bool) -> list[str]:
    """What was imported and what was not, and why; then the old .env compared."""
    old = plan.old
    new_word = "would import" if dry_run else "imported"
    lines = [
        f"import-old from {old.folder}" + (" (dry run: nothing is written)" if dry_run else "")
    ]
    lines += [f"  note: {note}" for note in plan.notes]
    sections: list[tuple[str, Sequence[Planned[Any]], list[str], str]] = [
        ("users", plan.users, old.users_file.problems, _where(old.users_file.path, old.folder)),
        (
            "failed orders",
            plan.orders,
            old.orders_file.problems,
            _where(old.orders_file.path, old.folder),
        ),
        (
            "ticket template",
            plan.templates,
            old.templates_file.problems,
            _where(old.templates_file.path, old.folder),
        ),
    ]
    labels = {Outcome.NEW: new_word, Outcome.HERE: "here already", Outcome.REFUSED: "not imported"}
    for title, items, problems, where in sections:
        lines.append("")
        lines.append(f"{title} ({where})")
        lines += [f"  problem: {problem}" for problem in problems]
        if not items and not problems:
            lines.append("  nothing to import")
        lines += [f"  {labels[item.outcome]}: {item.key}: {item.text}" for item in items]
    lines.append("")
    lines += _env_lines(old.env)
    lines.append("")
    lines.append(
        f"{new_word}: {plan.count(Outcome.NEW)}; here already: {plan.count(Outcome.HERE)}; "
        f"not imported: {plan.count(Outcome.REFUSED)}"
    )
    return lines


def _where(path: Path | None, folder: Path) -> str:
    if path is None:
        return "not found"
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def _env_lines(env: OldEnvReview | None) -> list[str]:
    if env is None:
        return [".env (not found): nothing to compare"]
    lines = [".env (checked with this handler's settings loader; secrets are never shown)"]
    groups = (
        ("means something else here", env.changed),
        ("missing", env.missing),
        ("refused by the loader", env.refused),
    )
    for title, entries in groups:
        if entries:
            lines.append(f"  {title}:")
            lines += [f"    - {entry}" for entry in entries]
    if env.unused:
        lines.append(f"  not read by this handler: {', '.join(env.unused)}")
    return lines
