"""The console in headless Chromium against the real service (waitress + worker + stand-ins).

Debian's Chromium at /usr/bin/chromium, driven by Playwright; no browser is downloaded. axe-core
(from the axe-playwright-python package) checks every page for accessibility problems.
Screenshots go to test-output/screenshots/ at the repository root (git-ignored).
"""

from __future__ import annotations

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
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
HELD = "UIA202611-004219"  # Dale Whitfield; plan "2 Gbps" is not mapped, so it waits

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's Chromium is not at /usr/bin/chromium (apt-get install chromium)",
)

if CHROMIUM.exists():
    # axe-core, bundled in the package (no download at test time), injected into each page.
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import ConsoleMessage, Locator, Page, expect, sync_playwright


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
        context = browser.new_context(viewport=DESKTOP)
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
    # The page follows the order by itself (no reload by the test) until it settles.
    expect(page.locator(".status-line .badge").first).to_have_text("done", timeout=20_000)
    expect(page.locator("#live-note")).to_have_count(0)
    expect(page.locator(".timeline")).to_contain_text("Open the installation ticket")
    expect(page.get_by_role("link", name="in PowerCode")).to_be_visible()
    shoot(page, "06-order-done")
    assert "whitfield" not in page.url.casefold()

    page.set_viewport_size(PHONE)
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


def _both_widths(page: Page, shoot: Callable[[Page, str], Path], name: str) -> None:
    """Screenshots of the page as it is, at desktop and phone width."""
    page.set_viewport_size(DESKTOP)
    shoot(page, f"{name}-desktop")
    page.set_viewport_size(PHONE)
    shoot(page, f"{name}-phone")
    page.set_viewport_size(DESKTOP)


def test_an_admin_maps_an_unmapped_plan_from_home_in_at_most_four_clicks(
    console_service: ServiceHandle, page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    url = console_service.url
    problems = _watch_for_blocked_content(page)
    assert post_callback(url, new_order(HELD)).status_code == 200
    wait_for(lambda: load_order(console_service.runtime, HELD).state == OrderState.WAITING)
    _log_in(page, url, Role.ADMIN)
    _both_widths(page, shoot, "01-home")

    clicks = 0

    def click(target: Locator) -> None:
        nonlocal clicks
        clicks += 1
        target.click()

    # Home lists what waits, with why: the order's link there, then the form on its page.
    click(page.locator("table").filter(has_text="Why").get_by_role("link", name=HELD))
    expect(page.locator("#reason")).to_contain_text("Choose the PowerCode services: plan")
    _both_widths(page, shoot, "02-order-with-map-form")
    field = page.get_by_label("Map “2 Gbps” to PowerCode service id")
    click(field)
    field.type("165")
    click(page.get_by_role("button", name="Map and retry"))
    expect(page.get_by_role("status").first).to_contain_text("Mapped “2 Gbps” to service 165")
    expect(page.locator(".status-line .badge").first).to_have_text("done", timeout=20_000)
    assert clicks == 3, clicks  # the brief allows 4
    print(f"clicks from Home to a fixed unmapped plan: {clicks}")
    _both_widths(page, shoot, "03-order-done-after-mapping")

    page.get_by_role("link", name="Plans").click()
    expect(page.locator('input[name=plan_text][value="2 Gbps"]')).to_have_count(1)
    expect(page.get_by_role("heading", name="Orders waiting for a plan mapping")).to_have_count(0)
    assert problems == []


def test_an_operator_is_pointed_to_what_an_operator_can_do(
    console_service: ServiceHandle, page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    url = console_service.url
    assert post_callback(url, new_order(HELD)).status_code == 200
    wait_for(lambda: load_order(console_service.runtime, HELD).state == OrderState.WAITING)
    _log_in(page, url, Role.OPERATOR)
    page.get_by_role("link", name=HELD).first.click()
    expect(page.get_by_role("heading", name="This order needs a plan")).to_be_visible()
    expect(page.locator("#reason")).not_to_contain_text("add one to the plan mapping")
    expect(page.get_by_role("button", name="Map and retry")).to_have_count(0)
    _both_widths(page, shoot, "01-operator-order-needs-a-plan")
    page.get_by_role("link", name="Correct the order").first.click()
    expect(page.get_by_role("heading", name=f"Review order {HELD}")).to_be_visible()


def test_an_old_search_never_hides_what_home_says_is_waiting(
    console_service: ServiceHandle, page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    url = console_service.url
    for ref in (HELD, "UIA202611-004217"):
        assert post_callback(url, new_order(ref)).status_code == 200
    wait_for(lambda: load_order(console_service.runtime, HELD).state == OrderState.WAITING)
    _log_in(page, url, Role.OPERATOR)
    page.get_by_role("link", name="Orders", exact=True).click()
    page.get_by_label("Find by order ref, customer name").fill("Lindqvist")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("Showing orders matching “Lindqvist”")).to_be_visible()

    page.get_by_role("link", name="Home").click()
    page.get_by_role("link", name="See them and fix them").click()
    expect(page.get_by_role("link", name=HELD)).to_be_visible()
    expect(page.get_by_role("link", name="Search for “Lindqvist” again")).to_be_visible()
    _both_widths(page, shoot, "01-waiting-without-the-old-search")

    page.get_by_role("link", name="Search for “Lindqvist” again").click()
    expect(page.get_by_text("No orders waiting for a person match “Lindqvist”")).to_be_visible()
    page.get_by_role("button", name="Clear search").click()
    expect(page).to_have_url(f"{url}/orders?state=waiting")
    expect(page.get_by_role("link", name=HELD)).to_be_visible()


def test_a_button_pressed_after_logging_out_in_another_tab_offers_to_log_in_again(
    console_service: ServiceHandle, page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    url = console_service.url
    _log_in(page, url, Role.ADMIN)
    page.get_by_role("link", name="Plans").click()
    other = page.context.new_page()  # the same browser: the same session cookie
    other.goto(f"{url}/")
    other.get_by_role("button", name="Log out").click()
    expect(other.get_by_role("heading", name="Log in")).to_be_visible()
    other.close()

    page.get_by_role("button", name="Save always-added services").click()
    expect(page.get_by_role("alert")).to_contain_text("You were logged out")
    expect(page.locator("main")).not_to_contain_text("security token")
    _both_widths(page, shoot, "01-logged-out-elsewhere")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORDS[Role.ADMIN])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{url}/settings/plans")  # back where they were


def test_the_header_stays_on_one_line_at_desktop_width(
    console_service: ServiceHandle, page: Page
) -> None:
    _log_in(page, console_service.url, Role.ADMIN)
    brand = page.locator(".brand").bounding_box()
    logout = page.get_by_role("button", name="Log out").bounding_box()
    items = page.locator(".nav li")
    last = items.nth(items.count() - 1).bounding_box()
    assert brand is not None and logout is not None and last is not None
    for box in (logout, last):
        assert abs(box["y"] + box["height"] / 2 - (brand["y"] + brand["height"] / 2)) < 8


def _axe_violations(page: Page) -> list[str]:
    """axe-core's violations on the page as it is, one line each (rule, impact, where)."""
    results = Axe().run(page)
    found: list[str] = []
    for violation in results.response["violations"]:
        targets = [" ".join(map(str, node["target"])) for node in violation["nodes"]][:5]
        found.append(f"{violation['id']} ({violation['impact']}): {', '.join(targets)}")
    return found


def test_every_console_page_passes_axe_core_at_desktop_and_phone_width(
    console_service: ServiceHandle, page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    url = console_service.url
    runtime = console_service.runtime
    for ref in (HELD, "UIA202611-004217", "UIA202611-004220"):
        assert post_callback(url, new_order(ref)).status_code == 200
    not_handled = {"event": "Install", "orderref": HELD, "msg": "Project Install Scheduled"}
    assert post_callback(url, not_handled).status_code == 200
    wait_for(lambda: load_order(runtime, "UIA202611-004217").state == OrderState.DONE)
    wait_for(lambda: load_order(runtime, HELD).state == OrderState.WAITING)
    wait_for(lambda: load_order(runtime, "UIA202611-004220").state == OrderState.DUPLICATE)
    held, done = load_order(runtime, HELD).id, load_order(runtime, "UIA202611-004217").id
    duplicate = load_order(runtime, "UIA202611-004220").id
    violations: dict[str, list[str]] = {}

    def check(name: str) -> None:
        page.wait_for_load_state("networkidle")
        for width, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(size)
            found = _axe_violations(page)
            if found:
                violations[f"{name} at {width}"] = found
            shoot(page, f"{name}-{width}")
        page.set_viewport_size(DESKTOP)

    page.goto(f"{url}/login")
    check("login")
    page.get_by_label("User name").fill("nobody")
    page.get_by_label("Password").fill("wrong-password-1234")
    page.get_by_role("button", name="Log in").click()
    check("login-refused")
    _log_in(page, url, Role.ADMIN)
    check("home")
    for name, path in (
        ("orders", "/orders"),
        ("orders-waiting", "/orders?state=waiting"),
        ("order-waiting", f"/orders/{held}"),
        ("order-done", f"/orders/{done}"),
        ("order-duplicate", f"/orders/{duplicate}"),
        ("provision", "/provision"),
        ("provision-review", f"/orders/{held}/provision"),
        ("not-handled", "/callbacks/not-handled"),
        ("audit", "/audit"),
        ("plans", "/settings/plans"),
        ("ticket-template", "/settings/ticket-template"),
        ("settings", "/settings"),
        ("not-found", "/no-such-page"),
    ):
        page.goto(f"{url}{path}")
        check(name)

    page.goto(f"{url}/orders")
    page.get_by_label("Find by order ref, customer name").fill("Whitfield")
    page.get_by_role("button", name="Search").click()
    check("orders-searched")
    page.goto(f"{url}/orders/{done}")
    page.get_by_label("Look up the contract at UTOPIA").check()
    page.get_by_role("button", name="Retry from this step").click()
    check("confirm-retry")
    page.goto(f"{url}/orders/{held}/provision")
    page.get_by_label("ZIP code").fill("840")
    page.get_by_role("button", name="Provision this order").click()
    check("provision-review-problems")
    page.goto(f"{url}/provision")
    page.get_by_label("UTOPIA order ref").fill("not a ref!")
    page.get_by_role("button", name="Look up at UTOPIA").click()
    check("provision-lookup-refused")
    page.goto(f"{url}/settings/plans")
    page.get_by_label("PowerCode service id, row 1").fill("x")
    page.get_by_role("button", name="Save the plan mapping").click()
    check("plans-refused")
    page.goto(f"{url}/settings/ticket-template")
    page.get_by_label("Template", exact=True).fill("{% if %}")
    page.get_by_role("button", name="Save as the new version").click()
    check("ticket-template-refused")
    page.goto(f"{url}/settings")
    page.get_by_role("button", name="Run the checks").click()
    check("settings-checks")

    page.get_by_role("button", name="Log out").click()
    _log_in(page, url, Role.OPERATOR)
    page.goto(f"{url}/orders/{held}")
    check("order-waiting-operator")

    assert not violations, "\n".join(
        f"{where}: {line}" for where, lines in violations.items() for line in lines
    )


def test_an_operator_suspends_a_subscriber_from_the_order_page_after_seeing_the_plan(
    console_service: ServiceHandle, page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    url = console_service.url
    runtime = console_service.runtime
    done_ref = "UIA202611-004217"  # site 204817: UTOPIA gives its cid, C204817
    problems = _watch_for_blocked_content(page)
    assert post_callback(url, new_order(done_ref)).status_code == 200
    wait_for(lambda: load_order(runtime, done_ref).state == OrderState.DONE)
    _log_in(page, url, Role.OPERATOR)
    page.goto(f"{url}/orders/{load_order(runtime, done_ref).id}")
    page.get_by_role("link", name="Suspend", exact=True).click()
    expect(page.get_by_role("heading", name="Suspend the subscriber")).to_be_visible()
    page.get_by_label("Why?").fill("Unpaid since May; customer told by phone")
    page.get_by_role("button", name="Show what will be sent (dry run)").click()
    plan = page.locator("ol.plan")
    expect(plan).to_contain_text("/spquery/suspend")
    expect(plan).to_contain_text("C204817")
    expect(plan).to_contain_text("updateCustomerStatus")
    assert _axe_violations(page) == []
    _both_widths(page, shoot, "01-what-will-be-sent")
    page.get_by_role("button", name="Send it: suspend the subscriber").click()
    expect(page.get_by_role("status").first).to_contain_text("queued as subscriber action")
    row = page.locator("tr[id^=subscriber-action-]")
    for _ in range(40):  # the worker runs it in the background; the page is reloaded to see it
        if "done" in (row.locator("td[data-label=State]").text_content() or ""):
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(row.locator("td[data-label=State]")).to_have_text("done")
    expect(page.locator(".timeline")).to_contain_text("Subscriber suspend: utopia_suspend")
    _both_widths(page, shoot, "02-order-with-the-action-done")
    assert problems == []
