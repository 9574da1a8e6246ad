"""Render staff e-mails (subject, text, HTML) from what an order recorded, then compose them.

Render, then send: this module never talks to a network; `SmtpSender` delivers the result.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from utopia_handler.addresses import state_code, street_with_unit
from utopia_handler.clients.utopia import Contract, PostalAddress
from utopia_handler.provisioning import format_phone
from utopia_handler.settings import MailSettings, PowerCodeSettings
from utopia_handler.store.models import NotificationKind
from utopia_handler.text import one_line

TEMPLATES = Path(__file__).parent / "templates"
MESSAGE_ID_DOMAIN = "utopia-handler.local"
#: A header value longer than this is cut (a subject carries a customer's name).
MAX_HEADER_CHARS = 250


def _mail_policy() -> email.policy.EmailPolicy[EmailMessage]:
    """The default policy; where the interpreter can (CVE-2024-6923's fix), it also refuses to
    write a header that would break into another line: a second defence behind `header_text`."""
    if hasattr(email.policy.default, "verify_generated_headers"):
        return email.policy.default.clone(verify_generated_headers=True)
    return email.policy.default


MAIL_POLICY = _mail_policy()


def header_text(value: str, limit: int | None = MAX_HEADER_CHARS) -> str:
    """Any text made safe to be an e-mail header's value: one line, nothing a mail reader decodes.

    Line breaks of every kind (CR, LF, NEL, U+2028/2029) and other control or invisible
    characters are gone (`text.one_line`). An RFC 2047 encoded word (`=?utf-8?q?...?=`) would be
    decoded by the reader, line breaks and all, so "=?" never reaches a header as it is.
    """
    text = one_line(value).replace("=?", "= ?")
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class OrderFacts:
    """What an e-mail may say about an order, copied out of the database row."""

    order_ref: str
    contract: Contract | None
    customer_id: int | None
    ticket_id: str | None
    plans: tuple[str, ...]
    tags: tuple[int, ...]


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes


class EmailRenderer:
    """Turns a notification kind plus facts into subject, text and HTML."""

    def __init__(self, powercode: PowerCodeSettings) -> None:
        self.powercode = powercode
        loader = FileSystemLoader(str(TEMPLATES))
        # Plain-text bodies are not HTML: escaping would show "&amp;" to the reader.
        self._text = Environment(loader=loader, autoescape=False, undefined=StrictUndefined)  # noqa: S701
        self._html = Environment(loader=loader, autoescape=True, undefined=StrictUndefined)

    def render(
        self,
        kind: NotificationKind,
        facts: OrderFacts | None,
        context: dict[str, Any],
        attachment_note: str,
    ) -> RenderedEmail:
        """One e-mail of the given kind."""
        variables = {
            "order_ref": context.get("order_ref", ""),
            "event": context.get("event", ""),
            "step": context.get("step", ""),
            "reason": context.get("reason", ""),
            "matched_by": context.get("matched_by", "name, city and street"),
            "site_id": "",
            "plans": [],
            "tags": [],
            "customer_id": context.get("customer_id"),
            "customer_link": "",
            "ticket_id": None,
            "contact": None,
            "attachment_note": attachment_note,
            # Reconciliation's e-mails, about no one order.
            "found": list(context.get("found", [])),
            "since": context.get("since", ""),
            "never_read": bool(context.get("never_read", False)),
            "hours": context.get("hours", ""),
            "problems": list(context.get("problems", [])),
            # A routed UTOPIA message: its text, and what became of its action.
            "msg": context.get("msg", ""),
            "action": context.get("action", ""),
            "waiting": context.get("waiting", ""),
            "held": context.get("held", ""),
            "note": context.get("note", ""),
            # A subscriber action: who asked, and each step's outcome.
            "requested_by": context.get("requested_by", ""),
            "steps": list(context.get("steps", [])),
        }
        if facts is not None:
            variables.update(
                order_ref=facts.order_ref,
                plans=list(facts.plans),
                tags=list(facts.tags),
                ticket_id=facts.ticket_id,
                customer_id=facts.customer_id or context.get("customer_id"),
            )
            if facts.contract is not None:
                variables["site_id"] = facts.contract.site_id
                variables["contact"] = _contact(facts.contract)
        if variables["customer_id"]:
            variables["customer_link"] = self.powercode.customer_link(int(variables["customer_id"]))
        return RenderedEmail(
            subject=_subject(kind, variables, context),
            text=self._text.get_template(f"{kind.value}.txt").render(variables).strip() + "\n",
            html=self._html.get_template(f"{kind.value}.html").render(variables),
        )


def _subject(kind: NotificationKind, variables: dict[str, Any], context: dict[str, Any]) -> str:
    ref = variables["order_ref"]
    if kind == NotificationKind.SUCCESS:
        contact = variables["contact"]
        name = contact["name"] if contact else ref
        return f"Customer Created Successfully - {name} (PC#{variables['customer_id']})"
    if kind == NotificationKind.DUPLICATE:
        return f"Duplicate Customer Detected - Order {ref}"
    if kind == NotificationKind.TEST:
        return f"UTOPIA test callback received - {ref}"
    if kind == NotificationKind.MISSED_ORDERS:
        count = len(variables["found"])
        return f"Missed UTOPIA orders found - {count} order{'s' if count != 1 else ''} with no callback"
    if kind == NotificationKind.RECONCILE_STALE:
        return f"UTOPIA's order list not read for {variables['hours']} h - reconciliation"
    if kind == NotificationKind.MESSAGE:
        msg = " ".join(str(context.get("msg", "")).split())[:100]
        if context.get("waiting"):
            return f'UTOPIA message "{msg}" needs a person - Order {ref}'
        if context.get("held"):
            return f'UTOPIA message "{msg}": order on hold - Order {ref}'
        return f'UTOPIA message "{msg}" - Order {ref}'
    if kind == NotificationKind.SUBSCRIBER:
        action = context.get("action", "")
        if context.get("waiting"):
            return f"Subscriber {action} needs a person - Order {ref}"
        return f"Subscriber {action} done - Order {ref}"
    headline = context.get("headline") or "Order waiting for a person"
    return f"{headline} - Order {ref}"


def _one_line(address: PostalAddress) -> str:
    street = street_with_unit(address.street, address.unit)
    state = state_code(address.state) or address.state
    return ", ".join(
        part for part in (street, address.city, f"{state} {address.zip}".strip()) if part
    )


def _contact(contract: Contract) -> dict[str, str]:
    service = _one_line(contract.service_address)
    billing = _one_line(contract.billing_address)
    return {
        "name": f"{contract.customer.first_name} {contract.customer.last_name}".strip(),
        "email": contract.customer.email,
        "phone": format_phone(contract.customer.phone),
        "service_address": service,
        "billing_address": billing if billing and billing != service else "",
    }


def compose(
    rendered: RenderedEmail,
    mail: MailSettings,
    message_id: str,
    attachment: Attachment | None,
) -> EmailMessage:
    """A multipart e-mail (text and HTML, optional PDF) ready for SMTP.

    Every header value, and the attachment's file name, goes through `header_text`.
    """
    message = EmailMessage(policy=MAIL_POLICY)
    headers = {
        "Subject": rendered.subject,
        "From": mail.sender,
        "To": ", ".join(mail.recipients),
        "Date": formatdate(localtime=False, usegmt=True),
        "Message-ID": f"<{message_id}@{MESSAGE_ID_DOMAIN}>",
        "Auto-Submitted": "auto-generated",
    }
    for name, value in headers.items():
        # Only the subject carries outside text that may be long; addresses are never cut.
        message[name] = header_text(value, limit=MAX_HEADER_CHARS if name == "Subject" else None)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    if attachment is not None:
        message.add_attachment(
            attachment.content,
            maintype="application",
            subtype="pdf",
            filename=header_text(attachment.filename),
        )
    return message
