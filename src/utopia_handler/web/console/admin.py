"""Settings pages for admins: plan mapping, always-added services, the ticket template (with a
live preview, its history and rollback), the routing table of UTOPIA messages and its ticket
template (likewise), and the effective settings with secrets masked.

Saved values go to the database as new versions; the worker reads the current ones for every
order, so every process uses a change at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from utopia_handler import accounts, actions, config_store
from utopia_handler.config_store import ConfigInvalid
from utopia_handler.doctor import Check, run_checks
from utopia_handler.message_actions import MESSAGE_TICKET_VARIABLES
from utopia_handler.settings import describe_settings
from utopia_handler.settings.routes import RESERVED_MESSAGES, ROUTE_ACTIONS
from utopia_handler.store import queries
from utopia_handler.store.console_models import ConfigKind, ConfigVersion, Role
from utopia_handler.tickets import TemplateProblem, TicketRenderer
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import bp, current_user, require, runtime

BLANK_PLAN_ROWS = 3
BLANK_ROUTE_ROWS = 3
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
    speed_text: str | None = None,
) -> ResponseReturnValue:
    base = runtime().settings.provisioning
    speed_base = runtime().settings.subscriber.speed_products
    with runtime().store.read() as db:
        speed = config_store.current_speed_products(db, speed_base)
        speed_origin = _origin(
            db,
            config_store.latest(db, ConfigKind.SPEED_PRODUCTS),
            "the settings file or environment",
        )
        speed_history = config_store.numbered_history(db, ConfigKind.SPEED_PRODUCTS, limit=20)
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
        speed_text=(
            speed_text if speed_text is not None else config_store.describe_speed_products(speed)
        ),
        speed_origin=speed_origin,
        speed_history=speed_history,
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


@bp.post("/settings/speed-products")
@require(Role.ADMIN)
def speed_products_save() -> ResponseReturnValue:
    """Save the speed change's mapping, PowerCode service -> UTOPIA product, as a new version."""
    text = request.form.get("speed_products", "")[:4000]
    try:
        pairs = config_store.parse_speed_products(text)
        with runtime().store.write() as db:
            version = config_store.save_speed_products(db, pairs, current_user().name, utcnow())
            number = config_store.version_number(db, version)
    except ConfigInvalid as invalid:
        return plans_page(problems=invalid.problems, speed_text=text, status=422)
    flash(f"Speed change mapping saved as version {number}.", "info")
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
    pages = {
        ConfigKind.TICKET_TEMPLATE: "console.template_page",
        ConfigKind.MESSAGE_ROUTES: "console.routes_page",
        ConfigKind.MESSAGE_TICKET_TEMPLATE: "console.message_template_page",
    }
    return redirect(url_for(pages.get(kind, "console.plans_page")), 303)


@dataclass(frozen=True)
class _TemplateKind:
    """One editable ticket template: the installation ticket's or the message ticket's."""

    kind: ConfigKind
    renderer: Callable[[], TicketRenderer]
    variables: tuple[str, ...]
    sample: Callable[[], dict[str, Any]]
    save: Callable[..., ConfigVersion]
    endpoint: str  # the page; "<endpoint>_preview" and "<endpoint>_save" post to it
    name: str  # in the page's <title> and the "saved" message
    title: str
    intro: str
    # Its file can be put back in force with one button (the installation ticket's; the message
    # ticket's file is in force until a version is saved, and then reached by rolling back).
    has_file: bool


_INSTALL = _TemplateKind(
    ConfigKind.TICKET_TEMPLATE,
    lambda: runtime().tickets,
    TEMPLATE_VARIABLES,
    config_store.sample_ticket_variables,
    config_store.save_ticket_template,
    "console.template",
    "Ticket template",
    "Installation ticket template",
    "The HTML description of the ticket opened for each new customer.",
    True,
)
_MESSAGE = _TemplateKind(
    ConfigKind.MESSAGE_TICKET_TEMPLATE,
    lambda: runtime().message_tickets,
    MESSAGE_TICKET_VARIABLES,
    config_store.sample_message_ticket_variables,
    config_store.save_message_ticket_template,
    "console.message_template",
    "Message ticket template",
    "Message ticket template",
    "The HTML description of the ticket the routing table opens for a UTOPIA message "
    "(action “ticket”), on the order's PowerCode customer. Its summary is "
    "[ticket] message_summary in the settings file.",
    False,
)


def _current_template(which: _TemplateKind) -> tuple[str, str, str | None]:
    """The template in force, where it comes from, and its file's name (None: none, unreadable)."""
    try:
        file_source, path = which.renderer().source()
        file_name: str | None = path.name if which.has_file else None
    except TemplateProblem as problem:
        file_source, file_name = "", None
        file_origin = str(problem)
    else:
        file_origin = f"the file {path.name}"
    with runtime().store.read() as db:
        version = config_store.latest(db, which.kind)
        # A version without a source puts the file back in force (use_file_template).
        if version is not None and isinstance(version.value, dict) and version.value.get("source"):
            return str(version.value["source"]), _origin(db, version, ""), file_name
    return file_source, file_origin, file_name


def _preview(which: _TemplateKind, source: str) -> dict[str, Any]:
    try:
        rendered = config_store.preview_ticket(which.renderer(), source, which.sample())
    except ConfigInvalid as invalid:
        return {"ok": False, "problems": invalid.problems, "summary": "", "html": ""}
    return {
        "ok": True,
        "problems": [],
        "summary": rendered.summary,
        "html": rendered.description_html,
    }


def _template_page(
    which: _TemplateKind,
    source: str | None = None,
    *,
    problems: list[str] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    """The template page; `source` is text being edited (not saved) instead of the one in force."""
    in_force, origin, file_name = _current_template(which)
    with runtime().store.read() as db:
        versions = config_store.numbered_history(db, which.kind, limit=50)
        latest = config_store.latest(db, which.kind)
    file_in_force = latest is None or not (
        isinstance(latest.value, dict) and latest.value.get("source")
    )
    text = in_force if source is None else source
    return render_template(
        "console/settings_template.html",
        which=which,
        source=text,
        origin=origin,
        editing=source is not None and source != in_force,
        problems=problems or [],
        preview=_preview(which, text),
        versions=versions,
        file_name=file_name,
        file_in_force=file_in_force,
        variables=which.variables,
        sample=which.sample(),
    ), status


def _template_preview(which: _TemplateKind) -> ResponseReturnValue:
    source = request.form.get("source", "")
    if request.accept_mimetypes.best == "application/json":
        return jsonify(_preview(which, source))
    return _template_page(which, source)


def _template_save(which: _TemplateKind) -> ResponseReturnValue:
    source = request.form.get("source", "").replace("\r\n", "\n")
    try:
        with runtime().store.write() as db:
            version = which.save(db, which.renderer(), source, current_user().name, utcnow())
            number = config_store.version_number(db, version)
    except ConfigInvalid as invalid:
        return _template_page(which, source, problems=invalid.problems, status=422)
    flash(f"{which.name} saved as version {number}; the next ticket uses it.", "info")
    return redirect(url_for(f"{which.endpoint}_page"), 303)


@bp.get("/settings/ticket-template")
@require(Role.ADMIN)
def template_page() -> ResponseReturnValue:
    return _template_page(_INSTALL)


@bp.post("/settings/ticket-template/preview")
@require(Role.ADMIN)
def template_preview() -> ResponseReturnValue:
    return _template_preview(_INSTALL)


@bp.post("/settings/ticket-template")
@require(Role.ADMIN)
def template_save() -> ResponseReturnValue:
    return _template_save(_INSTALL)


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


@bp.get("/settings/message-ticket-template")
@require(Role.ADMIN)
def message_template_page() -> ResponseReturnValue:
    return _template_page(_MESSAGE)


@bp.post("/settings/message-ticket-template/preview")
@require(Role.ADMIN)
def message_template_preview() -> ResponseReturnValue:
    return _template_preview(_MESSAGE)


@bp.post("/settings/message-ticket-template")
@require(Role.ADMIN)
def message_template_save() -> ResponseReturnValue:
    return _template_save(_MESSAGE)


# The routing table of UTOPIA messages ------------------------------------------------------------


@bp.get("/settings/messages")
@require(Role.ADMIN)
def routes_page(
    problems: list[str] | None = None,
    rows: list[tuple[str, str, str]] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    base = runtime().settings.routing.messages
    with runtime().store.read() as db:
        routes, version = config_store.current_routes(db, base)
        versions = config_store.numbered_history(db, ConfigKind.MESSAGE_ROUTES, limit=20)
        not_handled = queries.not_handled_messages(db, limit=20)
        origin = _origin(
            db,
            version,
            "the settings file ([[messages]])"
            if base
            else "none: every message is only stored and shown",
        )
    if rows is None:
        rows = [
            ("match", r.match, r.action)
            if r.match is not None
            else ("pattern", r.pattern or "", r.action)
            for r in routes
        ]
    rows = rows + [("match", "", "notify")] * BLANK_ROUTE_ROWS
    return render_template(
        "console/settings_messages.html",
        rows=rows,
        problems=problems or [],
        origin=origin,
        versions=versions,
        actions=ROUTE_ACTIONS,
        reserved=RESERVED_MESSAGES,
        not_handled=not_handled,
    ), status


@bp.post("/settings/messages")
@require(Role.ADMIN)
def routes_save() -> ResponseReturnValue:
    hows = request.form.getlist("route_how")
    texts = request.form.getlist("route_text")
    chosen = request.form.getlist("route_action")
    if not len(hows) == len(texts) == len(chosen) or len(texts) > 500:
        abort(400)
    rows = list(zip(hows, texts, chosen, strict=True))
    try:
        routes = config_store.parse_route_rows(rows)
        with runtime().store.write() as db:
            version = config_store.save_routes(db, routes, current_user().name, utcnow())
            number = config_store.version_number(db, version)
    except ConfigInvalid as invalid:
        kept = [(h, t, a) for h, t, a in rows if t.strip()]
        return routes_page(problems=invalid.problems, rows=kept, status=422)
    flash(
        f"Routing table saved as version {number}; it applies to the next message UTOPIA sends.",
        "info",
    )
    return redirect(url_for("console.routes_page"), 303)


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
