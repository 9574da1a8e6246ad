"""Tables of the operator console: users and their sessions, login throttling, the audit log, and
the settings people edit in the console (plan mapping, always-added services, ticket template).

They share `store.models.Base`, so Alembic and the rest of the store see one schema.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from utopia_handler.store.models import Base, _enum


class Role(enum.StrEnum):
    """What a console user may do; each role can do everything the one before it can."""

    VIEWER = "viewer"  # read orders, callbacks, the audit log
    OPERATOR = "operator"  # act on orders: retry, resolve, ignore, re-send, provision by hand
    ADMIN = "admin"  # edit the plan mapping, services and ticket template; see the settings

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class ConfigKind(enum.StrEnum):
    """What a stored settings version holds."""

    PLANS = "plans"  # [{"utopia_text": str, "service_id": int}, ...]
    ALWAYS_SERVICES = "always_services"  # [int | {"service_id": int, "quantity": int}, ...]
    TICKET_TEMPLATE = "ticket_template"  # {"source": str}
    # The routing table of UTOPIA messages: [{"match"|"pattern": str, "action": str}, ...]
    MESSAGE_ROUTES = "message_routes"
    MESSAGE_TICKET_TEMPLATE = "message_ticket_template"  # {"source": str}: `ticket` action
    # What `check-config --live` learned of PowerCode's unpublished replies:
    # {"customer_not_found": {"status_code", "message"} | None, "no_services": ... | None}
    POWERCODE_REPLIES = "powercode_replies"
    # A speed change's UTOPIA product per PowerCode service: [{"service_id": int, "product": str}]
    SPEED_PRODUCTS = "speed_products"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A logged-in browser. The cookie holds a random token; only its hash is stored here, so a
    stolen database copy cannot be used to log in, and deleting the row ends the session."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class LoginFailure(Base):
    """One failed login, counted per user name and address together for throttling.

    `key` is a hash of both: people sometimes type their password into the user name field.
    """

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(8))  # "pair" (before: "user" or "ip")
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]

    __table_args__ = (Index("ix_login_failures_scope_key_at", "scope", "key", "at"),)


class AuditEntry(Base):
    """Who did what, when, to which order; written in the same transaction as the action."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    order_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    detail: Mapped[str | None] = mapped_column(Text)


class ConfigVersion(Base):
    """One saved version of a console-edited setting; the newest of each kind is in force."""

    __tablename__ = "config_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ConfigKind] = mapped_column(_enum(ConfigKind))
    value: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_config_versions_kind_id", "kind", "id"),)
