"""The official SDK's session actions (screenshot, mouse, keyboard, scroll,
goto, clipboard, drag and drop) against anchorage with strict response validation, each effect read
back from the page with Playwright."""

import json
import pathlib
import struct
import subprocess
import time

import anchorbrowser
import httpx
import pytest
from playwright.sync_api import sync_playwright

from conftest import API_KEY, FIGURES_CSV

NODE_DIR = pathlib.Path(__file__).resolve().parent / "node"


@pytest.fixture()
def strict(server):
    return anchorbrowser.Anchorbrowser(api_key=API_KEY, base_url=server["base_url"], _strict_response_validation=True)


def eventually(read, wanted, within=10.0):
    deadline = time.monotonic() + within
    while (value := read()) != wanted:
        assert time.monotonic() < deadline, f"{value!r} is not {wanted!r}"
        time.sleep(0.02)


def test_sdk_actions_act_on_the_page(strict, page_url):
    session = strict.sessions.create_session().data
    try:
        assert strict.sessions.goto(session.id, url=page_url + "actions").status == "navigated"
        with sync_playwright() as playwright:
            browser = playwright.chromium.connect_over_cdp(session.cdp_url)
            page = browser.contexts[0].pages[-1]
            assert page.title() == "actions"

            assert strict.sessions.mouse_click(session.id, x=100, y=50).status == "clicked"
            eventually(lambda: page.evaluate("clicks"), 1)
            assert strict.sessions.mouse_double_click(session.id, x=100, y=50).status == "double-clicked"
            eventually(lambda: page.evaluate("[clicks, doubles]"), [3, 1])
            strict.sessions.mouse_move(session.id, x=20, y=20)
            strict.sessions.mouse_down(session.id, x=20, y=20)
            strict.sessions.mouse_up(session.id, x=20, y=20)
            eventually(lambda: page.evaluate("clicks"), 4)

            strict.sessions.mouse_click(session.id, x=150, y=220)
            assert strict.sessions.keyboard_type(session.id, text="typed", delay=5).status == "typed"
            eventually(lambda: page.evaluate("t.value"), "typed")
            assert strict.sessions.keyboard_shortcut(session.id, keys=["Control", "a"]).status == "pressed"
            eventually(lambda: page.evaluate("[t.selectionStart, t.selectionEnd]"), [0, 5])

            assert strict.sessions.copy(session.id).text == "typed"
            assert strict.sessions.get_clipboard(session.id).data.text == "typed"
            assert strict.sessions.paste(session.id, text="!").status == "pasted"
            eventually(lambda: page.evaluate("t.value"), "!")
            strict.sessions.set_clipboard(session.id, text="kept")
            assert strict.sessions.get_clipboard(session.id).data.text == "kept"

            assert strict.sessions.drag_and_drop(session.id, start_x=425, start_y=25, end_x=625, end_y=225).status == "dragged"
            eventually(lambda: page.evaluate("[d.style.left, d.style.top]"), ["600px", "200px"])

            assert strict.sessions.scroll(session.id, x=400, y=400, delta_y=500).status == "scrolled"
            eventually(lambda: page.evaluate("scrollY > 0"), True)
            assert strict.sessions.mouse_click(session.id, selector="#far").status == "clicked"
            eventually(lambda: page.evaluate("farClicks"), 1)

            png = strict.sessions.get_session_screenshot(session.id).read()
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            assert struct.unpack(">II", png[16:24]) == (1440, 900)
            browser.close()

        with pytest.raises(anchorbrowser.BadRequestError, match="within the viewport"):
            strict.sessions.mouse_click(session.id, x=9999, y=1)
    finally:
        strict.sessions.delete_session(session.id)
    with pytest.raises(anchorbrowser.ConflictError, match="not running"):
        strict.sessions.mouse_click(session.id, x=1, y=1)


def test_sdk_tools_capture_print_and_fetch(strict, page_url):
    from conftest import PAGE_TITLE

    png = strict.tools.screenshot_webpage(url=page_url, width=800, height=600).read()
    assert struct.unpack(">II", png[16:24]) == (800, 600)
    assert strict.tools.create_page_pdf(url=page_url, print_background=True).read().startswith(b"%PDF")
    assert PAGE_TITLE in strict.tools.fetch_webpage(url=page_url)
    # In a running session, in a tab of its own.
    session = strict.sessions.create_session().data
    try:
        png = strict.tools.screenshot_webpage(url=page_url, session_id=session.id).read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        strict.sessions.delete_session(session.id)


def test_sdk_uploads_a_file_for_a_file_input(strict, page_url):
    session = strict.sessions.create_session().data
    try:
        uploaded = strict.sessions.upload_file(session.id, file=("report.csv", b"a,b\n1,2\n")).data
        assert uploaded.status == "uploaded"
        path = uploaded.message.removeprefix("saved as ").split(" (")[0]
        assert path.endswith("/uploads/report.csv"), uploaded.message
        # A client gives the path it was told to the page's file input over
        # CDP (it names a file on the server's machine, not the client's);
        # the page reads the bytes that were uploaded.
        with sync_playwright() as playwright:
            browser = playwright.chromium.connect_over_cdp(session.cdp_url)
            page = browser.contexts[0].pages[0]
            page.goto(page_url + "actions")
            cdp = page.context.new_cdp_session(page)
            root = cdp.send("DOM.getDocument")["root"]["nodeId"]
            node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#f"})["nodeId"]
            cdp.send("DOM.setFileInputFiles", {"nodeId": node, "files": [path]})
            assert page.evaluate("[f.files[0].name, f.files[0].size]") == ["report.csv", 8]
            assert page.evaluate("f.files[0].text()") == "a,b\n1,2\n"
            browser.close()
        downloads = strict.sessions.get_session_downloads(session.id).data
        assert downloads.count == 0 and downloads.items == []
    finally:
        strict.sessions.delete_session(session.id)


def test_sdk_lists_a_download_and_its_file_link_serves_it(strict, page_url):
    session = strict.sessions.create_session().data
    try:
        strict.sessions.goto(session.id, url=page_url + "actions")
        strict.sessions.mouse_click(session.id, selector="#dl")
        deadline = time.monotonic() + 20
        while not (downloads := strict.sessions.get_session_downloads(session.id).data).items:
            assert time.monotonic() < deadline, "the download was not listed"
            time.sleep(0.05)
        item = downloads.items[0]
        assert downloads.count == 1 and item.suggested_file_name == "figures.csv"
        assert item.size == len(FIGURES_CSV) and str(item.original_download_url) == page_url + "figures.csv"
        fetched = httpx.get(str(item.file_link), headers={"anchor-api-key": API_KEY})
        assert fetched.status_code == 200 and fetched.content == FIGURES_CSV
        assert httpx.get(str(item.file_link)).status_code == 401
    finally:
        strict.sessions.delete_session(session.id)


def test_sdk_reads_the_usage_history(strict):
    session = strict.sessions.create_session().data
    strict.sessions.delete_session(session.id)
    history = strict.sessions.get_sessions_history(granularity="day", metrics=["session_count", "session_hours"])
    assert history.data and history.data[-1].session_count >= 1
    assert history.summary.total_sessions >= 1
    assert history.pagination.current_page == 1


@pytest.mark.parametrize("headless", [True, False])
def test_sdk_lists_downloads_while_playwright_is_connected(strict, page_url, headless):
    session = strict.sessions.create_session(browser={"headless": {"active": headless}}).data
    try:
        with sync_playwright() as playwright:
            # Playwright sets its own download behaviour when it connects.
            browser = playwright.chromium.connect_over_cdp(session.cdp_url)
            page = browser.contexts[0].pages[0]
            page.goto(page_url + "actions")
            # A click through the REST API, with Playwright attached.
            strict.sessions.mouse_click(session.id, selector="#dl")
            deadline = time.monotonic() + 10
            while not (listed := strict.sessions.get_session_downloads(session.id).data).items:
                assert time.monotonic() < deadline, "the download was not listed with Playwright connected"
                time.sleep(0.05)
            assert listed.items[0].suggested_file_name == "figures.csv" and listed.items[0].size == len(FIGURES_CSV)
            fetched = httpx.get(str(listed.items[0].file_link), headers={"anchor-api-key": API_KEY})
            assert fetched.status_code == 200 and fetched.content == FIGURES_CSV
            # A click by Playwright itself: its own download API works, and
            # the server lists the file too.
            with page.expect_download() as waiting:
                page.click("#dl")
            download = waiting.value
            assert open(download.path(), "rb").read() == FIGURES_CSV
            deadline = time.monotonic() + 10
            while len(strict.sessions.get_session_downloads(session.id).data.items) < 2:
                assert time.monotonic() < deadline, "Playwright's own download was not listed"
                time.sleep(0.05)
            browser.close()
        # Once the client has gone, downloads land in the session's folder again.
        strict.sessions.mouse_click(session.id, selector="#dl")
        deadline = time.monotonic() + 10
        while len(strict.sessions.get_session_downloads(session.id).data.items) < 3:
            assert time.monotonic() < deadline, "a download after the client left was not listed"
            time.sleep(0.05)
    finally:
        strict.sessions.delete_session(session.id)


def test_sdk_lists_a_download_puppeteer_clicked_into_its_own_folder(strict, page_url):
    session = strict.sessions.create_session().data
    try:
        ran = subprocess.run(["node", str(NODE_DIR / "puppeteer_download.mjs"), session.cdp_url, page_url + "actions"],
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        told = json.loads(ran.stdout.strip().splitlines()[-1])
        # Puppeteer's folder got the file, as it asked ...
        assert told["names"] == ["figures.csv"] and told["content"] == FIGURES_CSV.decode(), told
        # ... and the server lists it.
        deadline = time.monotonic() + 10
        while not (listed := strict.sessions.get_session_downloads(session.id).data).items:
            assert time.monotonic() < deadline, "Puppeteer's download was not listed"
            time.sleep(0.05)
        assert listed.items[0].suggested_file_name == "figures.csv" and listed.items[0].size == len(FIGURES_CSV)
    finally:
        strict.sessions.delete_session(session.id)
