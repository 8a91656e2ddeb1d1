"""The MCP endpoint (/v1/mcp) with the official MCP Python SDK as the client,
over Streamable HTTP: a session started, a local page filled in through a
snapshot's references and read back, a screenshot, the session ended; two
teams' clients at once that cannot see or touch each other's sessions; a
snapshot of a page of 10,000 elements within its budget; bad arguments as
tool errors that change nothing."""

import asyncio
import base64
import json
import os
import re
import struct
import subprocess

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import API_KEY, REPO


async def _with_client(base_url, key, work, bearer=False):
    headers = {"Authorization": f"Bearer {key}"} if bearer else {"anchor-api-key": key}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0, read=120.0)) as http:
        async with streamable_http_client(base_url + "/v1/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)


def run(base_url, work, key=API_KEY, bearer=False):
    return asyncio.run(_with_client(base_url, key, work, bearer))


def text_of(result):
    return "\n".join(block.text for block in result.content if block.type == "text")


def ref(snapshot, needle):
    line = next(line for line in snapshot.splitlines() if needle in line)
    return re.search(r"\[ref=(e\d+)\]", line).group(1)


def test_an_agent_fills_a_form_through_snapshot_references(server, page_url):
    async def work(session):
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert {"start_session", "navigate", "snapshot", "click", "type_text", "screenshot", "end_session",
                "execute_code", "start_batch", "open_tab", "close_tab", "list_tabs", "switch_tab"} <= tools, tools
        started = await session.call_tool("start_session", {"viewport_width": 800, "viewport_height": 600})
        assert not started.is_error, text_of(started)
        session_id = re.search(r"session_id: (\S+)", text_of(started)).group(1)
        try:
            went = await session.call_tool("navigate", {"session_id": session_id, "url": page_url + "form"})
            assert not went.is_error, text_of(went)
            snapshot = text_of(await session.call_tool("snapshot", {"session_id": session_id}))
            assert "order form" in snapshot and 'heading "Order"' in snapshot, snapshot
            typed = await session.call_tool("type_text", {"session_id": session_id, "ref": ref(snapshot, 'textbox "Name"'),
                                                          "text": "Grace"})
            assert not typed.is_error, text_of(typed)
            clicked = await session.call_tool("click", {"session_id": session_id, "ref": ref(snapshot, 'button "Send"')})
            assert not clicked.is_error, text_of(clicked)
            changed = text_of(await session.call_tool("snapshot", {"session_id": session_id, "changes_only": True}))
            assert "sent Grace" in changed, changed
            # The effect, read back from the page itself.
            ran = await session.call_tool("execute_code", {"session_id": session_id,
                                                           "code": "return await page.textContent('#out');"})
            assert text_of(ran) == '"sent Grace"', text_of(ran)
            shot = await session.call_tool("screenshot", {"session_id": session_id})
            image = next(block for block in shot.content if block.type == "image")
            png = base64.b64decode(image.data)
            assert image.mime_type == "image/png" and png.startswith(b"\x89PNG")
            assert struct.unpack(">II", png[16:24]) == (800, 600)
            listed = text_of(await session.call_tool("list_sessions", {}))
            assert session_id in listed
            # A tab opened is where the tools act; closed, the form is again.
            opened = text_of(await session.call_tool("open_tab", {"session_id": session_id, "url": page_url + "article"}))
            tab = re.search(r"opened tab (\S+)", opened).group(1)
            assert "article" in text_of(await session.call_tool("snapshot", {"session_id": session_id}))
            tabs = json.loads(text_of(await session.call_tool("list_tabs", {"session_id": session_id})))
            assert [item["id"] for item in tabs["items"] if item["active"]] == [tab], tabs
            # Switched back to the form, the tools act there; the article tab stays open.
            form_tab = next(item["id"] for item in tabs["items"] if item["id"] != tab)
            switched = await session.call_tool("switch_tab", {"session_id": session_id, "page_id": form_tab})
            assert not switched.is_error, text_of(switched)
            assert "order form" in text_of(await session.call_tool("snapshot", {"session_id": session_id}))
            tabs = json.loads(text_of(await session.call_tool("list_tabs", {"session_id": session_id})))
            assert [item["id"] for item in tabs["items"] if item["active"]] == [form_tab], tabs
            missing = await session.call_tool("switch_tab", {"session_id": session_id, "page_id": "NOPAGE"})
            assert missing.is_error and "no page" in text_of(missing), text_of(missing)
            closed = await session.call_tool("close_tab", {"session_id": session_id, "page_id": tab})
            assert not closed.is_error, text_of(closed)
            assert "order form" in text_of(await session.call_tool("snapshot", {"session_id": session_id}))
        finally:
            ended = await session.call_tool("end_session", {"session_id": session_id})
        assert not ended.is_error, text_of(ended)

    run(server["base_url"], work)


def test_bad_arguments_are_tool_errors_and_a_big_page_keeps_its_budget(server, page_url):
    async def work(session):
        bad = await session.call_tool("navigate", {"session_id": "not-a-session", "url": page_url})
        assert bad.is_error and "not a session id" in text_of(bad), text_of(bad)
        bad = await session.call_tool("click", {"session_id": 5})
        assert bad.is_error and "session_id" in text_of(bad), text_of(bad)
        missing = await session.call_tool("snapshot", {"session_id": "182bd5e5-6e1a-4fe4-a799-aa6d9a6ab26e"})
        assert missing.is_error and "Session not found" in text_of(missing), text_of(missing)
        started = await session.call_tool("start_session", {"initial_url": page_url + "many"})
        session_id = re.search(r"session_id: (\S+)", text_of(started)).group(1)
        try:
            shown = text_of(await session.call_tool("snapshot", {"session_id": session_id, "max_chars": 4000}))
            assert len(shown) <= 4200 and "more lines not shown" in shown, len(shown)
            stale = await session.call_tool("click", {"session_id": session_id, "ref": "e99999999"})
            assert stale.is_error and "take a new snapshot" in text_of(stale), text_of(stale)
            neither = await session.call_tool("click", {"session_id": session_id})
            assert neither.is_error and "give ref" in text_of(neither), text_of(neither)
        finally:
            await session.call_tool("end_session", {"session_id": session_id})

    run(server["base_url"], work, bearer=True)


def test_two_teams_clients_at_once_cannot_see_or_act_on_each_others_sessions(server, page_url):
    other_key = subprocess.run(
        [os.environ.get("ANCHORAGE_BIN", str(REPO / "target/debug/anchorage")), "keys", "create", "--team", "mcp-others"],
        env=dict(os.environ, ANCHORAGE_DATA_DIR=str(server["data_dir"])),
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]

    async def both():
        async def ours(session):
            started = await session.call_tool("start_session", {"initial_url": page_url})
            return re.search(r"session_id: (\S+)", text_of(started)).group(1)

        async def theirs(session):
            started = await session.call_tool("start_session", {"initial_url": page_url})
            return re.search(r"session_id: (\S+)", text_of(started)).group(1)

        return await asyncio.gather(_with_client(server["base_url"], API_KEY, ours),
                                    _with_client(server["base_url"], other_key, theirs))

    mine, others = asyncio.run(both())

    async def look(session):
        listed = text_of(await session.call_tool("list_sessions", {}))
        assert others not in listed and mine in listed, listed
        for tool, arguments in (("snapshot", {}), ("navigate", {"url": page_url}), ("end_session", {}),
                                ("execute_code", {"code": "return 1"})):
            tried = await session.call_tool(tool, {"session_id": others, **arguments})
            assert tried.is_error and "not found" in text_of(tried).lower(), (tool, text_of(tried))
        await session.call_tool("end_session", {"session_id": mine})

    run(server["base_url"], look)

    async def clean(session):
        listed = text_of(await session.call_tool("list_sessions", {}))
        assert others in listed, "their session was touched"
        await session.call_tool("end_session", {"session_id": others})

    run(server["base_url"], clean, key=other_key)


def test_the_endpoint_wants_a_key(server):
    import httpx

    # Without a key or with a wrong one: the API's 401, before any protocol.
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    for headers in ({}, {"anchor-api-key": "wrong"}, {"Authorization": "Bearer wrong"}):
        answer = httpx.post(server["base_url"] + "/v1/mcp", json=hello, timeout=30,
                            headers={"accept": "application/json, text/event-stream", **headers})
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == 401
