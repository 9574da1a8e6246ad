"""Settings pages for admins: plan mapping, always-added services, the ticket template (with a
live preview, its history and rollback), and the effective settings with secrets masked.

Saved values go to the database as new versions; the worker reads the current ones for every
order, so every process uses a change at once.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from utopia_handler import accounts, actions, config_store
from utopia_handler.config_store import ConfigInvalid
from utopia_handler.doctor import Check, run_checks
from utopia_handler.settings import describe_settings
from utopia_handler.store.console_models import ConfigKind, ConfigVersion, Role
from utopia_handler.tickets import TemplateProblem
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import bp, current_user, require, runtime

BLANK_PLAN_ROWS = 3
TEMPLATE_VARIABLES = (
    "customer_name", "first_name", "last_name", "email", "phone", "order_ref", "site_id", "plan",
    "plans", "address", "street", "unit", "city", "state", "zip", "terms_agreed_at", "promo",
    "customer_id",
)  # fmt: skip


def _origin(db: Session, version: ConfigVersion | None, fallback: str) -> str:
    if version is None:
        return fallback
    number = config_store.version_number(db, version)
    return f"version {number}, saved in the console by {version.created_by} at {version.created_at:%Y-%m-%d %H:%M} UTC"


@bp.get("/settings/plans")
@require(Role.ADMIN)
def plans_page(
    problems: list[str] | None = None,
    rows: list[tuple[str, str]] | None = None,
    services_text: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    base = runtime().settings.provisioning
    with runtime().store.read() as db:
        effective = config_store.current_provisioning(db, base)
        plans_version = config_store.latest(db, ConfigKind.PLANS)
        services_version = config_store.latest(db, ConfigKind.ALWAYS_SERVICES)
        plan_history = config_store.numbered_history(db, ConfigKind.PLANS, limit=20)
        service_history = config_store.numbered_history(db, ConfigKind.ALWAYS_SERVICES, limit=20)
        waiting = actions.orders_waiting_for_plans(db, effective)
        plans_origin = _origin(db, plans_version, "the settings file or environment")
        services_origin = _origin(db, services_version, "the settings file or environment")
    if rows is None:
        rows = [(p.utopia_text, str(p.service_id)) for p in effective.plans]
    rows = rows + [("", "")] * BLANK_PLAN_ROWS
    return render_template(
        "console/settings_plans.html",
        rows=rows,
        services_text=(
            services_text
            if services_text is not None
            else config_store.describe_always_services(effective)
        ),
        problems=problems or [],
        plans_origin=plans_origin,
        services_origin=services_origin,
        plan_history=plan_history,
        service_history=service_history,
        unmapped_policy=effective.unmapped_plan,
        waiting=waiting,
        ready=[order for order, unmapped in waiting if not unmapped],
    ), status


@bp.post("/settings/plans")
@require(Role.ADMIN)
def plans_save() -> ResponseReturnValue:
    texts = request.form.getlist("plan_text")
    ids = request.form.getlist("service_id")
    if len(texts) != len(ids) or len(texts) > 500:
        abort(400)
    rows = list(zip(texts, ids, strict=True))
    try:
        plans = config_store.parse_plan_rows(rows)
        with runtime().store.write() as db:
            version = config_store.save_plans(db, plans, current_user().name, utcnow())
            number = config_store.version_number(db, version)
            effective = config_store.current_provisioning(db, runtime().settings.provisioning)
            ready = [
                o for o, unmapped in actions.orders_waiting_for_plans(db, effective) if not unmapped
            ]
    except ConfigInvalid as invalid:
        kept = [(t, i) for t, i in rows if t.strip() or i.strip()]
        return plans_page(problems=invalid.problems, rows=kept, status=422)
    message = f"Plan mapping saved as version {number}; it applies to the next order."
    if ready:
        count = len(ready)
        message += (
            f" {count} waiting order{'s' if count != 1 else ''} can go on now: "
            "see “Orders waiting for a plan mapping”."
        )
    flash(message, "info")
    return redirect(url_for("console.plans_page"), 303)


@bp.post("/settings/plans/retry-waiting")
@require(Role.ADMIN)
def plans_retry_waiting() -> ResponseReturnValue:
    """Retry every order held for its plans that the mapping in force covers now."""
    with runtime().store.write() as db:
        effective = config_store.current_provisioning(db, runtime().settings.provisioning)
        retried = actions.retry_orders_now_mapped(
            db, effective, utcnow(), actor=current_user().name
        )
    if retried:
        runtime().wakeup.set()
        flash(f"Queued again: {', '.join(retried)}.", "info")
    else:
        flash("No waiting order is covered by the plan mapping now; nothing was retried.", "error")
    return redirect(url_for("console.plans_page"), 303)


@bp.post("/settings/services")
@require(Role.ADMIN)
def services_save() -> ResponseReturnValue:
    text = request.form.get("service_ids", "")[:2000]
    try:
        services = config_store.parse_always_services(text)
        with runtime().store.write() as db:
            version = config_store.save_always_services(db, services, current_user().name, utcnow())
    except ConfigInvalid as invalid:
        return plans_page(problems=invalid.problems, services_text=text, status=422)
    with runtime().store.read() as db:
        number = config_store.version_number(db, version)
    flash(f"Always-added services saved as version {number}.", "info")
    return redirect(url_for("console.plans_page"), 303)


@bp.post("/settings/rollback/<int:version_id>")
@require(Role.ADMIN)
def settings_rollback(version_id: int) -> ResponseReturnValue:
    try:
        with runtime().store.write() as db:
            old = db.get(ConfigVersion, version_id)
            old_number = config_store.version_number(db, old) if old is not None else 0
            version = config_store.roll_back(db, version_id, current_user().name, utcnow())
            kind, number = version.kind, config_store.version_number(db, version)
    except ConfigInvalid:
        abort(404)
    flash(f"Version {old_number} is in force again (saved as version {number}).", "info")
    page = "console.template_page" if kind == ConfigKind.TICKET_TEMPLATE else "console.plans_page"
    return redirect(url_for(page), 303)


def _current_template() -> tuple[str, str, str | None]:
    """The template in force, where it comes from, and the file's name (None: unreadable)."""
    try:
        file_source, path = runtime().tickets.source()
        file_name: str | None = path.name
    except TemplateProblem as problem:
        file_source, file_name = "", None
        file_origin = str(problem)
    else:
        file_origin = f"the file {path.name}"
    with runtime().store.read() as db:
        version = config_store.stored_ticket_template(db)
        if version is not None:
            return str(version.value["source"]), _origin(db, version, ""), file_name
    return file_source, file_origin, file_name


def _preview(source: str) -> dict[str, Any]:
    try:
        rendered = config_store.preview_ticket(runtime().tickets, source)
    except ConfigInvalid as invalid:
        return {"ok": False, "problems": invalid.problems, "summary": "", "html": ""}
    return {
        "ok": True,
        "problems": [],
        "summary": rendered.summary,
        "html": rendered.description_html,
    }


def _template_page(
    source: str | None = None, *, problems: list[str] | None = None, status: int = 200
) -> ResponseReturnValue:
    """The template page; `source` is text being edited (not saved) instead of the one in force."""
    in_force, origin, file_name = _current_template()
    with runtime().store.read() as db:
        versions = config_store.numbered_history(db, ConfigKind.TICKET_TEMPLATE, limit=50)
        file_in_force = config_store.stored_ticket_template(db) is None
    text = in_force if source is None else source
    return render_template(
        "console/settings_template.html",
        source=text,
        origin=origin,
        editing=source is not None and source != in_force,
        problems=problems or [],
        preview=_preview(text),
        versions=versions,
        file_name=file_name,
        file_in_force=file_in_force,
        variables=TEMPLATE_VARIABLES,
        sample=config_store.sample_ticket_variables(),
    ), status


@bp.get("/settings/ticket-template")
@require(Role.ADMIN)
def template_page() -> ResponseReturnValue:
    return _template_page()


@bp.post("/settings/ticket-template/preview")
@require(Role.ADMIN)
def template_preview() -> ResponseReturnValue:
    source = request.form.get("source", "")
    if request.accept_mimetypes.best == "application/json":
        return jsonify(_preview(source))
    return _template_page(source)


@bp.post("/settings/ticket-template")
@require(Role.ADMIN)
def template_save() -> ResponseReturnValue:
    source = request.form.get("source", "").replace("\r\n", "\n")
    try:
        with runtime().store.write() as db:
            version = config_store.save_ticket_template(
                db, runtime().tickets, source, current_user().name, utcnow()
            )
            number = config_store.version_number(db, version)
    except ConfigInvalid as invalid:
        return _template_page(source, problems=invalid.problems, status=422)
    flash(f"Ticket template saved as version {number}; the next ticket uses it.", "info")
    return redirect(url_for("console.template_page"), 303)


@bp.post("/settings/ticket-template/use-file")
@require(Role.ADMIN)
def template_use_file() -> ResponseReturnValue:
    """Put the template file back in force (as a new version: history is kept)."""
    with runtime().store.write() as db:
        version = config_store.use_file_template(db, current_user().name, utcnow())
        number = config_store.version_number(db, version)
    flash(
        f"The template file is in force again (saved as version {number}); the next ticket uses it.",
        "info",
    )
    return redirect(url_for("console.template_page"), 303)


@bp.get("/settings")
@require(Role.ADMIN)
def settings_page(checks: list[Check] | None = None) -> ResponseReturnValue:
    with runtime().store.read() as db:
        users = accounts.list_users(db)
        overridden = [kind for kind in ConfigKind if config_store.latest(db, kind) is not None]
    return render_template(
        "console/settings.html",
        lines=describe_settings(runtime().settings),
        users=users,
        overridden=overridden,
        checks=checks,
    )


@bp.post("/settings/checks")
@require(Role.ADMIN)
def settings_checks() -> ResponseReturnValue:
    """The doctor's checks of the real connections, run now; the same as `utopia-handler doctor`."""
    return settings_page(checks=run_checks(runtime().settings))
