"""The official SDK, Playwright and Puppeteer, unchanged, against anchorage."""

import json
import pathlib
import subprocess
import time

import anchorbrowser
import httpx
import pytest
from playwright.sync_api import sync_playwright
from websockets.sync.client import connect as ws_connect

from conftest import API_KEY, PAGE_TITLE, browser_pids, wait_until_settled

NODE_DIR = pathlib.Path(__file__).resolve().parent / "node"


def test_sdk_session_driven_by_playwright_over_cdp_url(client, server, page_url):
    created = client.sessions.create_session(
        session={"initial_url": page_url, "tags": ["compat"]},
        browser={"viewport": {"width": 1024, "height": 700}},
    )
    session_id = created.data.id
    assert created.data.cdp_url.startswith("ws://")
    with sync_playwright() as playwright:
        browser = playwright.chromium.connect_over_cdp(created.data.cdp_url)
        first = browser.contexts[0].pages[0]
        first.wait_for_load_state()
        assert first.title() == PAGE_TITLE
        assert first.evaluate("[innerWidth, innerHeight]") == [1024, 700]
        page = browser.contexts[0].new_page()
        page.goto(page_url)
        assert page.title() == PAGE_TITLE
        browser.close()

    fetched = client.sessions.get_session(session_id)
    assert fetched.data.status == "running"
    assert fetched.data.configuration["session"]["tags"] == ["compat"]
    # In this one answer upstream's model has the tags as an object.
    assert fetched.data.tags == {"compat": True}
    # As a list through their own route (the SDK has no method for it),
    # replaced, and seen by the listing's filter.
    tags_url = f"{server['base_url']}/v1/sessions/{session_id}/tags"
    headers = {"anchor-api-key": API_KEY}
    assert httpx.get(tags_url, headers=headers).json()["data"]["tags"] == ["compat"]
    assert httpx.put(tags_url, headers=headers, json={"tags": ["compat", "renamed"]}).status_code == 200
    assert client.sessions.get_session(session_id).data.tags == {"compat": True, "renamed": True}
    listed = client.sessions.get_all_sessions_status(tags="renamed")
    assert [item.session_id for item in listed.data.items] == [session_id]
    pages = client.sessions.get_session_pages(session_id)
    assert any(item.title == PAGE_TITLE for item in pages.data.items)

    assert client.sessions.delete_session(session_id).data.status == "ok"
    assert client.sessions.get_session(session_id).data.status == "completed"
    # Killed with the DELETE; its processes and directory are gone moments later.
    simple = session_id.replace("-", "")

    def leftovers():
        pids = [pid for pid in browser_pids(server["data_dir"]) if simple in _cmdline(pid)]
        return pids or (server["data_dir"] / "browsers" / simple).exists()

    deadline = time.monotonic() + 10
    while leftovers():
        assert time.monotonic() < deadline, "the session's browser outlived its DELETE"
        time.sleep(0.05)


def _cmdline(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def test_sdk_browser_connect_helper(client, page_url):
    created = client.sessions.create_session()
    with client.browser.connect(created.data.id) as browser:
        page = browser.contexts[0].new_page()
        page.goto(page_url)
        assert page.title() == PAGE_TITLE
    client.sessions.delete_session(created.data.id)


def test_sdk_async_start_lists_and_end_all(client):
    accepted = client.sessions.create_session_async(session={"tags": ["async"]})
    assert accepted.data.status == "pending"
    request_id = str(accepted.data.request_id)
    deadline = time.monotonic() + 30
    while True:
        status = client.sessions.get_async_session_status(request_id)
        if status.data.status == "ready":
            break
        assert status.data.status in ("pending", "processing"), status
        assert time.monotonic() < deadline, "async start never became ready"
        time.sleep(0.05)
    session_id = str(status.data.session.session_id)
    assert status.data.session.cdp_url

    live = client.sessions.get_all_sessions_status(tags="async")
    assert [item.session_id for item in live.data.items] == [session_id]
    history = client.sessions.list_sessions(limit=10, sort_order="desc")
    assert history.data.sessions[0].id == session_id
    assert client.sessions.delete_all_sessions().data.status == "ok"
    assert client.sessions.get_all_sessions_status().data.count == 0
    assert client.sessions.get_async_session_status(request_id).data.status == "completed"


def test_sdk_errors_surface_as_sdk_exceptions(client, server):
    with pytest.raises(anchorbrowser.NotFoundError):
        client.sessions.get_session("00000000-0000-4000-8000-000000000000")
    with pytest.raises(anchorbrowser.BadRequestError) as bad:
        client.sessions.create_session(session={"initial_url": "file:///etc/passwd"})
    assert "http or https" in str(bad.value)
    stranger = anchorbrowser.Anchorbrowser(api_key="not-a-key", base_url=server["base_url"])
    with pytest.raises(anchorbrowser.AuthenticationError):
        stranger.sessions.list_sessions()


def test_puppeteer_connects_with_cdp_url(client, page_url):
    created = client.sessions.create_session()
    result = subprocess.run(
        ["node", str(NODE_DIR / "puppeteer_connect.mjs"), created.data.cdp_url, page_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["title"] == PAGE_TITLE
    client.sessions.delete_session(created.data.id)


def test_playwright_and_puppeteer_share_a_session_each_on_its_own(client, page_url):
    """Every client of a browser has its own session on the server's DevTools
    pipe: Puppeteer coming and going leaves Playwright's pages alone, a bare
    CDP client sees Playwright's context, and the context is gone once
    Playwright has left. (That a context goes with a connection that just
    drops, `disposeOnDetach`, is shown with a bare client in sessions.rs.)"""
    created = client.sessions.create_session()
    try:
        with sync_playwright() as playwright:
            first = playwright.chromium.connect_over_cdp(created.data.cdp_url)
            context = first.new_context()
            page = context.new_page()
            page.goto(page_url)
            page.evaluate("window.mark = 'playwright'")
            assert len(first.contexts) == 2

            result = subprocess.run(
                ["node", str(NODE_DIR / "puppeteer_connect.mjs"), created.data.cdp_url, page_url],
                capture_output=True, text=True, timeout=120, check=False,
            )
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["title"] == PAGE_TITLE

            # Still connected, still its page.
            assert page.evaluate("window.mark") == "playwright"
            assert page.title() == PAGE_TITLE

            # A bare CDP client at the same time sees the context Playwright made...
            assert len(browser_contexts(created.data.cdp_url)) == 1
            # ...and, once Playwright has left, none.
            first.close()
            deadline = time.monotonic() + 10
            while browser_contexts(created.data.cdp_url):
                assert time.monotonic() < deadline, "Playwright's context outlived its connection"
                time.sleep(0.1)
    finally:
        client.sessions.delete_session(created.data.id)


def browser_contexts(cdp_url):
    """The browser contexts made by clients (`Target.getBrowserContexts`), asked over a connection of its own."""
    with ws_connect(cdp_url) as socket:
        socket.send(json.dumps({"id": 1, "method": "Target.getBrowserContexts"}))
        while True:
            answer = json.loads(socket.recv())
            if answer.get("id") == 1:
                return answer["result"]["browserContextIds"]


def wait_for_batch(client, batch_id, done, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batch_sessions.get_batch_session(batch_id).data
        if done(batch):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)


def test_sdk_drives_the_whole_batch_flow(client, page_url):
    created = client.batch_sessions.create_batch_session(
        count=2,
        configuration={"session": {"initial_url": page_url}},
        metadata={"suite": "compat"},
    )
    batch_id = str(created.data.batch_id)
    assert created.data.status == "pending"
    assert created.data.total_requests == 2

    batch = wait_for_batch(client, batch_id, lambda batch: batch.status == "completed")
    assert batch.completed_requests == 2
    assert batch.progress.percentage == 100
    assert batch.progress.current_phase == "ready"
    assert batch.actual_completion_time is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.connect_over_cdp(batch.sessions[0].cdp_url)
        page = browser.contexts[0].pages[0]
        page.wait_for_load_state()
        assert page.title() == PAGE_TITLE
        browser.close()

    listed = client.batch_sessions.list_batch_sessions(status="completed", limit=10)
    assert batch_id in [str(item.batch_id) for item in listed.data.batches]
    assert listed.data.pagination.current_page == 1

    with pytest.raises(anchorbrowser.ConflictError):
        client.batch_sessions.update_batch_session(batch_id, status="cancelled")
    retried = client.batch_sessions.retry_batch_session(batch_id, retry_failed_only=True, max_retries=2)
    assert retried.data.retried_sessions == 0

    deleted = client.batch_sessions.delete_batch_session(batch_id)
    assert deleted.data.deleted_sessions == 2
    assert deleted.data.failed_deletions == 0
    with pytest.raises(anchorbrowser.NotFoundError):
        client.batch_sessions.get_batch_session(batch_id)


def test_sdk_cancels_a_batch(client, server):
    created = client.batch_sessions.create_batch_session(count=6)
    batch_id = str(created.data.batch_id)
    # A settled batch: what runs has started and the rest waits for a place
    # (the server has 4), so the cancel's counts are known before it is sent.
    before = wait_for_batch(client, batch_id, lambda batch: (batch.completed_requests or 0) >= 1
                            and batch.processing_requests == 0 and batch.pending_requests >= 1)
    running = [item.session_id for item in before.sessions if item.status == "completed"]
    assert len(running) == before.completed_requests
    cancelled = client.batch_sessions.update_batch_session(batch_id, status="cancelled")
    assert cancelled.data.status == "cancelled"
    assert cancelled.data.cancelled_sessions == len(running)
    batch = client.batch_sessions.get_batch_session(batch_id).data
    assert batch.status == "cancelled"
    assert (batch.pending_requests, batch.processing_requests, batch.failed_requests) == (0, 0, 0)
    assert batch.to_dict()["cancelled_requests"] == 6 - len(running)
    assert sorted(item.status for item in batch.sessions) == ["cancelled"] * (6 - len(running)) + ["completed"] * len(running)
    # Every session it ran has ended, at once.
    for session_id in running:
        assert client.sessions.get_session(session_id).data.status == "completed"
    # Nothing of it starts later: the places it held are free, so a start it
    # left queued would begin now; wait until the scheduler has seen every
    # change, then look again.
    wait_until_settled(server["base_url"])
    after = client.batch_sessions.get_batch_session(batch_id).data
    assert [item.session_id for item in after.sessions if item.status == "cancelled"] == [None] * (6 - len(running))
    assert after.to_dict()["cancelled_requests"] == 6 - len(running)
    with pytest.raises(anchorbrowser.ConflictError):
        client.batch_sessions.retry_batch_session(batch_id)
    client.batch_sessions.delete_batch_session(batch_id)
