"""Ad blocking (issue 26): page loads blocked vs not, the pool's handout with it on vs off, and the engine, in one go.

    cargo build --release -p anchorage
    python3 bench/adblock.py --runs 20

- page load: the `load` event (navigation timing, in the page) of a local
  page with 40 ad and tracker requests from names EasyList and EasyPrivacy
  list (all mapped to 127.0.0.1; their answers take --slow-ms), in
  --sessions sessions with ad blocking (the default) and as many with
  `browser.adblock.active: false`, runs interleaved; the same for a page of 30 first-party resources
  and no ad. Each URL is fresh (no cache). The ratio is unblocked / blocked
  for the ad page (higher is better for blocking) and blocked / unblocked
  for the plain page (the cost of blocking where nothing is blocked);
- pool: `POST /v1/sessions` taken from a pool of 2 with the default and
  with ad blocking off, interleaved, the pool refilled before each (a
  pooled browser that blocks requests serves only starts that block; the
  pool's mix follows the starts, so after the first start without blocking,
  a launch, half the pool is refilled without it); and the same from a node
  without lists (ad blocking off everywhere), the two nodes side by side;
- cold start: `POST /v1/sessions` with no pool, ad blocking on vs off,
  interleaved (a browser that blocks gets a link to the node's indexed
  ruleset and the extension, and the start waits until element hiding is
  on); and the proportional set size of each kind of browser, idle on
  `about:blank` (the extension's worker is one more process);
- engine: compile time (`GET /v1/adblock`, which includes writing the
  browsers' ruleset), the rules the browsers got and the lines left out, and
  the server's resident memory with the default lists vs with ad blocking
  off (both idle, after start). A request is matched inside Chromium, in the
  page's renderer, by its subresource filter: Chromium's own timing of it
  is `bench/adblock_match_time.py`'s; the page loads above are its cost.
Nothing is asserted.
"""

import argparse
import http.server
import json
import pathlib
import random
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import harness  # noqa: E402

from playwright.sync_api import sync_playwright  # noqa: E402

# Names EasyPrivacy blocks (`||name^`), none of them HSTS-preloaded, so plain
# HTTP to 127.0.0.1 reaches the site when nothing blocks them.
TRACKERS = ["hbiq.net", "gsitrix.com", "hdmtools.com", "growth-channel.net", "gotoda.co",
            "greencolumnhealth.com", "godiciardstia.com", "healthroundprince.com"]
SLOW = {"ms": 300}
SEEN = {"ads": 0, "first-party": 0}
KINDS = ["ads", "plain"]


def ad_page(port, run):
    parts = ["<!doctype html><title>news</title><h1>News</h1><p>" + "words " * 200 + "</p>"]
    for index in range(40):
        host = TRACKERS[index % len(TRACKERS)]
        if index % 4 == 0:
            parts.append(f"<script src=http://tag.{host}:{port}/t.js?r={run}-{index}></script>")
        elif index % 4 == 1:
            parts.append(f"<img src=/ads/banners/b{index}.png?r={run}>")
        else:
            parts.append(f"<img src=http://px.{host}:{port}/p.gif?r={run}-{index}>")
    parts.append(f"<script src=/app.js?r={run}></script>")
    return "".join(parts)


def plain_page(run):
    parts = ["<!doctype html><title>plain</title><h1>Plain</h1><p>" + "words " * 200 + "</p>",
             f"<link rel=stylesheet href=/style.css?r={run}>"]
    # Names no rule of the lists matches: EasyPrivacy blocks `/0.gif?` to `/3.gif?` (tracking pixels), so
    # a page of `/img/<n>.gif?…` was not a page without ads (until 2026-12-07 it lost four images blocked).
    parts += [f"<img src=/media/photo-{index}.gif?r={run}>" for index in range(25)]
    parts += [f"<script src=/lib{index}.js?r={run}></script>" for index in range(4)]
    return "".join(parts)


class Site(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go in separate writes: without this, Nagle's algorithm
    # and the client's delayed ACK hold each body back by tens of ms.
    disable_nagle_algorithm = True

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        host = (self.headers.get("host") or "").split(":")[0]
        run = self.path.split("r=")[-1] if "r=" in self.path else "0"
        port = self.server.server_address[1]
        if path == "/ads":
            body, kind = ad_page(port, run).encode(), "text/html"
        elif path == "/plain":
            body, kind = plain_page(run).encode(), "text/html"
        elif path.endswith(".js"):
            body, kind = b"window.n = (window.n || 0) + 1;", "text/javascript"
        elif path.endswith(".css"):
            body, kind = b"h1 { color: #333 }", "text/css"
        else:
            body, kind = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;", "image/gif"
        if host != "site.test" or path.startswith("/ads/"):
            SEEN["ads"] += 1
            time.sleep(SLOW["ms"] / 1000)
        elif path not in ("/ads", "/plain", "/app.js", "/favicon.ico"):
            SEEN["first-party"] += 1
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def load_ms(page, url):
    page.goto(url, wait_until="load", timeout=60_000)
    timing = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
    entry = json.loads(timing)
    return entry["loadEventStart"] - entry["startTime"]


def load_order(names, runs, seed=26):
    """The order of each run's loads: shuffled afresh for every run (seeded, so each go is the same), and never
    the same browser twice in a row across a run's end. A fixed order (or one reversed every other run) put
    the same browser's loads back to back at the turn, and such a load ran 5 to 8 per cent faster (its
    connections and renderer still warm), which made whichever session stood there look fast."""
    shuffler = random.Random(seed)
    orders, last = [], None
    for _ in range(runs):
        order = list(names)
        shuffler.shuffle(order)
        if order[0] == last:
            order.append(order.pop(0))
        orders.append(order)
        last = order[-1]
    return orders


def page_loads(server, port, runs, each):
    """`each` sessions a side, all loads interleaved. Two browsers of the same kind differ from each other by
    several per cent here, so each side's figure is the mean over several browsers."""
    sessions = {}
    for copy in range(each):
        sessions[f"blocked/{copy}"] = server.call("POST", "/v1/sessions", {})["data"]
        sessions[f"unblocked/{copy}"] = server.call(
            "POST", "/v1/sessions", {"browser": {"adblock": {"active": False}}})["data"]
    figures = {}
    with sync_playwright() as playwright:
        pages = {}
        for name, session in sessions.items():
            browser = playwright.chromium.connect_over_cdp(session["cdp_url"])
            pages[name] = browser.contexts[0].pages[0]
        names = list(pages)
        for kind in KINDS:
            for name in names:  # once each, unmeasured
                load_ms(pages[name], f"http://site.test:{port}/{kind}?r=warm-{name}")
            for run, order in enumerate(load_order(names, runs)):
                for name in order:
                    side = name.split("/")[0]
                    before, first_party = SEEN["ads"], SEEN["first-party"]
                    took = load_ms(pages[name], f"http://site.test:{port}/{kind}?r={run}-{name}")
                    figures.setdefault(f"{kind} {side}", []).append(took)
                    figures.setdefault(f"{kind} {name}", []).append(took)
                    figures.setdefault(f"{kind} {side} ad requests", []).append(SEEN["ads"] - before)
                    figures.setdefault(f"{kind} {side} first-party", []).append(SEEN["first-party"] - first_party)
    for session in sessions.values():
        server.call("DELETE", f"/v1/sessions/{session['id']}")
    return figures


def pool_handouts(server, runs, bare=None):
    """Starts from the pool of `server`, with the default and with ad blocking off, and from the pool of
    `bare` (a node without lists) if given, interleaved."""
    times = {"adblock on": [], "adblock off": []} | ({"node without lists": []} if bare else {})
    for run in range(runs):
        names = list(times) if run % 2 == 0 else list(times)[::-1]
        for name in names:
            on = bare if name == "node without lists" else server
            deadline = time.monotonic() + 60
            while on.metric("anchorage_pool_browsers") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            body = {"browser": {"adblock": {"active": False}}} if name == "adblock off" else {}
            started = time.perf_counter()
            created = on.call("POST", "/v1/sessions", body)["data"]
            times[name].append((time.perf_counter() - started) * 1000)
            on.call("DELETE", f"/v1/sessions/{created['id']}")
    return times


def browser_pss_kib(server, session_id):
    profile = pathlib.Path(server.data_dir) / "browsers" / session_id.replace("-", "") / "profile"
    leaders = [int(entry.name) for entry in pathlib.Path("/proc").iterdir() if entry.name.isdigit()
               and str(profile).encode() in harness._cmdline(entry) and harness._is_leader(entry)]
    return sum(harness.group_pss_kib(leader) for leader in leaders)


def cold_starts(server, runs):
    times = {"adblock on": [], "adblock off": []}
    memory = {"adblock on": [], "adblock off": []}
    for run in range(runs):
        for name in (("adblock on", "adblock off") if run % 2 == 0 else ("adblock off", "adblock on")):
            body = {} if name == "adblock on" else {"browser": {"adblock": {"active": False}}}
            started = time.perf_counter()
            created = server.call("POST", "/v1/sessions", body)["data"]
            times[name].append((time.perf_counter() - started) * 1000)
            if run < 3:
                time.sleep(2)
                memory[name].append(browser_pss_kib(server, created["id"]))
            server.call("DELETE", f"/v1/sessions/{created['id']}")
    return times, memory


def trimmed_mean(values):
    """The mean without the slowest and the fastest tenth (steadier than the median on this machine)."""
    cut = len(values) // 10
    kept = sorted(values)[cut:len(values) - cut]
    return statistics.mean(kept)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(harness.REPO / "target" / "release" / "anchorage"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--slow-ms", type=int, default=300)
    parser.add_argument("--kinds", default="ads,plain", help="which pages to load (ads, plain)")
    parser.add_argument("--loads-only", action="store_true", help="leave out the pool and the engine's memory")
    parser.add_argument("--sessions", type=int, default=8, help="sessions a side for the page loads")
    args = parser.parse_args()
    SLOW["ms"] = args.slow_ms
    KINDS[:] = args.kinds.split(",")

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    port = site.server_address[1]
    rules = "MAP * 127.0.0.1"

    p50 = lambda values: statistics.median(values)  # noqa: E731
    server = harness.Server(args.binary, host_resolver_rules=rules, pool_size=0)
    try:
        loads = page_loads(server, port, args.runs, args.sessions)
        status = server.call("GET", "/v1/adblock")["data"]
        rss_on = server.rss_kib()
    finally:
        server.close()
    for kind in KINDS:
        blocked, unblocked = p50(loads[f"{kind} blocked"]), p50(loads[f"{kind} unblocked"])
        print(f"{kind} page load p50: blocked {blocked:.0f} ms, unblocked {unblocked:.0f} ms "
              f"(ad requests that reached the site per load: blocked {p50(loads[f'{kind} blocked ad requests']):.0f}, "
              f"unblocked {p50(loads[f'{kind} unblocked ad requests']):.0f}; first-party resources: blocked "
              f"{p50(loads[f'{kind} blocked first-party']):.0f}, unblocked {p50(loads[f'{kind} unblocked first-party']):.0f})")
        if kind == "ads":
            print(f"  unblocked / blocked = {unblocked / blocked:.2f}x (target >= 1.5x)")
        else:
            each = {side: [trimmed_mean(loads[f"{kind} {side}/{copy}"]) for copy in range(args.sessions)]
                    for side in ("blocked", "unblocked")}
            base = statistics.mean(each["unblocked"])
            trimmed = statistics.mean(each["blocked"]) / base
            spread = "; ".join(f"{side} " + ", ".join(f"{value / base:.3f}" for value in values)
                               for side, values in each.items())
            print(f"  blocked / unblocked = {blocked / unblocked:.3f}x (target <= 1.03x); "
                  f"of the means without each session's slowest and fastest tenth: {trimmed:.3f}x "
                  f"(each session against the unblocked ones' mean: {spread})")

    if args.loads_only:
        return
    servers = [harness.Server(args.binary, pool_size=2)]
    try:
        servers.append(harness.Server(args.binary, adblock_lists="", pool_size=2))
        handouts = pool_handouts(servers[0], args.runs, servers[1])
    finally:
        for server in servers:
            server.close()
    on, off, bare = (p50(handouts[name]) for name in ("adblock on", "adblock off", "node without lists"))
    print(f"POST /v1/sessions from the pool p50: adblock on {on:.1f} ms, off {off:.1f} ms: on / off = {on / off:.3f}x "
          f"(target <= 1.05x); a node without lists {bare:.1f} ms: on / that = {on / bare:.3f}x; trimmed means: "
          f"on / off {trimmed_mean(handouts['adblock on']) / trimmed_mean(handouts['adblock off']):.3f}x, "
          f"on / that {trimmed_mean(handouts['adblock on']) / trimmed_mean(handouts['node without lists']):.3f}x")

    server = harness.Server(args.binary, pool_size=0)
    try:
        cold, memory = cold_starts(server, max(2, args.runs // 2))
    finally:
        server.close()
    on, off = p50(cold["adblock on"]), p50(cold["adblock off"])
    print(f"POST /v1/sessions, cold start p50: adblock on {on:.1f} ms, off {off:.1f} ms: on / off = {on / off:.3f}x; "
          f"a browser idle: {p50(memory['adblock on']) / 1024:.0f} MiB with the extension, "
          f"{p50(memory['adblock off']) / 1024:.0f} MiB without (PSS)")

    server = harness.Server(args.binary, adblock_lists="", pool_size=0)
    try:
        time.sleep(1)
        rss_off = server.rss_kib()
    finally:
        server.close()
    lists = ", ".join(f"{item['title']} ({item['rules']} rules, {item['skipped']} lines skipped)" for item in status["lists"])
    print(f"engine: {lists}; compiled in {status['compile_ms']} ms; server resident memory {rss_on / 1024:.0f} MiB "
          f"with the lists vs {rss_off / 1024:.0f} MiB without (idle after start: {(rss_on - rss_off) / 1024:.0f} MiB); "
          f"{status['browser_rules']} network lines as the browsers' rules, {status['left_out_rules']} left out; "
          f"blocked on the node during the run: {status['blocked_requests']}")


if __name__ == "__main__":
    main()
