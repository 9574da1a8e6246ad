"""The orders list is paged by seeking on the order id: newest first, every order once across
the pages even while new ones arrive, the state and the search kept, each page an address that
can be bookmarked; the counts stop at queries.COUNT_CAP."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from tests.conftest import queue_order
from tests.console.conftest import post_form
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import Order, OrderState

REF = re.compile(r">(UIA\d{6}-\d{6})</a>")
OLDER = re.compile(r'<a href="([^"]+)" rel="next">Older')
NEWER = re.compile(r'<a href="([^"]+)" rel="prev">← Newer')


def _queue(runtime: Runtime, numbers: range) -> None:
    for number in numbers:
        queue_order(runtime, f"UIA202612-{number:06d}")


def _page(client: FlaskClient, path: str) -> tuple[list[str], str | None, str | None]:
    """The refs a page lists, and its links to the older and the newer page."""
    text = client.get(path.replace("&amp;", "&")).get_data(as_text=True)
    older, newer = OLDER.search(text), NEWER.search(text)
    return (
        REF.findall(text),
        older.group(1).replace("&amp;", "&") if older else None,
        newer.group(1).replace("&amp;", "&") if newer else None,
    )


def _refs(numbers: range) -> list[str]:
    return [f"UIA202612-{n:06d}" for n in numbers]


def test_pages_go_back_in_time_without_repeating_or_skipping_an_order_while_new_ones_arrive(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    _queue(console_runtime, range(120))
    viewer = client_as(Role.VIEWER)
    first, older, newer = _page(viewer, "/orders")
    assert first == _refs(range(119, 69, -1)) and newer is None
    assert older is not None and re.fullmatch(r"/orders\?before=\d+", older)
    _queue(console_runtime, range(120, 130))  # arrive while the person reads page 1
    second, third_link, back = _page(viewer, older)
    assert second == _refs(range(69, 19, -1))  # exactly where page 1 ended
    third, none, _ = _page(viewer, str(third_link))
    assert third == _refs(range(19, -1, -1)) and none is None
    seen = first + second + third
    assert len(seen) == len(set(seen)) == 120

    # Newer from page 2 is the 50 just newer than it, now that 10 more came; then the newest.
    assert back is not None and "after=" in back
    newer_page, _, newest_link = _page(viewer, back)
    assert newer_page == _refs(range(119, 69, -1))
    assert newest_link is not None
    newest, _, none = _page(viewer, newest_link)
    assert newest == _refs(range(129, 79, -1)) and none is None

    # An address is a bookmark: another person's browser gets the same page; an old ?page=
    # address shows the newest orders.
    assert _page(client_as(Role.OPERATOR), older)[0] == second
    assert _page(viewer, "/orders?page=2")[0] == newest
    assert _page(viewer, "/orders?before=x")[0] == newest


def test_the_state_and_the_search_are_kept_from_page_to_page(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    _queue(console_runtime, range(130))
    with console_runtime.store.write() as session:  # every third order is done
        done = [f"UIA202612-{n:06d}" for n in range(0, 130, 3)]
        session.execute(update(Order).where(Order.order_ref.in_(done)).values(state="done"))
    viewer = client_as(Role.VIEWER)
    first, older, _ = _page(viewer, "/orders?state=done")
    assert first == done[::-1] and older is None  # 44 done: one page

    post_form(viewer, "/orders/search", {"q": "UIA202612-0000"})  # part of the refs 0..99
    first, older, _ = _page(viewer, "/orders?state=received&search=1")
    expected = [r for r in _refs(range(99, -1, -1)) if r not in done]
    assert first == expected[:50]
    assert older is not None and "state=received" in older and "search=1" in older
    second, last, newer = _page(viewer, older)
    assert second == expected[50:] and last is None
    assert newer is not None and "state=received" in newer and "search=1" in newer


def test_counts_stop_at_the_cap_and_say_so(
    console_runtime: Runtime,
    client_as: Callable[[Role], FlaskClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queries, "COUNT_CAP", 5)
    _queue(console_runtime, range(8))
    with console_runtime.store.write() as session:
        session.execute(
            update(Order)
            .where(Order.order_ref == "UIA202612-000000")
            .values(state=OrderState.WAITING)
        )
    viewer = client_as(Role.VIEWER)
    counts = viewer.get("/orders/counts").get_json()
    assert counts["shown"]["received"] == "5+" and counts["shown"]["waiting"] == "1"
    assert counts["shown"]["all"] == "6+" and counts["counts"]["done"] == 0
    page = viewer.get("/orders").get_data(as_text=True)
    assert 'data-count="received">5+<' in page and "(counted up to 6)" in page
    home = viewer.get("/").get_data(as_text=True)
    assert 'data-count="received">5+<' in home and "1 order waits for a person" in home
    post_form(viewer, "/orders/search", {"q": "UIA202612"})  # 8 matches: more than 5
    found = viewer.get("/orders/counts?search=1").get_json()["shown"]
    assert found["all"] == "5+" and found["received"].endswith("+")


def test_parts_of_refs_and_names_are_looked_for_among_the_newest_orders_only_and_it_says_so(
    console_runtime: Runtime,
    client_as: Callable[[Role], FlaskClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queries, "SEARCH_SCAN_ORDERS", 10)
    _queue(console_runtime, range(30))
    with console_runtime.store.write() as session:
        for number, name in ((2, "Dale Whitfield"), (25, "María José O'Neill-Ramírez")):
            order = session.query(Order).filter_by(order_ref=f"UIA202612-{number:06d}").one()
            order.customer_name = name
    viewer = client_as(Role.VIEWER)

    def search(text: str) -> tuple[list[str], str]:
        post_form(viewer, "/orders/search", {"q": text})
        page = viewer.get("/orders?search=1").get_data(as_text=True)
        return REF.findall(page), page

    found, page = search("UIA202612-000002")  # a whole ref, old: through its index
    assert found == ["UIA202612-000002"]
    assert "only among the newest 10 orders" in page
    assert search("dale")[0] == ["UIA202612-000002"]  # a name's beginning, old
    assert search("DALE WHIT")[0] == ["UIA202612-000002"]
    assert search("whitfield")[0] == []  # another word of an old name: not read
    assert search("ramirez maria")[0] == ["UIA202612-000025"]  # among the newest: read
    assert search("UIA202612-00000")[0] == []  # parts of old refs: not read
    assert search("UIA202612-00002")[0] == _refs(range(29, 19, -1))
    assert search("102")[0] == []  # a site id that is nobody's: nothing, no error
