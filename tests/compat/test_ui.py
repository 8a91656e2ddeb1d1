"""The people's side in a real browser: the live view and the dashboard.

The viewer is itself an anchorage session (Debian's Chromium, driven over
CDP by Playwright), which opens another session's `live_view_url` or the
dashboard. Screenshots go to `$ANCHORAGE_SCREENSHOTS` when it is set (that is
how the ones in `docs/` were made)."""

import contextlib
import os
import pathlib

from playwright.sync_api import sync_playwright

from conftest import API_KEY

def close_to(colour):
    """A page function that is true once the canvas centre shows `colour`."""
    red, green, blue = colour
    return (
        "() => { const c = document.getElementById('screen');"
        " const d = c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data;"
        f" return Math.abs(d[0] - {red}) < 40 && Math.abs(d[1] - {green}) < 40 && Math.abs(d[2] - {blue}) < 40; }}"
    )


def screenshot(page, name):
    folder = os.environ.get("ANCHORAGE_SCREENSHOTS")
    if folder:
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(pathlib.Path(folder) / name))


@contextlib.contextmanager
def session(client, **options):
    """A session that is ended whatever the test does."""
    created = client.sessions.create_session(**options).data
    try:
        yield created
    finally:
        client.sessions.delete_session(created.id)


@contextlib.contextmanager
def viewer_page(client, playwright):
    """A page of a fresh anchorage session, to look at anchorage with."""
    with session(client, browser={"viewport": {"width": 1200, "height": 760}}) as viewer:
        browser = playwright.chromium.connect_over_cdp(viewer.cdp_url)
        try:
            yield browser.contexts[0].pages[0]
        finally:
            browser.close()


def test_live_view_shows_the_session_and_forwards_clicks(client, page_url):
    with (
        session(
            client,
            session={"initial_url": page_url + "demo"},
            browser={"viewport": {"width": 1024, "height": 640}},
        ) as watched,
        sync_playwright() as playwright,
        viewer_page(client, playwright) as viewer,
    ):
        viewer.goto(watched.live_view_url)
        viewer.wait_for_function("() => window.anchorageFrames > 0")
        viewer.wait_for_function(close_to((0x2D, 0x7F, 0xF9)))
        screenshot(viewer, "live-view.png")

        # The session navigates: the canvas follows.
        browser = playwright.chromium.connect_over_cdp(watched.cdp_url)
        page = browser.contexts[0].pages[0]
        page.goto(page_url + "clicks")
        viewer.wait_for_function(close_to((0, 0, 255)))
        assert page.evaluate("window.clicks") == 0

        # A click on the canvas reaches the page, which turns green.
        box = viewer.locator("#screen").bounding_box()
        viewer.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function("() => window.clicks === 1")
        viewer.wait_for_function(close_to((0, 255, 0)))
        assert viewer.locator("#state").text_content() == "live"

        # REST actions while the viewer watches and Playwright is connected:
        # each of the three goes on undisturbed.
        assert client.sessions.mouse_click(watched.id, x=10, y=10).status == "clicked"
        page.wait_for_function("() => window.clicks === 2")
        assert client.sessions.get_session_screenshot(watched.id).read()[:8] == b"\x89PNG\r\n\x1a\n"
        viewer.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function("() => window.clicks === 3")
        assert viewer.locator("#state").text_content() == "live"
        browser.close()

        # Ending the session: the page says so.
        client.sessions.delete_session(watched.id)
        viewer.wait_for_function("() => document.getElementById('state').textContent === 'ended'")
        assert "ended" in viewer.locator("#overlay").text_content()


def test_a_read_only_live_view_does_not_forward_input(client, page_url):
    with (
        session(
            client,
            session={"initial_url": page_url + "clicks", "live_view": {"read_only": True}},
        ) as watched,
        sync_playwright() as playwright,
        viewer_page(client, playwright) as viewer,
    ):
        viewer.goto(watched.live_view_url)
        viewer.wait_for_function(close_to((0, 0, 255)))
        assert "read-only" in viewer.locator("#state").text_content()
        box = viewer.locator("#screen").bounding_box()
        viewer.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        # The server answers each refused event (press, release) in order.
        viewer.wait_for_function("() => window.anchorageRefused === 2")
        assert "read-only" in viewer.locator("#notice").text_content()
        browser = playwright.chromium.connect_over_cdp(watched.cdp_url)
        assert browser.contexts[0].pages[0].evaluate("window.clicks") == 0
        browser.close()


def test_a_live_view_link_needs_the_sessions_token(client, server):
    with session(client) as watched, sync_playwright() as playwright, viewer_page(client, playwright) as viewer:
        wrong = watched.live_view_url.split("?")[0] + "?token=not-the-token"
        response = viewer.goto(wrong)
        assert response.status == 401
        assert response.json()["error"]["code"] == 401


def test_the_dashboard_shows_a_batch_and_cancels_it(client, page_url):
    with sync_playwright() as playwright, viewer_page(client, playwright) as viewer:
        # The server runs four sessions at most and the viewer is one of them:
        # three items come up and two wait, so the batch is still processing.
        # (So no other test's session may be running now.)
        running = client.sessions.get_all_sessions_status().data
        assert running.count == 1, f"sessions left running by an earlier test: {running}"
        batch = client.batch_sessions.create_batch_session(
            count=5, configuration={"session": {"initial_url": page_url + "colour/ffffff", "tags": ["dashboard"]}}
        ).data
        try:
            check_the_dashboard(client, viewer, batch)
        finally:
            # Whatever happened, nothing of the batch may hold places for the next test.
            client.batch_sessions.delete_batch_session(batch.batch_id)
    assert client.sessions.get_all_sessions_status().data.count == 0


def check_the_dashboard(client, viewer, batch):
    base_url = str(client.base_url).rstrip("/")
    viewer.goto(base_url + "/")
    viewer.fill("#api-key", API_KEY)
    viewer.click("#sign-in")
    row = viewer.locator(f"[data-batch-id='{batch.batch_id}']")
    row.wait_for()
    # Progress arrives over the events stream.
    row.locator(".progress-text").filter(has_text="3 / 5").wait_for(timeout=60_000)
    row.locator(".status").filter(has_text="processing").wait_for()
    # The running sessions, each with its live view link.
    viewer.locator(".session-row a").nth(3).wait_for()
    row.locator(".toggle").click()
    viewer.locator(f"[data-items-of='{batch.batch_id}'] [data-item='4']").wait_for()
    screenshot(viewer, "dashboard.png")

    viewer.on("dialog", lambda dialog: dialog.accept())
    row.locator("button.cancel").click()
    row.locator(".status").filter(has_text="cancelled").wait_for()
    assert client.batch_sessions.get_batch_session(batch.batch_id).data.status == "cancelled"


def test_the_openapi_document_is_valid_and_the_reference_page_renders_it(client):
    import json
    import urllib.request

    from openapi_spec_validator import validate

    base_url = str(client.base_url).rstrip("/")
    with urllib.request.urlopen(base_url + "/openapi.json") as response:
        document = json.load(response)
    assert document["openapi"].startswith("3.1")
    validate(document)
    assert "/v1/batch-sessions/{batch_id}" in document["paths"]

    with sync_playwright() as playwright, viewer_page(client, playwright) as viewer:
        viewer.goto(base_url + "/docs")
        operation = viewer.locator("#create_batch_session")
        operation.wait_for()
        assert "count" in operation.text_content()
        assert viewer.locator("section.operation").count() == sum(len(item) for item in document["paths"].values())
        screenshot(viewer, "api-reference.png")
