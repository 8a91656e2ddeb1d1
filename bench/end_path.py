"""The end path at the floor: one session's whole cycle with the pool on,
next to the same client steps on a browser the harness launched ahead.

    cargo build --release -p anchorage
    python3 bench/end_path.py                        # 30 cycles, a start every 1.5 s
    python3 bench/end_path.py --server ANCHORAGE_POOL_REFILL_NICE=0   # a setting for this run's server

Cycle (anchorage): POST /v1/sessions -> connect_over_cdp -> the existing page
-> goto a local page -> title -> disconnect -> DELETE /v1/sessions/{id}.
Floor: a Chromium the harness launched --floor-settle seconds before the
clock starts, the same client steps, no create or end call. The floor runs
first, then the cycles, in the same go; both start every --period seconds,
as real arrivals would, so the pool's refills run while sessions are in use.
Reports medians and the ratio; asserts nothing about time.
"""

import argparse
import json
import pathlib
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import TITLE, RawBrowser, Server, percentile, serve_pages  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

STEPS = ["post", "connect", "page", "goto", "title", "disconnect", "delete"]


def client_steps(playwright, ws, page_url, mark):
    browser = playwright.chromium.connect_over_cdp(ws)
    mark("connect")
    page = browser.contexts[0].pages[0]
    mark("page")
    page.goto(page_url)
    mark("goto")
    assert page.title() == TITLE
    mark("title")
    browser.close()
    mark("disconnect")


def timer():
    times, started = {}, [time.perf_counter()]

    def mark(step):
        now = time.perf_counter()
        times[step] = (now - started[0]) * 1000
        started[0] = now

    return times, mark


def ours(playwright, server, page_url):
    times, mark = timer()
    session = server.call("POST", "/v1/sessions", {})["data"]
    mark("post")
    client_steps(playwright, session["cdp_url"], page_url, mark)
    server.call("DELETE", f"/v1/sessions/{session['id']}")
    mark("delete")
    return times


def floor(playwright, page_url, settle):
    browser = RawBrowser()
    try:
        time.sleep(settle)
        times, mark = timer()
        client_steps(playwright, browser.ws, page_url, mark)
        return times
    finally:
        browser.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--period", type=float, default=1.5, help="seconds between starts")
    parser.add_argument("--floor-settle", type=float, default=0.5,
                        help="seconds between launching a floor browser and starting its clock")
    parser.add_argument("--binary", default=str(pathlib.Path(__file__).resolve().parents[1] / "target/release/anchorage"))
    parser.add_argument("--server", action="append", default=[], metavar="NAME=VALUE",
                        help="an ANCHORAGE_ setting for the server (name without the prefix, or with it)")
    parser.add_argument("--compare", metavar="BINARY",
                        help="also run the cycles against this build (its defaults), in the same go")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    settings = {"pool_size": 2, "max_sessions": 8}
    for pair in args.server:
        name, _, value = pair.partition("=")
        settings[name.lower().removeprefix("anchorage_")] = value
    page_url = serve_pages() + "/"

    def paced(measure):
        rows = []
        for _ in range(args.runs):
            started = time.perf_counter()
            rows.append(measure())
            time.sleep(max(0.0, args.period - (time.perf_counter() - started)))
        return rows

    def run_cycles(playwright, binary, server_settings):
        # The server's own request log gives the time it took to answer each
        # DELETE, without the client's HTTP overhead.
        log = tempfile.TemporaryFile(mode="w+")
        server = Server(binary, log_file=log, log="warn,anchorage_server::routes=info", **server_settings)
        try:
            # Warm up: the first launch measures the window frame.
            ours(playwright, server, page_url)
            time.sleep(3)
            rows = paced(lambda: ours(playwright, server, page_url))
        finally:
            server.close()
        log.seek(0)
        answered = [float(match.group(1)) for match in re.finditer(
            r"method=DELETE route=/v1/sessions/\{session_id\} status=200 latency_ms=([0-9.]+)",
            re.sub(r"\x1b\[[0-9;]*m", "", log.read()))]
        return rows, answered

    with sync_playwright() as playwright:
        floors = paced(lambda: floor(playwright, page_url, args.floor_settle))
        runs = {"this build": run_cycles(playwright, args.binary, settings)}
        if args.compare:
            runs[args.compare] = run_cycles(playwright, args.compare, {"pool_size": 2, "max_sessions": 8})

    def median(rows, steps):
        return statistics.median(sum(row[step] for step in steps) for row in rows)

    page_steps = ["connect", "page", "goto", "title", "disconnect"]
    floor_ms = median(floors, page_steps)
    figures = {
        "settings": settings, "runs": args.runs, "period_s": args.period, "floor_settle_s": args.floor_settle,
        "floor_ms": floor_ms,
        "floor_steps_ms": {step: statistics.median(row[step] for row in floors) for step in page_steps},
        "builds": {},
    }
    for name, (rows, answered) in runs.items():
        figures["builds"][name] = {
            "cycle_ms": median(rows, STEPS),
            "cycle_over_floor": median(rows, STEPS) / floor_ms,
            "page_steps_ms": median(rows, page_steps),
            "steps_ms": {step: statistics.median(row[step] for row in rows) for step in STEPS},
            "delete_client_p90_ms": percentile([row["delete"] for row in rows], 0.9),
            "delete_server_ms": {"p50": statistics.median(answered), "p90": percentile(answered, 0.9)}
            if answered else None,
        }
    print(json.dumps(figures, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
