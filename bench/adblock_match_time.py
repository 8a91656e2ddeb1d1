"""How long the browsers' filter takes to decide a page's requests (issue 26), as Chromium itself times it.

    cargo build --release -p anchorage
    python3 bench/adblock_match_time.py --loads 40

A request is matched in the page's renderer by Chromium's subresource filter, so no time per request can be
read from outside. Chromium times its own decisions when the filter's feature is given
`performance_measurement_rate/1` (anchorage's browsers run without it: the timers are a cost of their
own), and keeps the sums per page load in its histograms
(`SubresourceFilter.PageLoad.SubresourceEvaluation.TotalWallDuration` and `…TotalCPUDuration`, in
microseconds; `…NumSubresourceLoads.Evaluated`, the requests decided). This script starts a node once, so
that the lists' ruleset is indexed into the bench's shared index folder, gives a browser of its own that
indexed ruleset as a node gives its browsers, with the measurement on, loads `bench/adblock.py`'s ad page
(40 ad and tracker requests) and its page without ads (30 first-party resources) --loads times each, and
reads the histograms through DevTools (`Browser.getHistograms`). Chromium keeps no time per request, only
the page's sum: the figures are the page sums' p50 and p99 (from the histogram's buckets: the bucket that
holds them) and their sum over every decided request. Nothing is asserted.
"""

import argparse
import http.server
import json
import pathlib
import shutil
import sys
import tempfile
import threading

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import adblock  # noqa: E402
import harness  # noqa: E402

from playwright.sync_api import sync_playwright  # noqa: E402

ACTIVATION = ("SubresourceFilter:activation_state/enabled/activation_scope/all_sites/activation_priority/2000"
              "/performance_measurement_rate/1")
PREFIX = "SubresourceFilter.PageLoad."


def kept_index():
    """The newest ruleset a node kept in the bench's index folder: its folder and its record."""
    harness.Server(harness.REPO / "target" / "release" / "anchorage", pool_size=0).close()
    kept = sorted(pathlib.Path(harness.ADBLOCK_INDEX_DIR).glob("*/indexed.json"), key=lambda path: path.stat().st_mtime)
    if not kept:
        sys.exit(f"no indexed ruleset in {harness.ADBLOCK_INDEX_DIR}")
    return kept[-1].parent, json.loads(kept[-1].read_text())


def give_ruleset(profile, folder, record):
    target = profile / "Subresource Filter" / "Indexed Rules" / record["format"] / record["version"]
    target.mkdir(parents=True)
    for name in ("Ruleset Data", "LICENSE"):
        shutil.copy(folder / name, target / name)
    (profile / "Local State").write_text(json.dumps({"subresource_filter": record["local_state"]}))


def bucket_of(histogram, fraction):
    """The bucket (low, high) that holds the given fraction of the histogram's samples."""
    wanted, seen = fraction * histogram["count"], 0
    for bucket in histogram["buckets"]:
        seen += bucket["count"]
        if seen >= wanted:
            return bucket["low"], bucket["high"]
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=40, help="loads of each page")
    args = parser.parse_args()
    adblock.SLOW["ms"] = 0
    folder, record = kept_index()

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), adblock.Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    port = site.server_address[1]
    with tempfile.TemporaryDirectory(prefix="anchorage-match-time-") as temp, sync_playwright() as playwright:
        profile = pathlib.Path(temp) / "profile"
        profile.mkdir()
        give_ruleset(profile, folder, record)
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=harness.CHROMIUM, headless=True,
            args=["--host-resolver-rules=MAP * 127.0.0.1", "--disable-component-update", "--no-sandbox",
                  f"--enable-features={ACTIVATION}"])
        try:
            page = context.pages[0] if context.pages else context.new_page()
            before = adblock.SEEN["ads"]
            for run in range(args.loads):
                for kind in ("ads", "plain"):
                    page.goto(f"http://site.test:{port}/{kind}?r={run}", wait_until="load")
            reached = adblock.SEEN["ads"] - before
            page.goto("about:blank")
            session = context.new_cdp_session(page)
            histograms = {item["name"]: item for item in
                          session.send("Browser.getHistograms", {"query": PREFIX})["histograms"]}
        finally:
            context.close()
    wall = histograms.get(PREFIX + "SubresourceEvaluation.TotalWallDuration")
    cpu = histograms.get(PREFIX + "SubresourceEvaluation.TotalCPUDuration")
    evaluated = histograms.get(PREFIX + "NumSubresourceLoads.Evaluated")
    disallowed = histograms.get(PREFIX + "NumSubresourceLoads.Disallowed")
    if not (wall and evaluated):
        sys.exit(f"Chromium recorded no evaluation time: {sorted(histograms)}")
    print(f"{wall['count']} page loads ({args.loads} of each page; ad requests that reached the site: {reached}), "
          f"{evaluated['sum']} requests decided, {disallowed['sum'] if disallowed else 0} of them blocked")
    for label, histogram in (("wall", wall), ("CPU", cpu)):
        if not histogram:
            continue
        p50, p99 = bucket_of(histogram, 0.5), bucket_of(histogram, 0.99)
        print(f"  {label} time deciding a page's requests: p50 in [{p50[0]}, {p50[1]}) us, "
              f"p99 in [{p99[0]}, {p99[1]}) us; over every request {histogram['sum'] / evaluated['sum']:.2f} us each")


if __name__ == "__main__":
    main()
