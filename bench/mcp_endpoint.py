"""The MCP endpoint (issue 25): tool-call overhead, snapshot sizes, many clients at once, in one go.

    cargo build --release -p anchorage
    npm install --prefix /tmp/pwmcp @playwright/mcp@0.0.83     # the peer, once (from npm)
    python3 bench/mcp_endpoint.py --runs 30 --clients 50

With the official MCP Python SDK as the client of every server:
- overhead: `snapshot` and `click` (by reference) through `/v1/mcp` against
  the same REST calls (`POST /v1/sessions/{id}/snapshot`, `…/element`) on the
  same session and page, p50 of --runs each; and Playwright MCP 0.0.83
  connected to the session's `cdp_url` with `--cdp-endpoint` (stdio), its
  `browser_snapshot` and `browser_click`;
- snapshot size on three local pages (a small form, a 300-element article, a
  10,000-link list): anchorage's snapshot whole (REST, `max_chars` 1000000), with
  its default budget, and Playwright MCP's `browser_snapshot`, in characters;
- --clients MCP clients at once, each driving a context session of its own
  (snapshot, click, snapshot) --rounds times: p50/p99 latency and any
  call that failed.
Nothing is asserted.
"""

import argparse
import asyncio
import json
import os
import pathlib
import re
import statistics
import sys
import time

import httpx
import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import harness  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
FORM = ("<!doctype html><title>order form</title><h1>Order</h1><label>Name <input id=name></label>"
        "<button id=send onclick=\"this.dataset.n=(+this.dataset.n||0)+1\">Send</button>")
ARTICLE = ("<!doctype html><title>article</title>" + "".join(
    f"<h2>Section {i}</h2><p>Paragraph {i} with <a href=#{i}>a link</a> and some words.</p><button>Act {i}</button>"
    for i in range(100)))
MANY = "<!doctype html><title>many</title><ul>" + "".join(f"<li><a href=#{i}>item {i}</a></li>" for i in range(10_000)) + "</ul>"


def serve(pages):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = pages.get(self.path, FORM).encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def text_of(result):
    return "\n".join(block.text for block in result.content if block.type == "text")


def first_ref(snapshot, needle):
    line = next(line for line in snapshot.splitlines() if needle in line)
    return re.search(r"\[ref=(e\d+)\]", line).group(1)


async def ours(base, work):
    async with httpx2.AsyncClient(headers={"anchor-api-key": harness.KEY}, timeout=httpx2.Timeout(120.0)) as http:
        async with streamable_http_client(base + "/v1/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)


async def theirs(cdp_url, work):
    cli = pathlib.Path(os.environ.get("PLAYWRIGHT_MCP", "/tmp/pwmcp/node_modules/@playwright/mcp/cli.js"))
    if not cli.exists():
        return None
    parameters = StdioServerParameters(command="node", args=[str(cli), "--cdp-endpoint", cdp_url])
    async with stdio_client(parameters) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)


async def timed(call):
    started = time.perf_counter()
    result = await call()
    return (time.perf_counter() - started) * 1000, result


async def overhead(server, page, runs):
    session = server.call("POST", "/v1/sessions", {})["data"]
    sid = session["id"]
    server.call("POST", f"/v1/sessions/{sid}/goto", {"url": page + "/form"})
    rest = httpx.Client(base_url=server.base, headers={"anchor-api-key": harness.KEY}, timeout=60)
    figures = {}
    snapshot = rest.post(f"/v1/sessions/{sid}/snapshot", json={}).json()["data"]["snapshot"]
    button = first_ref(snapshot, 'button "Send"')
    for name, call in (("rest snapshot", lambda: rest.post(f"/v1/sessions/{sid}/snapshot", json={})),
                       ("rest click", lambda: rest.post(f"/v1/sessions/{sid}/element", json={"ref": button}))):
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            call().raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        figures[name] = times

    async def mcp_work(mcp):
        out = {"mcp snapshot": [], "mcp click": []}
        for _ in range(runs):
            took, _ = await timed(lambda: mcp.call_tool("snapshot", {"session_id": sid}))
            out["mcp snapshot"].append(took)
            took, _ = await timed(lambda: mcp.call_tool("click", {"session_id": sid, "ref": button}))
            out["mcp click"].append(took)
        return out

    figures.update(await ours(server.base, mcp_work))

    async def peer_work(mcp):
        out = {"playwright-mcp snapshot": [], "playwright-mcp click": []}
        await mcp.call_tool("browser_navigate", {"url": page + "/form"})
        for _ in range(runs):
            took, result = await timed(lambda: mcp.call_tool("browser_snapshot", {}))
            out["playwright-mcp snapshot"].append(took)
            ref = re.search(r'button "Send"[^\n]*\[ref=(\w+)\]', text_of(result)).group(1)
            # 0.0.83 names the element's reference `target`.
            took, clicked = await timed(lambda: mcp.call_tool("browser_click", {"element": "Send button", "target": ref}))
            if clicked.is_error:
                raise RuntimeError(f"Playwright MCP's click failed: {text_of(clicked)}")
            out["playwright-mcp click"].append(took)
        return out

    peer = await theirs(session["cdp_url"], peer_work)
    if peer:
        figures.update(peer)
    server.call("DELETE", f"/v1/sessions/{sid}")
    return figures


async def sizes(server, page):
    session = server.call("POST", "/v1/sessions", {})["data"]
    sid = session["id"]
    out = {}
    for name in ("/form", "/article", "/many"):
        server.call("POST", f"/v1/sessions/{sid}/goto", {"url": page + name})

        async def budgeted(mcp):
            return len(text_of(await mcp.call_tool("snapshot", {"session_id": sid})))

        # The whole snapshot through REST: through MCP it is capped at 200000.
        full = len(server.call("POST", f"/v1/sessions/{sid}/snapshot", {"max_chars": 1_000_000})["data"]["snapshot"])
        budget = await ours(server.base, budgeted)

        async def peer(mcp):
            await mcp.call_tool("browser_navigate", {"url": page + name})
            return len(text_of(await mcp.call_tool("browser_snapshot", {})))

        out[name] = {"ours whole": full, "ours default budget": budget,
                     "playwright-mcp": await theirs(session["cdp_url"], peer)}
    server.call("DELETE", f"/v1/sessions/{sid}")
    return out


async def many(base, page, clients, rounds):
    times, failures = [], 0

    async def one(_):
        nonlocal failures

        async def work(mcp):
            nonlocal failures
            started = await mcp.call_tool("start_session", {"initial_url": page + "/form"})
            if started.is_error:
                failures += 1
                return
            sid = re.search(r"session_id: (\S+)", text_of(started)).group(1)
            try:
                for _ in range(rounds):
                    took, snap = await timed(lambda: mcp.call_tool("snapshot", {"session_id": sid}))
                    times.append(took)
                    if snap.is_error:
                        failures += 1
                        continue
                    ref = first_ref(text_of(snap), 'button "Send"')
                    took, clicked = await timed(lambda: mcp.call_tool("click", {"session_id": sid, "ref": ref}))
                    times.append(took)
                    failures += clicked.is_error
            finally:
                await mcp.call_tool("end_session", {"session_id": sid})

        await ours(base, work)

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(clients)))
    return times, failures, time.perf_counter() - started


def p(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(REPO / "target" / "release" / "anchorage"))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    page = serve({"/form": FORM, "/article": ARTICLE, "/many": MANY})
    server = harness.Server(args.binary, pool_size=1, code_warm=0)
    try:
        figures = asyncio.run(overhead(server, page, args.runs))
        found = asyncio.run(sizes(server, page))
    finally:
        server.close()
    print(f"tool calls, p50 of {args.runs} (ms):")
    for name, values in figures.items():
        print(f"  {name:28s} {statistics.median(values):8.2f}")
    for tool in ("snapshot", "click"):
        rest, mcp = statistics.median(figures[f"rest {tool}"]), statistics.median(figures[f"mcp {tool}"])
        line = f"  {tool}: /v1/mcp +{mcp - rest:.2f} ms over REST"
        if f"playwright-mcp {tool}" in figures:
            line += f"; Playwright MCP {statistics.median(figures[f'playwright-mcp {tool}']) / mcp:.2f}x ours"
        print(line)
    print("snapshot size (characters):")
    print(json.dumps(found, indent=2))
    crowd = harness.Server(args.binary, pool_size=0, code_warm=0, session_isolation="context",
                           max_sessions=args.clients + 5)
    try:
        times, failures, took = asyncio.run(many(crowd.base, page, args.clients, args.rounds))
    finally:
        crowd.close()
    print(f"{args.clients} MCP clients at once, {args.rounds} rounds of snapshot + click each, context sessions:")
    print(f"  calls {len(times)}, failed {failures}, p50 {p(times, 0.5):.1f} ms, p99 {p(times, 0.99):.1f} ms, "
          f"all done in {took:.1f} s")


if __name__ == "__main__":
    main()
