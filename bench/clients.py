"""What real clients wait for (issue 22), each next to a baseline in the same go.

    cargo build --release -p anchorage
    python3 bench/clients.py                   # 20 downloads, 5 profile starts, 10 fetches

Rows (medians; asserts nothing about time):
- downloads: with Playwright connected (it set its own download behaviour),
  a click by Playwright; from the click, the moment Playwright's own
  `download.path()` has the file (Chromium finished it) against the moment
  `GET /v1/sessions/{id}/downloads` lists it.
- profile: `POST /v1/sessions` naming a profile of --megabytes, sent right
  after the `DELETE` of the persisting session that saves it (the start
  waits for the save), against the same start once the profile is ready;
  and the save itself (`DELETE` answered to `ready`).
- markdown: `POST /v1/tools/fetch-webpage` of a 1 MiB page in a running
  session with `format: "markdown"` against `html`; the difference is the
  conversion (and the smaller answer).
"""

import argparse
import http.server
import json
import pathlib
import statistics
import sys
import threading
import time
import urllib.request

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import KEY, Server  # noqa: E402
from profiles import FILL, wait_ready  # noqa: E402

CSV = b"quarter,revenue\n" + b"Q1,112\n" * 2000


def big_page():
    """About 1 MiB of headings, paragraphs, lists, tables and code."""
    parts = ["<!doctype html><title>big</title>"]
    section = 0
    while sum(map(len, parts)) < 1024 * 1024:
        section += 1
        parts.append(f"<h2>Section {section}</h2><p>Some <a href='https://example.com/{section}'>linked</a> "
                     f"text, <b>bold</b> and <i>italic</i>, repeated {'words ' * 40}.</p>"
                     f"<ul><li>alpha {section}</li><li>beta</li><li>gamma</li></ul>"
                     f"<table><tr><th>a</th><th>b</th></tr><tr><td>{section}</td><td>x</td></tr></table>"
                     f"<pre><code>let value = {section};</code></pre>")
    return "".join(parts).encode()


class Pages(http.server.BaseHTTPRequestHandler):
    BIG = big_page()

    def do_GET(self):  # noqa: N802 (the standard library's name)
        if self.path == "/figures.csv":
            body, kind = CSV, "text/csv"
        elif self.path == "/big":
            body, kind = self.BIG, "text/html"
        else:
            body = b"<!doctype html><title>bench</title><a id=dl href=/figures.csv download>figures</a>"
            kind = "text/html"
        self.send_response(200)
        self.send_header("content-type", kind)
        if self.path == "/figures.csv":
            self.send_header("content-disposition", 'attachment; filename="figures.csv"')
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def post_text(server, path, body):
    request = urllib.request.Request(server.base + path, method="POST", data=json.dumps(body).encode(),
                                     headers={"anchor-api-key": KEY, "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def median_ms(values):
    return round(statistics.median(values), 1)


def downloads(server, base, runs):
    session = server.call("POST", "/v1/sessions", {})["data"]
    finished, listed = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.connect_over_cdp(session["cdp_url"])
        page = browser.contexts[0].pages[0]
        for run in range(runs):
            # A fresh page each time: Chromium holds back a page's repeated
            # downloads now and then (about one in ten here, whoever is
            # attached), which would measure its limiter, not the listing.
            page.goto(base + "/")
            clicked = time.perf_counter()
            with page.expect_download() as waiting:
                page.click("#dl")
            waiting.value.path()
            finished.append((time.perf_counter() - clicked) * 1000)
            while server.call("GET", f"/v1/sessions/{session['id']}/downloads")["data"]["count"] < run + 1:
                time.sleep(0.005)
            listed.append((time.perf_counter() - clicked) * 1000)
        browser.close()
    server.call("DELETE", f"/v1/sessions/{session['id']}")
    return {"playwright_has_it_ms": median_ms(finished), "listed_ms": median_ms(listed),
            "listed_after_finish_ms": median_ms([b - a for a, b in zip(finished, listed)])}


def profile(server, base, runs, megabytes):
    server.call("POST", "/v1/profiles", {"name": "big"})
    persist = {"browser": {"profile": {"name": "big", "persist": True}}}
    session = server.call("POST", "/v1/sessions", persist)["data"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.connect_over_cdp(session["cdp_url"])
        page = browser.contexts[0].pages[0]
        page.goto(base + "/")
        assert page.evaluate(FILL % megabytes) == "filled"
        browser.close()
    server.call("DELETE", f"/v1/sessions/{session['id']}")
    wait_ready(server, "big")
    waited, ready, saves = [], [], []
    for _ in range(runs):
        session = server.call("POST", "/v1/sessions", persist)["data"]
        time.sleep(0.5)
        server.call("DELETE", f"/v1/sessions/{session['id']}")
        ended = time.perf_counter()
        started = server.call("POST", "/v1/sessions", {"browser": {"profile": {"name": "big"}}})["data"]
        waited.append((time.perf_counter() - ended) * 1000)
        server.call("DELETE", f"/v1/sessions/{started['id']}")
        # The save alone: another persisting session ended, polled to ready.
        session = server.call("POST", "/v1/sessions", persist)["data"]
        time.sleep(0.5)
        server.call("DELETE", f"/v1/sessions/{session['id']}")
        ended = time.perf_counter()
        wait_ready(server, "big")
        saves.append((time.perf_counter() - ended) * 1000)
        time.sleep(0.5)
        begun = time.perf_counter()
        started = server.call("POST", "/v1/sessions", {"browser": {"profile": {"name": "big"}}})["data"]
        ready.append((time.perf_counter() - begun) * 1000)
        server.call("DELETE", f"/v1/sessions/{started['id']}")
    return {"start_while_saving_ms": median_ms(waited), "start_from_ready_ms": median_ms(ready),
            "ratio": round(statistics.median(waited) / statistics.median(ready), 2), "save_ms": median_ms(saves)}


def markdown(server, base, runs):
    session = server.call("POST", "/v1/sessions", {})["data"]
    path = f"/v1/tools/fetch-webpage?sessionId={session['id']}"
    times = {"html": [], "markdown": []}
    sizes = {}
    for _ in range(runs):
        for kind in times:
            begun = time.perf_counter()
            answer = post_text(server, path, {"url": base + "/big", "format": kind})
            times[kind].append((time.perf_counter() - begun) * 1000)
            sizes[kind] = len(answer)
    server.call("DELETE", f"/v1/sessions/{session['id']}")
    return {"page_bytes": len(Pages.BIG), "answer_bytes": sizes,
            "html_ms": median_ms(times["html"]), "markdown_ms": median_ms(times["markdown"]),
            "conversion_ms": round(statistics.median(times["markdown"]) - statistics.median(times["html"]), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--downloads", type=int, default=20)
    parser.add_argument("--profile-runs", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--fetches", type=int, default=10)
    parser.add_argument("--binary", default=str(pathlib.Path(__file__).resolve().parents[1] / "target/release/anchorage"))
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{pages.server_address[1]}"
    server = Server(args.binary, pool_size=0, max_sessions=4)
    try:
        figures = {
            "downloads": downloads(server, base, args.downloads),
            "markdown": markdown(server, base, args.fetches),
            "profile": profile(server, base, args.profile_runs, args.megabytes),
        }
    finally:
        server.close()
    print(json.dumps(figures, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
