"""Two builds of anchorage side by side: the pool-on lifecycle, alternating.

The machine these figures come from is shared and noisy, and two harness
runs of the same build can differ by more than a change does. This runs two
servers (pool on) at once and alternates the harness's lifecycle between
them (POST → connect → new page → goto → title → end), so that both see the
same machine, and times each step. Build the older one from a worktree with its own target dir:

    git worktree add /tmp/before <commit>
    (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release -p anchorage)
    python3 bench/ab_lifecycle.py /tmp/before-target/release/anchorage target/release/anchorage --runs 20
"""

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import POOL_PAUSE, TITLE, Server, client_steps, percentile, serve_pages  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

STEPS = ["post", "connect", "new_page", "goto", "title", "close", "delete"]


def lifecycle(playwright, server, page_url):
    """One lifecycle, as the harness's, timed step by step (ms)."""
    time.sleep(POOL_PAUSE)  # let the pool refill, as between real arrivals
    times = []
    mark = time.perf_counter()

    def step():
        nonlocal mark
        now = time.perf_counter()
        times.append((now - mark) * 1000)
        mark = now

    session = server.call("POST", "/v1/sessions", {})["data"]
    step()
    browser = playwright.chromium.connect_over_cdp(session["cdp_url"])
    step()
    context = browser.contexts[0] if browser.contexts else browser.new_context()
    page = context.new_page()
    step()
    page.goto(page_url)
    step()
    assert page.title() == TITLE
    step()
    page.close()
    browser.close()
    step()
    server.call("DELETE", f"/v1/sessions/{session['id']}")
    step()
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="the first binary (usually the older build)")
    parser.add_argument("after", help="the second binary")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    page = f"{serve_pages()}/"
    runs = {"before": [], "after": []}
    with sync_playwright() as playwright:
        servers = {name: Server(getattr(args, name), pool_size=2, max_sessions=8) for name in runs}
        try:
            for server in servers.values():  # the first launch of each measures the window frame
                client_steps(playwright, server.call("POST", "/v1/sessions", {})["data"]["cdp_url"], page)
                server.call("DELETE", "/v1/sessions/all")
            for run in range(args.runs):
                order = list(servers.items())
                if run % 2:
                    order.reverse()
                for name, server in order:
                    runs[name].append(lifecycle(playwright, server, page))
        finally:
            for server in servers.values():
                server.close()
    print(f"{args.runs} runs each, alternating; p50 ms")
    print("| build | total (p90) | " + " | ".join(STEPS) + " |")
    print("| --- " * (len(STEPS) + 2) + "|")
    for name, measured in runs.items():
        totals = [sum(times) for times in measured]
        steps = [statistics.median(times[index] for times in measured) for index in range(len(STEPS))]
        print(f"| {name} | {statistics.median(totals):.1f} ({percentile(totals, 0.9):.1f}) | "
              + " | ".join(f"{value:.1f}" for value in steps) + " |")


if __name__ == "__main__":
    main()
