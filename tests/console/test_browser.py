"""The console in headless Chromium against the real service (waitress + worker + stand-ins).

Debian's Chromium at /usr/bin/chromium, driven by Playwright; no browser is downloaded.
Screenshots go to test-output/screenshots/ at the repository root (git-ignored).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, load_order, new_order, post_callback, wait_for
from tests.console.conftest import PASSWORDS
from utopia_handler import accounts
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import OrderState
from utopia_handler.timeutil import utcnow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "test-output" / "screenshots"
HELD = "UIA202611-004219"  # Dale Whitfield; plan "2 Gbps" is not mapped, so it waits

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's Chromium is not at /usr/bin/chromium (apt-get install chromium)",
)

if CHROMIUM.exists():
    from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright


@pytest.fixture
def console_service(console_runtime: Runtime) -> Iterator[ServiceHandle]:
    with console_runtime.store.write() as session:
        for role in (Role.OPERATOR, Role.ADMIN):
            accounts.add_user(session, role.value, PASSWORDS[role], role, utcnow(), actor="test")
    handle = ServiceHandle(console_runtime, port=0).start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture
def shoot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    return take


def _watch_for_blocked_content(page: Page) -> list[str]:
    """Console errors such as CSP refusals: the console must need nothing it forbids itself."""
    problems: list[str] = []

    def check(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("console", check)
    return problems


def _log_in(page: Page, url: str, role: Role) -> None:
    page.goto(f"{url}/")
    expect(page).to_have_url(f"{url}/login")
    page.get_by_label("User name").fill(role.value)
    page.get_by_label("Password").fill(PASSWORDS[role])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="At a glance")).to_be_visible()


def test_find_an_order_by_name_retry_it_after_adding_its_plan_and_see_it_done(
    console_service: ServiceHandle, page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    url = console_service.url
    problems = _watch_for_blocked_content(page)
    assert post_callback(url, new_order(HELD)).status_code == 200
    wait_for(lambda: load_order(console_service.runtime, HELD).state == OrderState.WAITING)

    page.goto(f"{url}/login")
    expect(page.get_by_label("User name")).to_be_focused()
    shoot(page, "01-login")

    _log_in(page, url, Role.ADMIN)
    expect(page.get_by_role("alert")).to_contain_text("1 order waits for a person")
    # The first key press reaches the skip link: keyboard users jump past the navigation.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    shoot(page, "02-home-with-warning")

    # The admin maps the missing plan in the settings page.
    page.get_by_role("link", name="Plans").click()
    page.get_by_label("UTOPIA plan text, row 4").fill("2 Gbps")
    page.get_by_label("PowerCode service id, row 4").fill("165")
    page.get_by_role("button", name="Save the plan mapping").click()
    expect(page.get_by_role("status")).to_contain_text("Plan mapping saved")
    shoot(page, "03-plan-mapping-saved")

    # Find the order by the customer's name; the name never appears in an address.
    page.get_by_role("link", name="Orders", exact=True).click()
    page.get_by_label("Find by order ref, customer name").fill("Whitfield")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name=HELD)).to_be_visible()
    assert "whitfield" not in page.url.casefold()
    shoot(page, "04-search-by-name")
    page.get_by_role("link", name=HELD).click()
    expect(page.get_by_role("heading", name=f"Order {HELD}")).to_be_visible()
    expect(page.locator("#reason")).to_contain_text("has no PowerCode service mapping")
    shoot(page, "05-order-waiting")

    page.get_by_role("button", name="Retry now").click()
    expect(page.get_by_role("status").first).to_contain_text("is queued again")
    deadline = time.monotonic() + 20
    while "done" not in (page.locator(".status-line .badge").first.text_content() or ""):
        assert time.monotonic() < deadline, "the order did not finish"
        time.sleep(0.3)
        page.reload()
    expect(page.locator(".timeline")).to_contain_text("Open the installation ticket")
    expect(page.get_by_role("link", name="in PowerCode")).to_be_visible()
    shoot(page, "06-order-done")
    assert "whitfield" not in page.url.casefold()

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.reload()
    expect(page.get_by_role("heading", name=f"Order {HELD}")).to_be_visible()
    shoot(page, "07-order-done-phone")
    assert problems == []


def test_edit_the_ticket_template_with_a_live_preview_and_save_it(
    console_service: ServiceHandle, page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    url = console_service.url
    problems = _watch_for_blocked_content(page)
    _log_in(page, url, Role.ADMIN)
    page.get_by_role("link", name="Ticket template").click()
    preview = page.frame_locator("#preview-frame")
    expect(preview.locator("body")).to_contain_text("Customer: Jordan Sample")
    shoot(page, "01-template-as-found")

    editor = page.get_by_label("Template", exact=True)
    editor.fill("<h2>New install</h2>\n<p>For {{ customer_name }} at {{ address }}, {{ city }}</p>")
    # The preview follows the typing, without a button (script served by the app itself).
    expect(preview.locator("h2")).to_have_text("New install")
    expect(preview.locator("p")).to_have_text("For Jordan Sample at 123 N Example St # 2, Orem")
    shoot(page, "02-template-live-preview")

    editor.fill("<p>{{ customer_name </p>")
    expect(page.locator("#preview-problems")).to_contain_text("failed to render")
    shoot(page, "03-template-error-shown")

    editor.fill("<h2>New install</h2>\n<p>For {{ customer_name }} at {{ address }}</p>")
    page.get_by_role("button", name="Save as the new version").click()
    expect(page.get_by_role("status")).to_contain_text("Ticket template saved as version")
    expect(page.locator("table")).to_contain_text("in force")
    shoot(page, "04-template-saved-with-history")
    assert problems == []
