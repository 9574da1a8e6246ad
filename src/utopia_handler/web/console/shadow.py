"""The shadow report: orders worked on in shadow mode, what they would have sent, and the way out.

Viewers may read it; operators provision orders for real, one or all, through the same action
the CLI's `utopia-handler shadow provision` calls.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from utopia_handler import actions
from utopia_handler.actions import ActionRefused
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import Order, ShadowWrite
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import bp, current_user, require, runtime

SHADOW_PAGE_LIMIT = 500


@bp.get("/shadow")
@require(Role.VIEWER)
def shadow_page() -> ResponseReturnValue:
    with runtime().store.read() as db:
        rows = db.execute(
            select(Order, func.count(ShadowWrite.id))
            .outerjoin(ShadowWrite, ShadowWrite.order_id == Order.id)
            .where(Order.shadow.is_(True))
            .group_by(Order.id)
            .order_by(Order.id.desc())
            .limit(SHADOW_PAGE_LIMIT)
        ).all()
    return render_template(
        "console/shadow.html",
        orders=[(order, writes) for order, writes in rows],
        shadow_mode=runtime().settings.shadow_mode,
        can_act=current_user().role.allows(Role.OPERATOR),
    )


@bp.post("/shadow/provision")
@require(Role.OPERATOR)
def shadow_provision() -> ResponseReturnValue:
    """Provision one order (`order_ref`) or every shadow order (`all`) for real."""
    wanted = None if request.form.get("all") else [request.form.get("order_ref", "")]
    try:
        with runtime().store.write() as db:
            queued = actions.provision_shadow_orders(
                db, wanted, utcnow(), actor=current_user().name
            )
    except ActionRefused as refused:
        flash(str(refused), "error")
        return redirect(url_for("console.shadow_page"), 303)
    waits = " They wait until shadow mode is off." if runtime().settings.shadow_mode else ""
    flash(f"{len(queued)} order(s) queued to be provisioned for real.{waits}", "info")
    return redirect(url_for("console.shadow_page"), 303)
