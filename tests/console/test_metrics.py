"""/metrics after a real flow through the running service, who may scrape it, and /readyz."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from alembic import command
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import new_order, post_callback, settled, wait_for
from utopia_handler.app import create_app
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime, build_runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.settings import Settings
from utopia_handler.store.console_models import Role
from utopia_handler.store.db import alembic_config

PLAIN = "UIA202611-004217"
HELD = "UIA202611-004219"
METRICS_TOKEN = "metrics-token-5c0ffee5c0ffee"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_tell_what_happened_in_a_real_flow(
    service: ServiceHandle, emulators: Emulators
) -> None:
    # One fault outside, so there is a retry to count.
    emulators.powercode.faults.add("createTicket", "fail", count=1, status=503, retry_after=0)
    for body in (
        new_order(PLAIN),
        new_order(PLAIN),  # a repeat
        new_order(HELD),  # waits for a person: unmapped plan
        {"event": "Project Update", "orderref": PLAIN, "msg": "Project Install Scheduled"},
    ):
        assert post_callback(service.url, body).status_code == 200
    wait_for(lambda: settled(service.runtime), timeout=30)

    answer = httpx.get(f"{service.url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    samples = _samples(answer.text)

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("utopia_handler_callbacks_total", outcome="queued") == 2
    assert value("utopia_handler_callbacks_total", outcome="repeat") == 1
    assert value("utopia_handler_callbacks_total", outcome="not_handled") == 1
    assert value("utopia_handler_orders", state="done") == 1
    assert value("utopia_handler_orders", state="waiting") == 1
    assert value("utopia_handler_orders", state="in_progress") == 0
    assert value("utopia_handler_step_retries_total", step="create_ticket") == 1
    assert value("utopia_handler_step_attempts_total", step="create_ticket", outcome="ok") == 1
    assert value("utopia_handler_step_attempts_total", step="choose_plans", outcome="held") == 1
    assert value("utopia_handler_step_duration_seconds_count", step="create_customer") == 1
    assert (
        value("utopia_handler_step_duration_seconds_bucket", step="create_customer", le="+Inf") == 1
    )
    assert value("utopia_handler_step_duration_seconds_sum", step="create_customer") > 0
    assert value("utopia_handler_queue_depth", queue="orders_due") == 0
    assert value("utopia_handler_queue_depth", queue="emails_pending") == 0
    assert value("utopia_handler_emails", state="sent") == 2
    assert value("utopia_handler_oldest_waiting_order_age_seconds") > 0


def test_metrics_tell_how_reconciliation_goes(service: ServiceHandle, emulators: Emulators) -> None:
    from datetime import UTC

    from utopia_handler.emulators.seed import MISSED_DEMO_ORDER
    from utopia_handler.reconcile import reconcile
    from utopia_handler.timeutil import utcnow

    runtime = service.runtime

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = httpx.get(f"{service.url}/metrics", timeout=10)
        assert answer.status_code == 200
        return _samples(answer.text)

    before = scrape()
    assert before[("utopia_handler_reconcile_runs_total", (("outcome", "ok"),))] == 0
    assert before[("utopia_handler_reconcile_missed_orders_found_total", ())] == 0
    assert not any(name.startswith("utopia_handler_reconcile_last_good") for name, _ in before)

    reconcile(runtime, utcnow())  # the baseline: 5 recorded, not counted as missed
    emulators.utopia.add_order(*MISSED_DEMO_ORDER)
    reconcile(runtime, utcnow(), dry_run=True)  # not counted
    found = reconcile(runtime, utcnow())
    emulators.utopia.order_list_shape = "html"
    reconcile(runtime, utcnow())
    emulators.utopia.faults.add("orders", "fail", count=1, status=503)
    reconcile(runtime, utcnow())

    after = scrape()
    runs = {
        labels[0][1]: value
        for (name, labels), value in after.items()
        if name == "utopia_handler_reconcile_runs_total"
    }
    assert runs == {"ok": 2, "failed": 1, "unreadable": 1}
    assert after[("utopia_handler_reconcile_missed_orders_found_total", ())] == 1
    last_good = after[
        ("utopia_handler_reconcile_last_good_timestamp_seconds", (("network", "default"),))
    ]
    assert abs(last_good - found.started_at.replace(tzinfo=UTC).timestamp()) < 5


def test_the_console_home_shows_the_same_at_a_glance(
    service: ServiceHandle, client_as: Callable[[Role], FlaskClient]
) -> None:
    post_callback(service.url, new_order(HELD))
    wait_for(lambda: settled(service.runtime), timeout=30)
    page = client_as(Role.VIEWER).get("/").get_data(as_text=True)
    assert "1 order waits for a person" in page
    assert HELD in page and "has no PowerCode service mapping" in page


def test_without_a_token_only_direct_loopback_requests_may_scrape(
    console_runtime: Runtime,
) -> None:
    app = create_app(console_runtime)
    local = app.test_client()
    assert local.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    proxied = local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403
    remote = app.test_client()
    remote.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    answer = remote.get("/metrics")
    assert answer.status_code == 403
    assert "METRICS_TOKEN" in answer.get_json()["error"]


def test_with_a_token_every_scrape_must_bring_it(make_runtime: Callable[..., Runtime]) -> None:
    app = create_app(make_runtime(METRICS_TOKEN=METRICS_TOKEN))
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token-xxxxx"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert right.status_code == 200
    assert "utopia_handler_orders" in right.get_data(as_text=True)
    # The token is needed from loopback too: a proxy on this machine would look local.
    local = app.test_client()
    assert local.get("/metrics").status_code == 401


def test_readyz_needs_the_store_and_the_newest_schema(
    console_runtime: Runtime, make_settings: Callable[..., Settings]
) -> None:
    client = create_app(console_runtime).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "store": "ok", "migrations": "at head"}

    command.downgrade(alembic_config(console_runtime.store.url), "0002")
    behind = client.get("/readyz")
    assert behind.status_code == 503
    assert behind.get_json()["database_revision"] == ["0002"]
    assert "db upgrade" in behind.get_json()["migrations"]
    console_runtime.store.migrate()
    assert client.get("/readyz").status_code == 200

    # A database that does not answer (nothing listens on port 1).
    unreachable = build_runtime(
        make_settings(DATABASE_URL="postgresql+psycopg://u:p@127.0.0.1:1/none")
    )
    try:
        down = create_app(unreachable).test_client().get("/readyz")
        assert down.status_code == 503
        assert down.get_json()["store"] == "unavailable"
    finally:
        unreachable.close()


def test_callbacks_are_counted_by_message_text_in_a_bounded_set_of_series(
    make_runtime: Callable[..., Runtime],
) -> None:
    from tests.conftest import CALLBACK_TOKEN
    from utopia_handler.web.metrics import MESSAGE_LABELS

    runtime = make_runtime(CALLBACK_RATE_LIMIT="1000", CALLBACK_RATE_BURST="1000")
    handle = ServiceHandle(runtime, worker=False, port=0).start()
    try:
        bodies = [new_order(PLAIN), new_order(PLAIN)]
        # Sixty made-up texts, the busiest first: only the fifty most frequent get a series.
        for n in range(60):
            bodies += [
                {"event": f"e{k}", "orderref": PLAIN, "msg": f"Update {n:02d}"}
                for k in range(2 if n < 45 else 1)
            ]
        odd = 'Quote " back\\slash ' + "x" * 150  # escaped in the label, clipped to 100
        bodies.append({"event": "Port", "orderref": PLAIN, "msg": odd})
        bodies.append({"event": "Port2", "orderref": PLAIN, "msg": odd})
        with httpx.Client(timeout=10) as client:
            for body in bodies:
                answer = client.post(
                    f"{handle.url}/api-callback", params={"token": CALLBACK_TOKEN}, json=body
                )
                assert answer.status_code == 200
        text = httpx.get(f"{handle.url}/metrics", timeout=10).text
    finally:
        handle.stop()
    by_msg = {
        labels[0][1]: value
        for (name, labels), value in _samples(text).items()
        if name == "utopia_handler_callbacks_by_message_total"
    }
    assert len(by_msg) == MESSAGE_LABELS + 1  # the fifty, and "other"
    assert by_msg["Project New Order"] == 2
    assert by_msg[odd[:100]] == 2
    assert by_msg["Update 00"] == 2
    assert sum(by_msg.values()) == len(bodies)
    assert by_msg["other"] == len(bodies) - sum(v for k, v in by_msg.items() if k != "other")
    assert 'msg="Quote \\" back\\\\slash ' in text  # the exposition escapes label values
    assert all(len(label) <= 100 for label in by_msg)
