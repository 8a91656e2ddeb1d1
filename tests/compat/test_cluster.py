"""The official SDK against two anchorage nodes sharing one PostgreSQL
database (a fresh schema in the cluster the test command starts): each
client speaks to one node only, and every call works whichever node runs
the session; answers load with strict validation."""

import base64
import os
import pathlib
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse

import anchorbrowser
import pytest
from playwright.sync_api import sync_playwright

from conftest import API_KEY, PAGE_TITLE, REPO, browser_pids, start_anchorage, wait_until_settled


def _database():
    base = os.environ.get("ANCHORAGE_TEST_POSTGRES_URL")
    if not base:
        pytest.fail("ANCHORAGE_TEST_POSTGRES_URL is not set: run the tests with ./scripts/test, which starts PostgreSQL")
    schema = f"compat_{os.getpid()}_{int(time.time() * 1000)}"
    subprocess.run(["psql", "-q", base, "-c", f"CREATE SCHEMA {schema}"], check=True)
    return f"{base}?options={urllib.parse.quote(f'-c search_path={schema}')}"


@pytest.fixture(scope="module")
def nodes():
    binary = os.environ.get("ANCHORAGE_BIN", str(REPO / "target" / "debug" / "anchorage"))
    url = _database()
    started = []
    for _ in range(2):
        data_dir = pathlib.Path(tempfile.mkdtemp(prefix="anchorage-compat-node-"))
        env = dict(os.environ, ANCHORAGE_DATA_DIR=str(data_dir), ANCHORAGE_API_KEY=API_KEY,
                   ANCHORAGE_MAX_SESSIONS="1", ANCHORAGE_POOL_SIZE="0", ANCHORAGE_LOG="warn",
                   ANCHORAGE_DATABASE_URL=url)
        process, base_url = start_anchorage(binary, env)
        started.append({"base_url": base_url, "data_dir": data_dir, "process": process})
    yield started
    for node in started:
        node["process"].send_signal(signal.SIGTERM)
    for node in started:
        assert node["process"].wait(timeout=60) == 0
        assert browser_pids(node["data_dir"]) == [], "browsers left after shutdown"


def _client(node):
    return anchorbrowser.Anchorbrowser(api_key=API_KEY, base_url=node["base_url"], _strict_response_validation=True)


def _mcp_snapshot(base_url, session_id):
    """The snapshot an MCP client of `base_url` reads of a session."""
    import asyncio

    from test_mcp import _with_client, text_of

    async def work(session):
        answer = await session.call_tool("snapshot", {"session_id": session_id})
        assert not answer.is_error, text_of(answer)
        return text_of(answer)

    return asyncio.run(_with_client(base_url, API_KEY, work))


def _code_runs(node):
    """Runs of code that succeeded on a node, from its /metrics."""
    import httpx

    text = httpx.get(node["base_url"] + "/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith('anchorage_code_runs_finished_total{status="success"} '):
            return int(float(line.split()[-1]))
    return 0


def _owner(nodes):
    """The one node whose data dir holds a browser: where a session really
    runs when exactly one node runs one (each node has one place)."""
    running = [node for node in nodes if browser_pids(node["data_dir"])]
    assert len(running) == 1, f"expected one node with a browser, found {len(running)}"
    return running[0]




def test_the_sdk_works_through_either_node_whichever_runs_the_session(nodes, page_url):
    # One place per node: the second start arrives at a full node, another
    # node serves it, and the answer waits for it as on one node. Where each
    # session runs is read from the processes, not assumed.
    here = _client(nodes[0]).sessions.create_session(session={"initial_url": page_url})
    here_owner = _owner(nodes)
    there = _client(nodes[0]).sessions.create_session(session={"initial_url": page_url})
    there_owner = next(node for node in nodes if node is not here_owner)
    assert {len(browser_pids(node["data_dir"])) > 0 for node in nodes} == {True}
    # Each session is driven below through the node that does not run it.
    via_other = {here.data.id: _client(there_owner), there.data.id: _client(here_owner)}

    def via_other_node(session):
        return (there_owner if session is here else here_owner)["base_url"]

    # Playwright through a node that does not run the session reaches its browser.
    for session in (here, there):
        owner_url = (here_owner if session is here else there_owner)["base_url"]
        url = session.data.cdp_url
        other_url = (there_owner if session is here else here_owner)["base_url"]
        url = other_url.replace("http://", "ws://") + url[url.index("/", len("ws://")):]
        assert not url.startswith(owner_url.replace("http://", "ws://"))
        with sync_playwright() as playwright:
            browser = playwright.chromium.connect_over_cdp(url)
            page = browser.contexts[0].pages[0]
            page.wait_for_load_state()
            assert page.title() == PAGE_TITLE
            browser.close()

    # Actions and reads through the node that does not run the session.
    for session in (here, there):
        client = via_other[session.data.id]
        png = client.sessions.get_session_screenshot(session.data.id).read()
        assert png.startswith(b"\x89PNG")
        client.sessions.mouse_click(session.data.id, x=10, y=10)
        assert client.tools.screenshot_webpage(session_id=session.data.id).read().startswith(b"\x89PNG")
        assert any(item.title == PAGE_TITLE for item in client.sessions.get_session_pages(session.data.id).data.items)
        # Code runs on the node that runs the session, whichever node is asked.
        owner = here_owner if session is here else there_owner
        before = _code_runs(owner)
        ran = client.tools.execute_code(session_id=session.data.id, code="return await page.title();")
        assert ran.success is True and PAGE_TITLE in ran.output, ran
        task = client.tasks_legacy.create_task(
            name=f"title-{session.data.id}", language="typescript",
            code=base64.b64encode(b"export default async ({ page }: any) => page.title();").decode())
        run = client.tasks_legacy.run_adhoc_task(task_id=str(task.data.id), session_id=str(session.data.id))
        assert run.data.success is True and PAGE_TITLE in run.data.output, run
        assert _code_runs(owner) == before + 2
        # An MCP client of the node that does not run the session drives it.
        assert PAGE_TITLE in _mcp_snapshot(via_other_node(session), str(session.data.id))
    for node in nodes:
        assert _client(node).sessions.get_all_sessions_status().data.count == 2

    # Ends through the node that does not run it; each browser is gone moments later.
    for session, owner in ((here, here_owner), (there, there_owner)):
        assert via_other[session.data.id].sessions.delete_session(session.data.id).data.status == "ok"
        deadline = time.monotonic() + 10
        while browser_pids(owner["data_dir"]):
            assert time.monotonic() < deadline, "a browser outlived its DELETE through the other node"
            time.sleep(0.05)

    # A batch sent to one node runs on both (one item still waits for a
    # place) and is cancelled from the other.
    first, second = _client(nodes[0]), _client(nodes[1])
    batch_id = str(second.batch_sessions.create_batch_session(count=3).data.batch_id)
    deadline = time.monotonic() + 60
    while (first.batch_sessions.get_batch_session(batch_id).data.completed_requests or 0) < 2:
        assert time.monotonic() < deadline, "the batch never filled both nodes"
        time.sleep(0.1)
    assert {len(browser_pids(node["data_dir"])) > 0 for node in nodes} == {True}
    cancelled = first.batch_sessions.update_batch_session(batch_id, status="cancelled")
    assert cancelled.data.status == "cancelled"
    # Both running sessions were ended, one on each node, and counted.
    assert cancelled.data.cancelled_sessions == 2
    assert all(browser_pids(node["data_dir"]) == [] for node in nodes)
    batch = second.batch_sessions.get_batch_session(batch_id).data
    assert batch.status == "cancelled"
    assert (batch.completed_requests, batch.pending_requests, batch.processing_requests) == (2, 0, 0)
    assert batch.to_dict()["cancelled_requests"] == 1
    waiting = [item for item in batch.sessions if item.status == "cancelled"]
    assert len(waiting) == 1 and not waiting[0].session_id
    # Nothing of it starts later: both places are free, so a start left
    # queued would begin at once; wait until every node's scheduler has
    # looked at every change, then look again.
    for node in nodes:
        wait_until_settled(node["base_url"])
    assert all(browser_pids(node["data_dir"]) == [] for node in nodes)
    after = second.batch_sessions.get_batch_session(batch_id).data
    assert [item.status for item in after.sessions if item.status == "cancelled"] == ["cancelled"]
    assert after.to_dict()["cancelled_requests"] == 1


def test_a_named_event_signalled_on_one_node_reaches_a_waiter_on_another(nodes):
    first, second = _client(nodes[0]), _client(nodes[1])
    got = {}

    def wait():
        got["event"] = second.events.wait_for_event("cluster-ready", timeout_ms=20_000)

    waiter = threading.Thread(target=wait)
    waiter.start()
    # The waiter is registered once its request arrived; signals before that are not kept.
    deadline = time.monotonic() + 10
    while waiter.is_alive() and "event" not in got and time.monotonic() < deadline:
        first.events.signal_event("cluster-ready", data={"step": "approved"})
        waiter.join(timeout=0.2)
    waiter.join(timeout=20)
    assert got["event"].data == {"step": "approved"}
