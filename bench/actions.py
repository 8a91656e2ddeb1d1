"""The REST actions and the one-shot tools next to what a client would do
without them, in the same go.

    cargo build --release -p anchorage
    python3 bench/actions.py                                   # the figures of BENCHMARKS.md
    python3 bench/actions.py --compare /tmp/base/anchorage     # also an older build's actions

Rows:
- click: `POST /v1/sessions/{id}/mouse/click` at coordinates over one kept
  HTTP connection, against the pair of `Input.dispatchMouseEvent`
  (pressed, released) a bare CDP client sends straight to a browser the
  harness launched. Alternating, after a warm-up; medians of the round trip.
- screenshot: `GET /v1/sessions/{id}/screenshot` of a noise page (a 1 to 2 MB
  PNG) against `Page.captureScreenshot` of the same page in the harness's
  browser (decoded, as a client would); captures per second.
- tool: `POST /v1/tools/screenshot` of a local page without a session,
  against what a client does for the same picture with the pool on:
  `POST /v1/sessions`, CDP connect, navigate, wait for the load, one
  capture, `DELETE`. Both paced --period seconds apart so the pool refills.

Reports medians and ratios; asserts nothing about time.
"""

import argparse
import base64
import http.client
import json
import pathlib
import statistics
import sys
import time
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import KEY, Cdp, RawBrowser, Server, percentile, serve_pages  # noqa: E402


class Http:
    """One kept HTTP/1.1 connection to the server (the client side of a
    REST call costs the same for every build)."""

    def __init__(self, base):
        parsed = urllib.parse.urlparse(base)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)

    def call(self, method, path, body=None):
        headers = {"anchor-api-key": KEY}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:200]!r}")
        return payload

    def close(self):
        self.connection.close()


def wait_for_title(cdp, session, title):
    deadline = time.monotonic() + 30
    while cdp.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                   session)[0]["result"].get("value") != title:
        assert time.monotonic() < deadline, f"no page titled {title!r}"
        time.sleep(0.05)


def navigate(cdp, session, url):
    cdp.call("Page.enable", {}, session)
    cdp.call("Page.navigate", {"url": url}, session)
    while True:
        message = json.loads(cdp.socket.recv())
        if message.get("method") == "Page.loadEventFired" and message.get("sessionId") == session:
            return


def direct_browser(page_url):
    raw = RawBrowser()
    cdp = Cdp(raw.ws)
    session = cdp.page_session()
    navigate(cdp, session, page_url)
    return raw, cdp, session


def clicks_and_screenshots(binary, page_url, clicks, screenshots):
    """Click round trips and screenshot throughput of one build, each next
    to the direct CDP figures measured alternately with it."""
    server = Server(binary, pool_size=1, max_sessions=4)
    raw, cdp, direct = direct_browser(page_url + "/noise")
    http_client = Http(server.base)
    try:
        session_id = server.call("POST", "/v1/sessions", {})["data"]["id"]
        http_client.call("POST", f"/v1/sessions/{session_id}/goto", {"url": page_url + "/noise"})
        wait_for_title(cdp, direct, "noise ready")
        times = {"ours": [], "direct": []}

        def ours_click():
            http_client.call("POST", f"/v1/sessions/{session_id}/mouse/click", {"x": 700, "y": 300})

        def direct_click():
            for kind in ("mousePressed", "mouseReleased"):
                cdp.call("Input.dispatchMouseEvent",
                         {"type": kind, "x": 700, "y": 300, "button": "left", "clickCount": 1}, direct)

        for _ in range(20):
            ours_click()
            direct_click()
        for _ in range(clicks):
            for name, act in (("ours", ours_click), ("direct", direct_click)):
                started = time.perf_counter()
                act()
                times[name].append((time.perf_counter() - started) * 1000)

        shots = {"ours": [], "direct": []}

        def ours_shot():
            png = http_client.call("GET", f"/v1/sessions/{session_id}/screenshot")
            assert png[:4] == b"\x89PNG"

        def direct_shot():
            result, _ = cdp.call("Page.captureScreenshot", {"format": "png"}, direct)
            assert base64.b64decode(result["data"])[:4] == b"\x89PNG"

        ours_shot()
        direct_shot()
        for _ in range(screenshots):
            for name, act in (("ours", ours_shot), ("direct", direct_shot)):
                started = time.perf_counter()
                act()
                shots[name].append(time.perf_counter() - started)
        http_client.call("DELETE", f"/v1/sessions/{session_id}")
        return {
            "click_ms": {name: {"p50": statistics.median(values), "p90": percentile(values, 0.9)}
                         for name, values in times.items()},
            "click_p50_over_direct_ms": statistics.median(times["ours"]) - statistics.median(times["direct"]),
            "screenshots_per_s": {name: len(values) / sum(values) for name, values in shots.items()},
            "screenshot_throughput_ratio": sum(shots["direct"]) / sum(shots["ours"]),
        }
    finally:
        http_client.close()
        cdp.close()
        raw.close()
        server.close()


def tool_against_lifecycle(binary, page_url, runs, period):
    server = Server(binary, pool_size=1, max_sessions=4)
    http_client = Http(server.base)
    try:
        def tool():
            png = http_client.call("POST", "/v1/tools/screenshot", {"url": page_url + "/"})
            assert png[:4] == b"\x89PNG"

        def lifecycle():
            session = json.loads(http_client.call("POST", "/v1/sessions", {}))["data"]
            cdp = Cdp(session["cdp_url"])
            try:
                page = cdp.page_session()
                navigate(cdp, page, page_url + "/")
                result, _ = cdp.call("Page.captureScreenshot", {"format": "png"}, page)
                assert base64.b64decode(result["data"])[:4] == b"\x89PNG"
            finally:
                cdp.close()
            http_client.call("DELETE", f"/v1/sessions/{session['id']}")

        times = {"tool": [], "lifecycle": []}
        tool()
        lifecycle()
        for _ in range(runs):
            for name, act in (("tool", tool), ("lifecycle", lifecycle)):
                time.sleep(period)
                started = time.perf_counter()
                act()
                times[name].append((time.perf_counter() - started) * 1000)
        return {
            "ms": {name: {"p50": statistics.median(values), "p90": percentile(values, 0.9)}
                   for name, values in times.items()},
            "tool_over_lifecycle": statistics.median(times["tool"]) / statistics.median(times["lifecycle"]),
        }
    finally:
        http_client.close()
        server.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=300)
    parser.add_argument("--screenshots", type=int, default=40)
    parser.add_argument("--tools", type=int, default=20)
    parser.add_argument("--period", type=float, default=1.5, help="seconds before each tool or lifecycle run")
    parser.add_argument("--binary", default=str(pathlib.Path(__file__).resolve().parents[1] / "target/release/anchorage"))
    parser.add_argument("--compare", metavar="BINARY", help="also measure the click and screenshot rows of this build")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    page_url = serve_pages()
    figures = {
        "this build": {
            "actions": clicks_and_screenshots(args.binary, page_url, args.clicks, args.screenshots),
            "tool": tool_against_lifecycle(args.binary, page_url, args.tools, args.period),
        },
    }
    if args.compare:
        figures[args.compare] = {"actions": clicks_and_screenshots(args.compare, page_url, args.clicks, args.screenshots)}
    print(json.dumps(figures, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
