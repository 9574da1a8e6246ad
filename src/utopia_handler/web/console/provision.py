"""Provisioning by hand: look an order up at UTOPIA (or start from the stored contract), review and
correct its fields, choose the plans, and queue it through the same steps as any order.

The contract as looked up travels between the two pages inside the form, signed with the
secret key, so what the person did not edit cannot be altered on the way.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from itsdangerous import BadSignature, URLSafeTimedSerializer

from utopia_handler import actions, config_store
from utopia_handler.actions import ActionRefused
from utopia_handler.clients.errors import OutsideError
from utopia_handler.clients.utopia import Contract, NotOurOrder
from utopia_handler.provisioning import PlannedService
from utopia_handler.settings import ProvisioningSettings, plan_key
from utopia_handler.store import queries
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import Order
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import bp, current_user, require, runtime

_SALT = "utopia-handler.manual-contract"
_MAX_AGE_SECONDS = 4 * 3600  # a form left open longer is looked up again


def _serializer() -> URLSafeTimedSerializer:
    secret = runtime().settings.web.secret_key
    if secret is None:
        abort(503)
    return URLSafeTimedSerializer(secret.reveal(), salt=_SALT)


def _effective() -> ProvisioningSettings:
    with runtime().store.read() as db:
        return config_store.current_provisioning(db, runtime().settings.provisioning)


def _mapped_texts(contract: Contract, settings: ProvisioningSettings) -> set[str]:
    """The mapping rows the contract's items match: ticked in the form to start with."""
    keys = {plan_key(i.description) for i in contract.items}
    return {p.utopia_text for p in settings.plans if plan_key(p.utopia_text) in keys}


def _review(
    contract: Contract,
    *,
    fields: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    chosen: set[str] | None = None,
    source: str,
    status: int = 200,
) -> ResponseReturnValue:
    settings = _effective()
    with runtime().store.read() as db:
        existing = queries.find_order(db, contract.order_ref)
    return (
        render_template(
            "console/provision_review.html",
            order_ref=contract.order_ref,
            contract=contract,
            blob=_serializer().dumps(contract.to_json()),
            fields=fields if fields is not None else actions.contract_fields(contract),
            labels=actions.FIELD_LABELS,
            problems=problems or {},
            plans=settings.plans,
            always=settings.always_services,
            chosen=chosen if chosen is not None else _mapped_texts(contract, settings),
            existing=existing,
            source=source,
        ),
        status,
    )


@bp.get("/provision")
@require(Role.OPERATOR)
def provision_start() -> ResponseReturnValue:
    return render_template("console/provision_start.html", error=None, order_ref="")


@bp.post("/provision/lookup")
@require(Role.OPERATOR)
def provision_lookup() -> ResponseReturnValue:
    raw = request.form.get("order_ref", "")
    try:
        order_ref = actions.check_order_ref(raw)
    except ActionRefused as refusal:
        return render_template(
            "console/provision_start.html", error=str(refusal), order_ref=raw[:64]
        ), 422
    try:
        contract = runtime().utopia.lookup_contract(order_ref)
    except NotOurOrder:
        error = f"UTOPIA has no record of order {order_ref} for this ISP."
    except OutsideError as problem:
        # Our clients' messages carry no secrets; they are written for people.
        error = f"UTOPIA could not be asked: {problem}"
    else:
        return _review(contract, source="looked up at UTOPIA just now")
    return render_template("console/provision_start.html", error=error, order_ref=order_ref), 502


@bp.get("/orders/<int:order_id>/provision")
@require(Role.OPERATOR)
def provision_from_order(order_id: int) -> ResponseReturnValue:
    with runtime().store.read() as db:
        order = db.get(Order, order_id)
    if order is None:
        abort(404)
    if order.contract is None:
        return render_template(
            "console/provision_start.html", error=None, order_ref=order.order_ref
        )
    contract = Contract.from_json(order.contract)
    chosen = {str(p["label"]) for p in order.plans or ()} or None
    return _review(contract, chosen=chosen, source="as stored on the order")


@bp.post("/provision/submit")
@require(Role.OPERATOR)
def provision_submit() -> ResponseReturnValue:
    try:
        stored: Any = _serializer().loads(
            request.form.get("contract", ""), max_age=_MAX_AGE_SECONDS
        )
        original = Contract.from_json(stored)
    except (BadSignature, TypeError, ValueError, AttributeError):
        flash("The form had expired or was altered; look the order up again.", "error")
        return redirect(url_for("console.provision_start"), 303)
    entered = {name: request.form.get(name, "") for name in actions.FIELD_LABELS}
    chosen = set(request.form.getlist("plan"))
    corrections, problems = actions.check_corrections(entered)
    if problems:
        return _review(
            original,
            fields=entered,
            problems=problems,
            chosen=chosen,
            source="with your corrections (not saved yet)",
            status=422,
        )
    contract = actions.corrected_contract(original, corrections)
    changed = actions.corrected_fields(original, corrections)
    try:
        plans: list[PlannedService] | None = (
            actions.chosen_services(sorted(chosen), _effective()) if chosen else None
        )
        with runtime().store.write() as db:
            order = actions.provision_by_hand(
                db,
                original.order_ref,
                contract,
                plans,
                utcnow(),
                actor=current_user().name,
                changed=changed,
            )
            order_id = order.id
    except ActionRefused as refusal:
        flash(f"Not done: {refusal}", "error")
        return _review(
            original, fields=entered, chosen=chosen, source="with your corrections", status=409
        )
    runtime().wakeup.set()
    flash(
        f"Order {original.order_ref} is queued; it goes through the usual steps now.",
        "info",
    )
    return redirect(url_for("console.order_page", order_id=order_id), 303)
