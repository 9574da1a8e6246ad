"""Orders: the list (filter, search, counts), one order's whole story, and what a person can do.

Search text is posted and kept in the session, never put in a URL: it is often a customer's name.
Every action calls `utopia_handler.actions`, the same functions the CLI uses; the worker does
the work with its usual exactly-once checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import abort, flash, jsonify, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from jinja2 import TemplateError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from utopia_handler import actions, audit, config_store, lifecycle
from utopia_handler.actions import ActionRefused
from utopia_handler.clients.utopia import Contract
from utopia_handler.config_store import ConfigInvalid
from utopia_handler.notify.outbox import order_facts
from utopia_handler.reconcile import ACTOR as RECONCILIATION
from utopia_handler.store import queries
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import (
    ACTIVE_STATES,
    AttemptOutcome,
    MessageAction,
    Notification,
    Order,
    OrderState,
    SiteDecision,
    Step,
    SubscriberAction,
)
from utopia_handler.subscriber_work import WORKER_ACTOR
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import (
    ACTION_STATE_WORDS,
    ACTION_WORDS,
    CALLBACK_WORDS,
    EMAIL_STATE_WORDS,
    EMAIL_WORDS,
    OUTCOME_WORDS,
    PAGE_SIZE,
    STATE_WORDS,
    STEP_WORDS,
    bp,
    current_user,
    in_words,
    require,
    runtime,
)

SEARCH_KEY = "order_search"
MAX_SEARCH = 100
# The list applies the search kept in the session only when its address says so (?search=1):
# the search form, the state tabs and the pages of a search carry it; links from Home and the
# navigation do not, so an old search never hides the orders they point to.
SEARCH_ARG = "search"


def _state_filter() -> OrderState | None:
    raw = request.args.get("state", "")
    try:
        return OrderState(raw) if raw else None
    except ValueError:
        return None


def _id_arg(name: str) -> int | None:
    """An order id from the address (?before= or ?after=), or None."""
    raw = request.args.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


def _applied_search() -> str:
    """The session's search text, when this address asks for it; otherwise none."""
    if request.args.get(SEARCH_ARG) != "1":
        return ""
    return str(session.get(SEARCH_KEY) or "")


def _matching(db: Session, search: str) -> tuple[ColumnElement[bool] | None, bool]:
    """The search's condition, and whether its reading of rows is bounded to the newest
    orders (queries.SEARCH_SCAN_ORDERS)."""
    if not search:
        return None, False
    floor = queries.search_floor(db)
    return queries.order_search_ids(search, scan_from=floor), floor is not None


@bp.get("/orders")
def order_list() -> ResponseReturnValue:
    state = _state_filter()
    search = _applied_search()
    before, after = _id_arg("before"), _id_arg("after")
    with runtime().store.read() as db:
        matching, scan_bounded = _matching(db, search)
        counts = queries.count_orders_bounded(db, matching)
        where = [c for c in (matching, Order.state == state if state else None) if c is not None]
        page = queries.page_of_orders(db, where, PAGE_SIZE, before=before, after=after)

    def link(before: int | None = None, after: int | None = None) -> str:
        # Every page is an address of its own: the state and the search go with it.
        return url_for(
            "console.order_list",
            state=state.value if state else None,
            search="1" if search else None,
            before=before,
            after=after,
        )

    return render_template(
        "console/orders.html",
        orders=page.orders,
        counts=counts,
        state=state,
        search=search,
        kept_search=str(session.get(SEARCH_KEY) or "") if not search else "",
        search_arg="1" if search else None,
        shown_total=counts.shown(state),
        newest_url=link() if before or after else None,
        newer_url=link(after=page.newer) if page.newer else None,
        older_url=link(before=page.older) if page.older else None,
        scan_bounded=scan_bounded,
        scan_orders=queries.SEARCH_SCAN_ORDERS,
    )


@bp.get("/orders/counts")
def order_counts() -> ResponseReturnValue:
    """Orders per state as JSON, for Home's and the list's counts to refresh themselves.

    Each is counted up to queries.COUNT_CAP; `shown` is what the page prints ("1000+")."""
    search = _applied_search()
    with runtime().store.read() as db:
        counts = queries.count_orders_bounded(db, _matching(db, search)[0])
    shown = {s.value: counts.shown(s) for s in OrderState}
    return jsonify(
        {
            "counts": {s.value: counts.counts[s] for s in OrderState},
            "all": counts.all,
            "shown": {**shown, "all": counts.shown()},
        }
    )


@bp.post("/orders/search")
def order_search() -> ResponseReturnValue:
    text = " ".join(request.form.get("q", "").split())[:MAX_SEARCH]
    if text:
        session[SEARCH_KEY] = text
    else:
        session.pop(SEARCH_KEY, None)
    state = _state_filter()
    return redirect(
        url_for(
            "console.order_list",
            state=state.value if state else None,
            search="1" if text else None,
        ),
        303,
    )


@bp.post("/orders/search/clear")
def order_search_clear() -> ResponseReturnValue:
    session.pop(SEARCH_KEY, None)
    state = _state_filter()  # clearing the search keeps the state the list was filtered by
    return redirect(url_for("console.order_list", state=state.value if state else None), 303)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # callback, attempt, email, person, reconciliation
    title: str
    outcome: str
    detail: str
    tone: str  # ok, warn, bad, info: how the entry is coloured


_OUTCOME_TONE = {
    AttemptOutcome.OK: "ok",
    AttemptOutcome.FINAL: "info",
    AttemptOutcome.RETRY: "warn",
    AttemptOutcome.UNCERTAIN: "warn",
    AttemptOutcome.STARTED: "warn",
    AttemptOutcome.REJECTED: "bad",
    AttemptOutcome.HELD: "bad",
    AttemptOutcome.FAILED: "bad",
}


def _timeline(
    db: Session, order: Order
) -> tuple[list[TimelineEntry], list[Notification], list[MessageAction], list[SubscriberAction]]:
    callbacks, attempts, emails = queries.order_history(db, order)
    routed, routed_attempts = queries.message_actions(db, order)
    entries: list[TimelineEntry] = []
    for callback in callbacks:
        entries.append(
            TimelineEntry(
                callback.received_at,
                "callback",
                f"Callback from UTOPIA: {callback.msg}",
                CALLBACK_WORDS[callback.outcome],
                f"event {callback.event}" if callback.event else "",
                "info",
            )
        )
    for attempt in attempts:
        words = OUTCOME_WORDS[attempt.outcome]
        if attempt.outcome == AttemptOutcome.STARTED and order.lease_owner == attempt.worker:
            words = "running now"
        entries.append(
            TimelineEntry(
                attempt.started_at,
                "attempt",
                f"{STEP_WORDS[attempt.step]} (run {attempt.run}, attempt {attempt.attempt})",
                words,
                attempt.detail or "",
                _OUTCOME_TONE[attempt.outcome],
            )
        )
    subscriber_actions, subscriber_attempts = queries.subscriber_actions(db, order)
    asked = {action.id: action for action in subscriber_actions}
    for step_attempt in subscriber_attempts:
        entries.append(
            TimelineEntry(
                step_attempt.started_at,
                "subscriber",
                f"Subscriber {asked[step_attempt.action_id].action.value}: "
                f"{step_attempt.step} (run {step_attempt.run}, attempt {step_attempt.attempt})",
                OUTCOME_WORDS[step_attempt.outcome],
                step_attempt.detail or "",
                _OUTCOME_TONE[step_attempt.outcome],
            )
        )
    by_id = {action.id: action for action in routed}
    for routed_attempt in routed_attempts:
        action = by_id[routed_attempt.action_id]
        words = OUTCOME_WORDS[routed_attempt.outcome]
        if (
            routed_attempt.outcome == AttemptOutcome.STARTED
            and action.lease_owner == routed_attempt.worker
        ):
            words = "running now"
        entries.append(
            TimelineEntry(
                routed_attempt.started_at,
                "routed",
                f"{ACTION_WORDS[action.action]} for “{action.msg}” (run {routed_attempt.run}, "
                f"attempt {routed_attempt.attempt})",
                words,
                routed_attempt.detail or "",
                _OUTCOME_TONE[routed_attempt.outcome],
            )
        )
    for email in emails:
        entries.append(
            TimelineEntry(
                email.created_at,
                "email",
                f"E-mail to staff: {EMAIL_WORDS[email.kind]}",
                EMAIL_STATE_WORDS[email.state],
                email.last_error or "",
                {"sent": "ok", "failed": "bad"}.get(email.state.value, "warn"),
            )
        )
    for entry in audit.entries(db, limit=200, order_ref=order.order_ref):
        automatic = entry.actor in (RECONCILIATION, WORKER_ACTOR)
        entries.append(
            TimelineEntry(
                entry.at,
                "reconciliation" if automatic else "person",
                f"{entry.actor}: {entry.action.replace('_', ' ')}",
                "automatic" if automatic else "by a person",
                entry.detail or "",
                "warn" if automatic else "info",
            )
        )
    entries.sort(key=lambda e: e.at)
    return entries, list(emails), routed, subscriber_actions


@dataclass(frozen=True)
class EmailView:
    subject: str
    text: str


def _email_view(order: Order, email: Notification) -> EmailView:
    """A staff e-mail as the outbox renders it from what the order holds now."""
    try:
        rendered = runtime().emails.render(
            email.kind, order_facts(order), dict(email.context), attachment_note=""
        )
    except TemplateError:
        return EmailView("(cannot be shown)", "")
    return EmailView(rendered.subject, rendered.text)


def _live(order: Order, now: datetime) -> dict[str, object]:
    """What the order page's script compares to know the order moved on, and how often to ask."""
    leased = lifecycle.is_leased(order, now)
    due_soon = order.next_attempt_at <= now + timedelta(minutes=1)
    return {
        "fingerprint": f"{order.state.value}/{order.step.value}/{order.run}/"
        f"{order.updated_at.isoformat()}/{int(leased)}",
        "settled": order.state not in ACTIVE_STATES and not leased,
        "poll_seconds": 2 if leased or due_soon else 15,
    }


@bp.get("/orders/<int:order_id>/status")
def order_status(order_id: int) -> ResponseReturnValue:
    """The order's state as JSON, for its page to refresh itself until the order settles."""
    with runtime().store.read() as db:
        order = db.get(Order, order_id)
        if order is None:
            abort(404)
        live = _live(order, utcnow())
    return jsonify({"state": order.state.value, "step": order.step.value, **live})


@bp.get("/orders/<int:order_id>")
def order_page(order_id: int) -> ResponseReturnValue:
    now = utcnow()
    with runtime().store.read() as db:
        order = db.get(Order, order_id)
        if order is None:
            abort(404)
        timeline, emails, routed, subscriber_actions = _timeline(db, order)
        _, maybe_applied = queries.earlier_attempts(db, order, order.step)
        would_have_sent = queries.shadow_writes(db, order.id)
        provisioning = config_store.current_provisioning(db, runtime().settings.provisioning)
    plan_wait = actions.waits_for_plan_mapping(order, provisioning)
    contract = Contract.from_json(order.contract) if order.contract else None
    powercode = runtime().settings.powercode
    leased = bool(order.lease_owner and order.lease_expires_at and order.lease_expires_at > now)
    return render_template(
        "console/order.html",
        order=order,
        contract=contract,
        timeline=timeline,
        emails=emails,
        routed=routed,
        subscriber_actions=subscriber_actions,
        # A pending action a worker holds is being sent right now, not waiting its turn.
        running_actions={a.id for a in subscriber_actions if lifecycle.is_leased(a, now)},
        customer_link=(
            powercode.customer_link(order.customer_id)
            if order.customer_id and order.customer_id > 0 and powercode.web_url
            else None
        ),
        would_have_sent=would_have_sent,
        leased=leased,
        maybe_applied=maybe_applied and order.step != Step.FINISHED,
        resolved_by_hand=actions.is_resolved_by_hand(order),
        can_act=current_user().role.allows(Role.OPERATOR),
        can_close=order.state in lifecycle.OPEN_STATES,
        can_retry_now=order.step != Step.FINISHED and order.state != OrderState.DONE,
        can_provision=not order.customer_created and order.state != OrderState.DONE,
        site_question=actions.waits_for_site_decision(order),
        customer_link_former=(
            powercode.customer_link(order.former_customer_id)
            if order.former_customer_id and powercode.web_url
            else None
        ),
        steps=[s for s in Step if s != Step.FINISHED],
        plan_wait=plan_wait,
        can_map=current_user().role.allows(Role.ADMIN),
        live=_live(order, now),
        not_provisioned=(
            STATE_WORDS[order.state]
            if order.state in (OrderState.DUPLICATE, OrderState.NOT_OURS, OrderState.IGNORED)
            else None
        ),
        email_views=[_email_view(order, email) for email in emails],
        recipients=len(runtime().settings.mail.recipients),
    )


def _act(order_id: int, act: Callable[[Session, str, str], str]) -> ResponseReturnValue:
    """Run one action in one transaction (with its audit entry); report how it went."""
    actor = current_user().name
    try:
        with runtime().store.write() as db:
            order = db.get(Order, order_id)
            if order is None:
                abort(404)
            message = act(db, order.order_ref, actor)
    except ActionRefused as refusal:
        flash(f"Not done: {in_words(str(refusal))}", "error")
    else:
        flash(message, "info")
        runtime().wakeup.set()  # a worker in this process starts at once
    return redirect(url_for("console.order_page", order_id=order_id), 303)


@bp.post("/orders/<int:order_id>/retry")
@require(Role.OPERATOR)
def order_retry(order_id: int) -> ResponseReturnValue:
    raw = request.form.get("from_step", "")
    try:
        from_step = Step(raw) if raw else None
    except ValueError:
        abort(400)
    if from_step == Step.FINISHED:
        abort(400)
    if request.form.get("confirm") != "yes":
        with runtime().store.read() as db:
            order = db.get(Order, order_id)
            if order is None:
                abort(404)
            try:
                order, step = actions.check_retry(db, order.order_ref, utcnow(), from_step)
            except ActionRefused:
                resends = False  # the retry below says why it is refused
            else:
                resends = actions.retry_resends_success_email(db, order, step)
        if resends:
            # Staff would get the "customer created" e-mail again: the person says so first.
            return render_template("console/confirm_retry.html", order=order, step=step)

    def act(db: Session, ref: str, actor: str) -> str:
        order = actions.retry_order(db, ref, utcnow(), from_step, actor=actor)
        return f"Order {ref} is queued again at “{STEP_WORDS[order.step]}”."

    return _act(order_id, act)


@bp.post("/orders/<int:order_id>/map-plans")
@require(Role.ADMIN)
def order_map_plans(order_id: int) -> ResponseReturnValue:
    """Map the plan texts an order waits for and retry it: one form on the order's page."""
    texts = request.form.getlist("plan_text")
    ids = request.form.getlist("service_id")
    if not texts or len(texts) != len(ids) or len(texts) > 20:
        abort(400)
    chosen = dict(zip(texts, ids, strict=True))
    actor = current_user().name
    try:
        with runtime().store.write() as db:
            order = db.get(Order, order_id)
            if order is None:
                abort(404)
            base = runtime().settings.provisioning
            version, order = actions.map_plans_and_retry(
                db,
                order.order_ref,
                chosen,
                config_store.current_provisioning(db, base),
                utcnow(),
                actor=actor,
            )
            number = config_store.version_number(db, version)
            ref = order.order_ref
    except ConfigInvalid as invalid:
        flash("Not saved: " + "; ".join(invalid.problems), "error")
    except ActionRefused as refusal:
        flash(f"Not done: {in_words(str(refusal))}", "error")
    else:
        mapped = ", ".join(f"“{t}” to service {i.strip()}" for t, i in chosen.items())
        flash(
            f"Mapped {mapped} (plan mapping version {number}); order {ref} is queued again.",
            "info",
        )
        runtime().wakeup.set()
    return redirect(url_for("console.order_page", order_id=order_id), 303)


@bp.post("/orders/<int:order_id>/resolve")
@require(Role.OPERATOR)
def order_resolve(order_id: int) -> ResponseReturnValue:
    note = request.form.get("note", "")

    def act(db: Session, ref: str, actor: str) -> str:
        actions.resolve_order(db, ref, note, utcnow(), actor=actor)
        return f"Order {ref} is marked resolved."

    return _act(order_id, act)


@bp.post("/orders/<int:order_id>/ignore")
@require(Role.OPERATOR)
def order_ignore(order_id: int) -> ResponseReturnValue:
    note = request.form.get("note", "")

    def act(db: Session, ref: str, actor: str) -> str:
        actions.ignore_order(db, ref, note, utcnow(), actor=actor)
        return f"Order {ref} is ignored; nothing more will be done unless someone retries it."

    return _act(order_id, act)


@bp.post("/orders/<int:order_id>/site-decision")
@require(Role.OPERATOR)
def order_site_decision(order_id: int) -> ResponseReturnValue:
    try:
        decision = SiteDecision(request.form.get("decision", ""))
    except ValueError:
        abort(400)
    note = request.form.get("note", "")

    def act(db: Session, ref: str, actor: str) -> str:
        actions.decide_site(db, ref, decision, note, utcnow(), actor=actor)
        words = actions.SITE_DECISION_WORDS[decision]
        return f"Order {ref}: “{words}” recorded; the order is queued again."

    return _act(order_id, act)


@bp.post("/orders/<int:order_id>/resend")
@require(Role.OPERATOR)
def order_resend(order_id: int) -> ResponseReturnValue:
    def act(db: Session, ref: str, actor: str) -> str:
        kind = actions.resend_notification(db, ref, utcnow(), actor=actor)
        return f"The {kind} e-mail for order {ref} is queued again."

    return _act(order_id, act)


@bp.post("/orders/<int:order_id>/messages/<int:action_id>/retry")
@require(Role.OPERATOR)
def message_action_retry(order_id: int, action_id: int) -> ResponseReturnValue:
    def act(db: Session, ref: str, actor: str) -> str:
        action = actions.retry_message_action(db, ref, action_id, utcnow(), actor=actor)
        return f"“{ACTION_WORDS[action.action]}” for “{action.msg}” is queued again."

    return _act(order_id, act)


@bp.post("/orders/<int:order_id>/messages/<int:action_id>/close")
@require(Role.OPERATOR)
def message_action_close(order_id: int, action_id: int) -> ResponseReturnValue:
    note = request.form.get("note", "")

    def act(db: Session, ref: str, actor: str) -> str:
        action = actions.close_message_action(db, ref, action_id, note, utcnow(), actor=actor)
        return (
            f"“{ACTION_WORDS[action.action]}” for “{action.msg}” is "
            f"{ACTION_STATE_WORDS[action.state]}."
        )

    return _act(order_id, act)
