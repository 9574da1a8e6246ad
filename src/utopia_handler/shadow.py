"""Shadow mode: orders are worked on with real reads, and every write is recorded instead of sent.

An ISP runs the new service beside its old handler for a week with `SHADOW_MODE=true`: UTOPIA is
asked for contracts and PowerCode searched and read as usual, but createCustomer, addCustomerService,
createTicket, tag additions and any other write become `shadow_writes` rows holding exactly the
fields that would have gone out (secrets masked), so a person compares them with what the old
handler did. A write answers with made-up ids (a customer -<order id>, a ticket "shadow-<order
id>") so the order goes on to its later steps; reads about those made-up records answer "none"
here instead of asking PowerCode about records that do not exist.

Deny by default: only the actions named in READ_ACTIONS reach PowerCode; anything else, including
actions added later, is recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from utopia_handler.clients.http import DEFAULT_TIMEOUTS, as_int
from utopia_handler.clients.powercode import LearnedReplies, PowerCodeClient, _Reply
from utopia_handler.clients.utopia import UtopiaClient
from utopia_handler.settings import Timeouts
from utopia_handler.store.db import Store
from utopia_handler.store.models import ShadowWrite, StepAttempt

READ_ACTIONS = frozenset(
    {
        "searchCustomers",
        "readCustomer",
        "readCustomerService",
        "readTicket",
        "readCustomerEquipment",
    }
)
#: UTOPIA /spquery calls that only read; any other (suspend, changespeed...) is recorded.
UTOPIA_READ_CALLS = frozenset(
    {
        "service",
        "apview",
        "macsearch",
        "checkaccess",
        "customer",
        "products",
        "projects",
        "projectdetail",
        "outagetickets",
        "outageticket",
    }
)
MASK = "********"
_SECRET_WORDS = ("password", "secret", "apikey", "token")
SHADOW_TICKET_PREFIX = "shadow-"


@dataclass(frozen=True)
class WorkContext:
    """The order and step attempt a write belongs to (set by the worker around each step)."""

    order_id: int | None
    step: str | None
    attempt_id: int | None


_current_work: ContextVar[WorkContext | None] = ContextVar("shadow_current_work", default=None)


@contextlib.contextmanager
def working_on(context: WorkContext) -> Iterator[None]:
    """Within this block, recorded writes belong to `context`'s order and attempt."""
    token = _current_work.set(context)
    try:
        yield
    finally:
        _current_work.reset(token)


def masked(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields with every secret-looking value replaced by a mask."""
    return {
        name: MASK if any(word in name.casefold() for word in _SECRET_WORDS) else value
        for name, value in fields.items()
    }


class ShadowRecorder:
    """Stores each recorded write in its own short transaction, with the work it belongs to."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def record(self, service: str, action: str, fields: Mapping[str, Any]) -> int | None:
        """Keep one write that was not sent; returns the order id it belongs to, if any."""
        work = _current_work.get()
        with self._store.write() as session:
            run = None
            if work is not None and work.attempt_id is not None:
                run = session.scalar(
                    select(StepAttempt.run).where(StepAttempt.id == work.attempt_id)
                )
            session.add(
                ShadowWrite(
                    order_id=work.order_id if work else None,
                    run=run,
                    step=work.step if work else None,
                    attempt_id=work.attempt_id if work else None,
                    service=service,
                    action=action,
                    fields=masked(fields),
                    recorded_at=self._clock(),
                )
            )
        return work.order_id if work else None


def is_shadow_customer(value: object) -> bool:
    """Whether a customer id is one shadow mode made up (a negative number)."""
    number = as_int(value)
    return number is not None and number < 0


class ShadowPowerCodeClient(PowerCodeClient):
    """PowerCode with reads passed through and writes recorded; see the module docstring."""

    def __init__(
        self,
        api_url: str,
        uapi_url: str,
        api_key: str,
        recorder: ShadowRecorder,
        *,
        verify: bool | str = True,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        transport: httpx.BaseTransport | None = None,
        learned: Callable[[], LearnedReplies] | None = None,
    ) -> None:
        super().__init__(
            api_url,
            uapi_url,
            api_key,
            verify=verify,
            timeouts=timeouts,
            transport=transport,
            learned=learned,
        )
        self._recorder = recorder

    def _call(self, action: str, fields: Mapping[str, str]) -> _Reply:
        if action in READ_ACTIONS:
            if is_shadow_customer(fields.get("customerID")):
                # A customer shadow mode made up: PowerCode has no such record to read.
                body: dict[str, Any] = {"statusCode": 0, "message": ""}
                if action == "readCustomerService":
                    body["services"] = []
                return _Reply(0, "", body)
            return super()._call(action, fields)
        order_id = self._recorder.record("powercode", action, fields)
        return _Reply(0, "recorded in shadow mode, not sent", _made_up_reply(action, order_id))

    def _uapi(self, method: str, query: list[tuple[str, str]]) -> Any:
        customer = dict(query).get("customerID")
        if method == "GET":
            return [] if is_shadow_customer(customer) else super()._uapi(method, query)
        self._recorder.record("powercode", f"uapi:tags {method}", dict(query))
        tags: Sequence[str] = [value for name, value in query if name == "tags[]"]
        return [{"TagID": tag} for tag in tags]


class ShadowUtopiaClient(UtopiaClient):
    """UTOPIA with look-ups passed through and the subscriber writes recorded, deny by default."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        recorder: ShadowRecorder,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        network: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeouts=timeouts, network=network, transport=transport)
        self._recorder = recorder

    def _spquery(self, label: str, fields: dict[str, str]) -> tuple[int, Any]:
        if label in UTOPIA_READ_CALLS:
            return super()._spquery(label, fields)
        self._recorder.record("utopia", label, fields)
        return 200, {"status": "recorded in shadow mode, not sent"}


def _made_up_reply(action: str, order_id: int | None) -> dict[str, Any]:
    """What a write answers in shadow mode: enough for the following steps to go on."""
    key = order_id or 0
    if action == "createCustomer":
        return {"statusCode": 0, "customerID": -key}
    if action == "createTicket":
        return {"statusCode": 0, "ticketID": f"{SHADOW_TICKET_PREFIX}{key}"}
    return {"statusCode": 0, "message": "recorded in shadow mode, not sent"}
