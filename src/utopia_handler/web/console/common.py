"""The console blueprint and what its views share: the logged-in user, roles, page helpers, words."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, request

from utopia_handler.addresses import state_code
from utopia_handler.provisioning import ADD_A_PLAN_MAPPING, MAP_THE_PLAN
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import Role, User
from utopia_handler.store.models import (
    AttemptOutcome,
    CallbackOutcome,
    MessageActionKind,
    MessageActionState,
    NotificationKind,
    NotificationState,
    OrderState,
    Step,
)
from utopia_handler.text import is_unsafe_character
from utopia_handler.web.security import from_trusted_proxy

bp = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/console/static",
)

PAGE_SIZE = 50
P = ParamSpec("P")
R = TypeVar("R")

# Every console response: nothing from other origins, no framing, no referrer to other sites
# (PowerCode links), no sniffing, and pages with customer data are never cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

STATE_WORDS = {
    OrderState.RECEIVED: "received",
    OrderState.IN_PROGRESS: "in progress",
    OrderState.WAITING: "waiting for a person",
    OrderState.DONE: "done",
    OrderState.DUPLICATE: "duplicate",
    OrderState.NOT_OURS: "not ours",
    OrderState.IGNORED: "ignored",
    OrderState.RECORDED: "recorded, not provisioned",
}
STATE_HELP = {
    OrderState.RECEIVED: "stored, not started yet",
    OrderState.IN_PROGRESS: "being worked on, or waiting for its next automatic retry",
    OrderState.WAITING: "stopped until a person looks; the reason says why",
    OrderState.DONE: "customer, services, ticket, tags and e-mail all done",
    OrderState.DUPLICATE: "the customer existed in PowerCode before this order",
    OrderState.NOT_OURS: "UTOPIA has no record of this order for this ISP",
    OrderState.IGNORED: "a person decided nothing is to be done",
    OrderState.RECORDED: "known from UTOPIA but not provisioned (listed before installation, or "
    "no new-order message yet); a person may provision it",
}
STEP_WORDS = {
    Step.LOOKUP_CONTRACT: "Look up the contract at UTOPIA",
    Step.CHOOSE_PLANS: "Choose the PowerCode services",
    Step.FIND_CUSTOMER: "Check for an existing PowerCode customer",
    Step.CREATE_CUSTOMER: "Create the PowerCode customer",
    Step.ADD_SERVICES: "Add the services",
    Step.CREATE_TICKET: "Open the installation ticket",
    Step.ADD_TAGS: "Add the tags",
    Step.NOTIFY: "E-mail staff",
    Step.FINISHED: "Finished",
}
OUTCOME_WORDS = {
    AttemptOutcome.STARTED: "started, no result recorded",
    AttemptOutcome.OK: "done",
    AttemptOutcome.RETRY: "failed; tried again later",
    AttemptOutcome.UNCERTAIN: "no reply: it may have happened",
    AttemptOutcome.REJECTED: "refused",
    AttemptOutcome.HELD: "stopped for a person",
    AttemptOutcome.FINAL: "the order ended here",
    AttemptOutcome.FAILED: "internal error",
}
CALLBACK_WORDS = {
    CallbackOutcome.QUEUED: "new order queued",
    CallbackOutcome.REPEAT: "repeat delivery; nothing new started",
    CallbackOutcome.TEST_QUEUED: "test e-mail queued",
    CallbackOutcome.NOT_HANDLED: "not handled (no route for this message)",
    CallbackOutcome.ROUTED: "routed: its action was queued",
    CallbackOutcome.IGNORED: "stored; the routing table says to do nothing else",
}
EMAIL_WORDS = {
    NotificationKind.SUCCESS: "customer created",
    NotificationKind.DUPLICATE: "duplicate customer",
    NotificationKind.HELD: "order waiting for a person",
    NotificationKind.FAILED: "order failed",
    NotificationKind.TEST: "test",
    NotificationKind.MISSED_ORDERS: "missed orders found by reconciliation",
    NotificationKind.RECONCILE_STALE: "UTOPIA's order list not read for too long",
    NotificationKind.MESSAGE: "UTOPIA message",
    NotificationKind.SUBSCRIBER: "subscriber action",
}
ACTION_WORDS = {
    MessageActionKind.NOTIFY: "E-mail staff",
    MessageActionKind.HOLD: "Hold the order for a person",
    MessageActionKind.TICKET: "Open a PowerCode ticket",
    MessageActionKind.NOTE: "Add a line to the customer's notes",
}
ACTION_STATE_WORDS = {
    MessageActionState.PENDING: "to do",
    MessageActionState.DONE: "done",
    MessageActionState.WAITING: "waiting for a person",
    MessageActionState.CLOSED: "closed by a person",
}
EMAIL_STATE_WORDS = {
    NotificationState.PENDING: "waiting to be sent",
    NotificationState.SENT: "sent",
    NotificationState.FAILED: "gave up",
}


# Step names as stored ("choose_plans: ...", "queued at find_customer") and as people read them.
_STEP_PREFIX_RE = re.compile(r"^(" + "|".join(s.value for s in Step) + r"): ")
_STEP_NAME_RE = re.compile(r"\b(" + "|".join(s.value for s in Step if s != Step.FINISHED) + r")\b")
_TAG_LIST_RE = re.compile(r"tags added: \[([0-9, ]*)\]")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def tag_words(tags: list[int] | None) -> str:
    """PowerCode tags as the console shows them: "tag 3, tag 5" (their names are not known)."""
    return ", ".join(f"tag {tag}" for tag in tags or ())


# What a held order's reason tells an admin to do, as readers who cannot edit plans may act.
_PLAN_ADVICE = {
    Role.OPERATOR: "only an admin can change the plan mapping: ask one, or correct the order "
    "and choose a plan for it",
    Role.VIEWER: "an admin can add it to the plan mapping, or an operator can correct the order",
}


def in_words(text: str | None, role: Role | None = None) -> str:
    """A stored reason or audit detail as people read it: step names in words, and advice about
    the plan mapping replaced by what the reader's role can do."""
    if not text:
        return ""
    prefix = _STEP_PREFIX_RE.match(text)
    if prefix is not None:
        text = f"{STEP_WORDS[Step(prefix.group(1))]}: {text[prefix.end() :]}"
    text = _STEP_NAME_RE.sub(lambda m: f"“{STEP_WORDS[Step(m.group(1))]}”", text)
    text = text.replace("at finished", "after the last step")
    # PowerCode's tag names are not known here: tags are "tag 3" wherever the console shows them.
    text = _TAG_LIST_RE.sub(lambda m: f"tags added: {tag_words(_ints(m.group(1)))}", text)
    if role is not None and not role.allows(Role.ADMIN):
        advice = _PLAN_ADVICE[Role.OPERATOR if role.allows(Role.OPERATOR) else Role.VIEWER]
        text = text.replace(MAP_THE_PLAN, advice).replace(ADD_A_PLAN_MAPPING, advice)
    return text


def runtime() -> Runtime:
    """The process's Runtime."""
    found: Runtime = current_app.extensions["runtime"]
    return found


def current_user() -> User:
    """The logged-in user (every console view but login runs with one)."""
    user: User | None = g.get("user")
    if user is None:
        abort(401)
    return user


def require(role: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let only users with at least `role` run the view; others get 403."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            if not current_user().role.allows(role):
                abort(403)
            return view(*args, **kwargs)

        return guarded

    return decorate


def page_number() -> int:
    """The ?page= number, from 1."""
    raw = request.args.get("page", "1")
    return max(1, int(raw)) if raw.isdigit() and len(raw) < 7 else 1


def safe_target(target: str | None) -> str | None:
    """The path of this site to go back to after login, or None: never another site.

    Judged as a browser will read it: browsers drop tabs and line breaks inside a URL and read
    "\\" as "/", so "/\\t/evil.example" is "//evil.example", another site. Whitespace and control
    characters are removed and backslashes made slashes first; what is left must be a path with
    neither scheme nor host.
    """
    if not target:
        return None
    cleaned = "".join(
        char for char in target if not (char.isspace() or is_unsafe_character(char))
    ).replace("\\", "/")
    try:
        parts = urlsplit(cleaned)
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not cleaned.startswith("/") or cleaned.startswith("//"):
        return None
    return cleaned


def utc(value: datetime | None) -> str:
    """A stored time as people read it."""
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else ""


def duration(seconds: float) -> str:
    """Seconds as '3 d 4 h', '2 h 5 min', '4 min' or '12 s'."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def came_over_https() -> bool:
    """Whether the browser reached us over https: directly, or as a trusted proxy says.

    A proxy's X-Forwarded-Proto counts only from `TRUSTED_PROXIES` (the last value: the one the
    proxy next to us wrote). gunicorn already turns it into the scheme for local proxies.
    """
    guard = runtime().settings.web.guard
    if from_trusted_proxy(request.remote_addr, guard.trusted_proxies):
        said = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
        if said:
            return said == "https"
    return request.scheme == "https"


def cookie_needs_https() -> bool:
    """Whether logging in cannot work now: the session cookie is Secure and this is plain http.

    A browser does not send a Secure cookie back over http (some make an exception for
    localhost), so the login form would only ever answer "missing its security token".
    """
    return runtime().settings.console.session_cookie_secure and not came_over_https()


def template_globals() -> dict[str, Any]:
    """Names every console template may use."""
    return {
        "STATE_WORDS": STATE_WORDS,
        "STATE_HELP": STATE_HELP,
        "STEP_WORDS": STEP_WORDS,
        "OUTCOME_WORDS": OUTCOME_WORDS,
        "CALLBACK_WORDS": CALLBACK_WORDS,
        "EMAIL_WORDS": EMAIL_WORDS,
        "EMAIL_STATE_WORDS": EMAIL_STATE_WORDS,
        "ACTION_WORDS": ACTION_WORDS,
        "ACTION_STATE_WORDS": ACTION_STATE_WORDS,
        "MessageActionState": MessageActionState,
        "OrderState": OrderState,
        "Role": Role,
        "Step": Step,
        "cookie_needs_https": cookie_needs_https,
    }


def _in_words_for_reader(text: str | None) -> str:
    user: User | None = g.get("user")
    return in_words(text, user.role if user is not None else Role.VIEWER)


bp.add_app_template_filter(utc, "utc")
bp.add_app_template_filter(_in_words_for_reader, "in_words")
bp.add_app_template_filter(tag_words, "tag_words")
bp.add_app_template_filter(lambda state: state_code(state or "") or state, "state_code")
