"""Reconciliation with UTOPIA's order list: its runs, and the orders recorded but not provisioned.

Anyone logged in may look; an operator provisions a recorded order with `actions`, the same
function `utopia-handler reconcile --since` uses (audited, through the lifecycle).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from utopia_handler import actions
from utopia_handler.actions import ActionRefused
from utopia_handler.reconcile import JOB, network_label
from utopia_handler.store import jobs
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import Order, OrderState, ReconcileRun
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import (
    PAGE_SIZE,
    bp,
    current_user,
    page_number,
    require,
    runtime,
)

# Recorded orders shown at once; `orders list --state recorded` lists them all.
RECORDED_SHOWN = 200


@bp.get("/reconciliation")
def reconciliation() -> ResponseReturnValue:
    page = page_number()
    settings = runtime().settings
    with runtime().store.read() as db:
        total = db.scalar(select(func.count()).select_from(ReconcileRun)) or 0
        runs = list(
            db.scalars(
                select(ReconcileRun)
                .order_by(ReconcileRun.id.desc())
                .limit(PAGE_SIZE)
                .offset((page - 1) * PAGE_SIZE)
            )
        )
        recorded_total = (
            db.scalar(
                select(func.count()).select_from(Order).where(Order.state == OrderState.RECORDED)
            )
            or 0
        )
        recorded = list(
            db.scalars(
                select(Order)
                .where(Order.state == OrderState.RECORDED)
                .order_by(Order.order_ref.desc())
                .limit(RECORDED_SHOWN)
            )
        )
        job = jobs.job(db, JOB)
    return render_template(
        "console/reconcile.html",
        runs=runs,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        recorded=recorded,
        recorded_total=recorded_total,
        job=job,
        enabled=settings.reconcile.enabled,
        interval=settings.reconcile.interval_seconds,
        alert_hours=f"{settings.reconcile.alert_seconds / 3600:g}",
        networks=[network_label(n) for n in settings.utopia.reconciled_networks()],
        network_label=network_label,
        can_act=current_user().role.allows(Role.OPERATOR),
    )


@bp.post("/reconciliation/orders/<int:order_id>/provision")
@require(Role.OPERATOR)
def reconcile_provision(order_id: int) -> ResponseReturnValue:
    actor = current_user().name
    try:
        with runtime().store.write() as db:
            order = db.get(Order, order_id)
            if order is None:
                abort(404)
            ref = order.order_ref
            actions.provision_recorded_order(
                db, ref, utcnow(), actor=actor, shadow=runtime().settings.shadow_mode
            )
    except ActionRefused as refusal:
        flash(f"Not done: {refusal}", "error")
    else:
        flash(f"Order {ref} is queued for provisioning.", "info")
        runtime().wakeup.set()  # a worker in this process starts at once
    if request.form.get("back") == "order":
        return redirect(url_for("console.order_page", order_id=order_id), 303)
    return redirect(url_for("console.reconciliation"), 303)
