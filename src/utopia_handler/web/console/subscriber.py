"""Subscriber actions from an order's page: a form, the confirmation page showing exactly what
will be sent (the dry run: nothing is sent), and queueing it; retry or close one that waits.

Operators only: viewers see no buttons and get 403. The plan and the queueing are the same
functions the CLI calls (subscriber.plan_action, subscriber_work.queue_action).
"""

from __future__ import annotations

import hashlib

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from utopia_handler import audit, lifecycle
from utopia_handler.actions import ActionRefused
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import Order, SubscriberAction
from utopia_handler.subscriber import Plan, plan_action
from utopia_handler.subscriber import SubscriberAction as Kind
from utopia_handler.subscriber_work import queue_action
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import bp, current_user, in_words, require, runtime

ACTION_TITLES = {
    Kind.SUSPEND: "Suspend the subscriber",
    Kind.UNSUSPEND: "Lift the suspension",
    Kind.CHANGE_SPEED: "Change the speed",
    Kind.CANCEL: "Cancel the service",
}


def fingerprint(plan: Plan) -> str:
    """A short digest of every request the plan sends: the send must match what was shown."""
    return hashlib.sha256(repr(plan.requests).encode()).hexdigest()[:20]


def _kind(raw: str) -> Kind:
    try:
        return Kind(raw)
    except ValueError:
        abort(404)


def _order(order_id: int) -> Order:
    with runtime().store.read() as db:
        order = db.get(Order, order_id)
        if order is None:
            abort(404)
        db.expunge(order)
        return order


def _form() -> dict[str, str]:
    return {
        name: request.form.get(name, "").strip()[:2000]
        for name in ("cid", "note", "service_id", "product", "issue_date")
    }


@bp.route("/orders/<int:order_id>/subscriber/<action>", methods=["GET", "POST"])
@require(Role.OPERATOR)
def subscriber_action(order_id: int, action: str) -> ResponseReturnValue:
    """GET: the form. POST `plan`: the confirmation page (a dry run). POST `send`: queue it."""
    kind = _kind(action)
    order = _order(order_id)
    if request.method == "GET":
        return render_template(
            "console/subscriber_form.html", order=order, kind=kind, title=ACTION_TITLES[kind],
            form={}, plan=None, problems=[], shown="",
        )  # fmt: skip
    form = _form()
    problems: list[str] = []
    if not form["note"]:
        problems.append("write a note saying why")
    service_id = None
    if form["service_id"]:
        if not form["service_id"].isdigit() or len(form["service_id"]) > 10:
            problems.append("the PowerCode service id is a number")
        else:
            service_id = int(form["service_id"])
    actor = current_user().name
    try:
        plan = plan_action(
            runtime(),
            order.order_ref,
            kind,
            typed_cid=form["cid"],
            service_id=service_id,
            product=form["product"],
            issue_date=form["issue_date"],
            note=form["note"],
            actor=actor,
        )
    except LookupError:
        abort(404)
    problems += list(plan.problems)
    shown = request.form.get("shown", "")
    if request.form.get("step") == "send" and shown != fingerprint(plan) and not problems:
        problems.append("what will be sent changed since it was shown: check it again below")
    if request.form.get("step") != "send" or problems:
        return render_template(
            "console/subscriber_form.html", order=order, kind=kind, title=ACTION_TITLES[kind],
            form=form, plan=plan, problems=problems, shown=fingerprint(plan),
        )  # fmt: skip
    try:
        with runtime().store.write() as db:
            queued = queue_action(
                db, plan, form["note"], actor, utcnow(), shadow=runtime().settings.shadow_mode
            )
            number = queued.id
    except ActionRefused as refusal:
        flash(f"Not done: {in_words(str(refusal))}", "error")
    else:
        flash(f"{ACTION_TITLES[kind]}: queued as subscriber action {number}.", "info")
        runtime().wakeup.set()
    return redirect(url_for("console.order_page", order_id=order_id), 303)


def _person_acts(order_id: int, action_id: int, verb: str) -> ResponseReturnValue:
    note = request.form.get("note", "")
    actor = current_user().name
    now = utcnow()
    try:
        with runtime().store.write() as db:
            action = _find(db, order_id, action_id)
            if verb == "retry":
                lifecycle.retry_action(action, now)
            else:
                lifecycle.close_action(action, note, actor, now)
            order_ref = db.get(Order, order_id).order_ref  # type: ignore[union-attr]
            audit.record(
                db,
                actor,
                f"{verb}_subscriber_action",
                now,
                order_ref=order_ref,
                detail=f"{action.action.value} (action {action.id})"
                + (f": {' '.join(note.split())}" if note.strip() else ""),
            )
    except ActionRefused as refusal:
        flash(f"Not done: {in_words(str(refusal))}", "error")
    else:
        flash(
            f"Subscriber action {action_id}: {'queued again' if verb == 'retry' else 'closed'}.",
            "info",
        )
        runtime().wakeup.set()
    return redirect(url_for("console.order_page", order_id=order_id), 303)


def _find(db: Session, order_id: int, action_id: int) -> SubscriberAction:
    action = db.get(SubscriberAction, action_id)
    if action is None or action.order_id != order_id:
        abort(404)
    return action


@bp.post("/orders/<int:order_id>/subscriber-actions/<int:action_id>/retry")
@require(Role.OPERATOR)
def subscriber_action_retry(order_id: int, action_id: int) -> ResponseReturnValue:
    """Queue a subscriber action again as a new run, from the step it stopped at."""
    return _person_acts(order_id, action_id, "retry")


@bp.post("/orders/<int:order_id>/subscriber-actions/<int:action_id>/close")
@require(Role.OPERATOR)
def subscriber_action_close(order_id: int, action_id: int) -> ResponseReturnValue:
    """Close a subscriber action: the rest done by hand, or nothing is to be done."""
    return _person_acts(order_id, action_id, "close")
