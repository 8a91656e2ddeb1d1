"""anchorage benchmark harness: every figure of BENCHMARKS.md in one run,
each next to its baseline measured in the same run on the same machine.

    cargo build --release -p anchorage
    bench/browserless.sh install                       # optional, for the Browserless column
    python3 bench/harness.py --browserless             # full run (about 10 minutes)
    python3 bench/harness.py --smoke                   # a few runs of everything (used by the tests)

Client steps (the same for every target): connect over CDP (Playwright's
`connect_over_cdp`) -> new page -> goto a local test page -> read its title ->
end (close the connection; for anchorage also `DELETE` the session; for a
browser the harness launched, kill it). Reports; asserts nothing about time.
"""

import argparse
import base64
import contextlib
import http.server
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from playwright.sync_api import sync_playwright
from websockets.sync.client import connect as ws_connect

REPO = pathlib.Path(__file__).resolve().parents[1]
KEY = "bench-key-0123456789"
TITLE = "anchorage bench page"
# The browser binary behind Debian's launcher script, as anchorage runs it.
CHROMIUM = next((path for path in ("/usr/lib/chromium/chromium", shutil.which("chromium")) if path and os.path.exists(path)), "chromium")
FRAME_LIMIT = 512 * 1024 * 1024
# Pool-on starts arrive this far apart: the pool refills (and its fresh
# browsers settle) in between, as between real arrivals.
POOL_PAUSE = 2.0


# ---------------------------------------------------------------- helpers

def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values):
    return {"p50": statistics.median(values), "p90": percentile(values, 0.9), "p99": percentile(values, 0.99), "runs": len(values)}


class Pages(http.server.BaseHTTPRequestHandler):
    """The local test pages: `/` (a title) and `/noise` (a canvas of random
    pixels, so that a screenshot of it is 1 to 2 MB of PNG)."""

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/noise"):
            body = ("<!doctype html><title>noise</title><style>body{margin:0}</style>"
                    "<canvas id=c width=800 height=560></canvas><script>"
                    "const c=document.getElementById('c').getContext('2d');"
                    "const d=c.createImageData(800,560);"
                    "for(let i=0;i<d.data.length;i++)d.data[i]=(i%4==3)?255:Math.random()*256;"
                    "c.putImageData(d,0,0);document.title='noise ready';</script>")
        else:
            body = f"<!doctype html><title>{TITLE}</title><h1>bench</h1>"
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def serve_pages():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, process=None, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if (process and process.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}")
            time.sleep(0.05)


# Every server of a run finds the ad blocking ruleset one of them indexed
# (kept across runs in the temp dir): no server's first seconds are spent
# launching the index browser beside what a benchmark measures.
ADBLOCK_INDEX_DIR = os.path.join(tempfile.gettempdir(), "anchorage-bench-adblock-index")


class Server:
    """An anchorage server on a free port with its own data dir."""

    def __init__(self, binary, log_file=None, **settings):
        self.data_dir = tempfile.mkdtemp(prefix="anchorage-bench-")
        port = free_port()
        env = dict(os.environ, ANCHORAGE_LISTEN=f"127.0.0.1:{port}", ANCHORAGE_DATA_DIR=self.data_dir,
                   ANCHORAGE_API_KEY=KEY, ANCHORAGE_LOG="warn", ANCHORAGE_ADBLOCK_INDEX_DIR=ADBLOCK_INDEX_DIR)
        env.update({f"ANCHORAGE_{name.upper()}": str(value) for name, value in settings.items()})
        self.process = subprocess.Popen([binary, "serve"], env=env, stderr=log_file or subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        wait_for_port(port, self.process)
        if str(settings.get("adblock_index_ahead", "on")) != "off":
            self.wait_for_adblock_index()

    def wait_for_adblock_index(self, timeout=90):
        """Waits until the node's ad blocking ruleset is indexed (found kept, or made by the browser the node
        launches for it as it starts), so that browser is gone before anything is measured."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.call("GET", "/v1/adblock")["data"]
            if not status["active"] or status["indexed_ahead"] or status.get("index_error"):
                return
            time.sleep(0.1)

    def call(self, method, path, body=None, timeout=300):
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"anchor-api-key": KEY, "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def metric(self, series):
        """The value of one series on `/metrics` (a name, labels included), 0 if absent."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=30) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(series + " "):
                    return float(line.split()[-1])
        return 0.0

    def rss_kib(self):
        for line in pathlib.Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def close(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        shutil.rmtree(self.data_dir, ignore_errors=True)


class RawBrowser:
    """A Chromium launched by the harness itself."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="bench-raw-")
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             # The window anchorage gives a default session (a 1440x900 viewport).
             "--window-size=1440,987", "about:blank"],
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        for line in self.process.stderr:
            if "DevTools listening on " in line:
                self.ws = line.split("DevTools listening on ", 1)[1].strip()
                break
        threading.Thread(target=lambda: [None for _ in self.process.stderr], daemon=True).start()

    def close(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def group_pss_kib(pgid):
    total = 0
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in (entry / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


# ---------------------------------------------------------------- measurements

def client_steps(playwright, ws, page_url):
    browser = playwright.chromium.connect_over_cdp(ws)
    context = browser.contexts[0] if browser.contexts else browser.new_context()
    page = context.new_page()
    page.goto(page_url)
    title = page.title()
    assert title == TITLE, title
    page.close()
    browser.close()


def lifecycle_ours(playwright, server, runs, page_url, pool_pause):
    totals, posts = [], []
    for _ in range(runs):
        if pool_pause:
            time.sleep(pool_pause)  # let the pool refill, as between real arrivals
        started = time.perf_counter()
        session = server.call("POST", "/v1/sessions", {})["data"]
        posts.append((time.perf_counter() - started) * 1000)
        client_steps(playwright, session["cdp_url"], page_url)
        server.call("DELETE", f"/v1/sessions/{session['id']}")
        totals.append((time.perf_counter() - started) * 1000)
    return totals, posts


def lifecycle_raw(playwright, runs, page_url):
    totals = []
    for _ in range(runs):
        started = time.perf_counter()
        browser = RawBrowser()
        client_steps(playwright, browser.ws, page_url)
        browser.close()
        totals.append((time.perf_counter() - started) * 1000)
    return totals


def lifecycle_floor(playwright, runs, page_url):
    """The floor: for each run a fresh browser, launched and left to settle
    before the clock starts (what a pooled browser is at its best), driven
    through the same steps, and not counted while it is killed."""
    totals = []
    for _ in range(runs):
        browser = RawBrowser()
        time.sleep(POOL_PAUSE)
        try:
            started = time.perf_counter()
            client_steps(playwright, browser.ws, page_url)
            totals.append((time.perf_counter() - started) * 1000)
        finally:
            browser.close()
    return totals


def lifecycle_browserless(playwright, runs, page_url, url):
    totals = []
    for _ in range(runs):
        started = time.perf_counter()
        client_steps(playwright, url, page_url)
        totals.append((time.perf_counter() - started) * 1000)
    return totals


def batch_time(server, count):
    started = time.perf_counter()
    batch_id = server.call("POST", "/v1/batch-sessions", {"count": count})["data"]["batch_id"]
    while True:
        batch = server.call("GET", f"/v1/batch-sessions/{batch_id}")["data"]
        if batch["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.02)
    elapsed = (time.perf_counter() - started) * 1000
    assert batch["completed_requests"] == count, batch
    server.call("DELETE", f"/v1/batch-sessions/{batch_id}")
    return elapsed


def big_batch_get(binary, items, gets):
    """`GET /v1/batch-sessions/{id}` of a batch of ITEMS (at most one browser
    runs: ANCHORAGE_MAX_SESSIONS=1), against `GET /v1/sessions/all/status`."""
    server = Server(binary, pool_size=0, max_sessions=1)
    try:
        batch_id = server.call("POST", "/v1/batch-sessions", {"count": items})["data"]["batch_id"]
        big, small = [], []
        for _ in range(gets):
            started = time.perf_counter()
            answer = server.call("GET", f"/v1/batch-sessions/{batch_id}")
            big.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            server.call("GET", "/v1/sessions/all/status")
            small.append((time.perf_counter() - started) * 1000)
        assert len(answer["data"]["sessions"]) == items
        server.call("PATCH", f"/v1/batch-sessions/{batch_id}", {"status": "cancelled"})
        return summary(big), summary(small)
    finally:
        server.close()


def usable_raw_browser():
    """A RawBrowser that has answered a command: anchorage counts a session
    `running` only once its browser answers on the DevTools pipe, which is
    later than Chromium's "DevTools listening" line (about 250 ms later on
    this machine), so the baseline waits for the same."""
    browser = RawBrowser()
    cdp = Cdp(browser.ws)
    cdp.call("Browser.getVersion")
    cdp.close()
    return browser


def direct_batch_time(count, parallelism):
    """COUNT browsers launched by the harness, PARALLELISM at a time, all
    kept running until the last one is up and answering (as a batch's are)."""
    import concurrent.futures
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallelism) as pool:
        browsers = list(pool.map(lambda _: usable_raw_browser(), range(count)))
    elapsed = (time.perf_counter() - started) * 1000
    for browser in browsers:
        browser.close()
    return elapsed


class Cdp:
    """A bare CDP connection, so the proxy is measured without a client library."""

    def __init__(self, url):
        self.socket = ws_connect(url, max_size=FRAME_LIMIT, compression=None, open_timeout=30)
        self.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 0

    def call(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            answer = json.loads(self.socket.recv())
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"], answer

    def page_session(self):
        targets = self.call("Target.getTargets")[0]["targetInfos"]
        target = next(info["targetId"] for info in targets if info["type"] == "page")
        return self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[0]["sessionId"]

    def close(self):
        self.socket.close()


def proxy_figures(server, page_url, iterations, screenshots):
    # anchorage's browsers have no port (DevTools is a pipe the server holds),
    # so "direct" is a browser the harness launches with a port of its own.
    session = server.call("POST", "/v1/sessions", {})["data"]
    raw = RawBrowser()
    proxied, direct = Cdp(session["cdp_url"]), Cdp(raw.ws)
    try:
        sessions = {}
        for name, cdp in (("proxy", proxied), ("direct", direct)):
            sessions[name] = cdp.page_session()
        # Warm-up: the first evaluation in a page creates its context.
        for name, cdp in (("proxy", proxied), ("direct", direct)):
            for _ in range(5):
                cdp.call("Runtime.evaluate", {"expression": "1 + 1"}, sessions[name])
        # Round trips, alternating so that both see the same machine.
        rtt = {"proxy": [], "direct": []}
        for _ in range(iterations):
            for name, cdp in (("proxy", proxied), ("direct", direct)):
                started = time.perf_counter()
                cdp.call("Runtime.evaluate", {"expression": "1 + 1"}, sessions[name])
                rtt[name].append((time.perf_counter() - started) * 1000)
        # Screenshots of 1 to 2 MB.
        for name, cdp in (("proxy", proxied), ("direct", direct)):
            cdp.call("Page.navigate", {"url": f"{page_url}/noise"}, sessions[name])
            deadline = time.monotonic() + 30
            while cdp.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                           sessions[name])[0]["result"].get("value") != "noise ready":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        for name, cdp in (("proxy", proxied), ("direct", direct)):
            cdp.call("Page.captureScreenshot", {"format": "png"}, sessions[name])
        throughput, sizes = {"proxy": [], "direct": []}, []
        for _ in range(screenshots):
            for name, cdp in (("proxy", proxied), ("direct", direct)):
                started = time.perf_counter()
                result, _ = cdp.call("Page.captureScreenshot", {"format": "png"}, sessions[name])
                elapsed = time.perf_counter() - started
                size = len(result["data"])
                sizes.append(len(base64.b64decode(result["data"])))
                throughput[name].append(size / elapsed / 1e6)
        return rtt, throughput, sizes
    finally:
        proxied.close()
        direct.close()
        raw.close()
        server.call("DELETE", f"/v1/sessions/{session['id']}")


def memory_figures(server, sessions):
    time.sleep(1)
    idle = server.rss_kib()
    batch_id = server.call("POST", "/v1/batch-sessions", {"count": sessions})["data"]["batch_id"]
    while server.call("GET", f"/v1/batch-sessions/{batch_id}")["data"]["status"] not in ("completed", "failed"):
        time.sleep(0.2)
    time.sleep(2)
    loaded = server.rss_kib()
    batch = server.call("GET", f"/v1/batch-sessions/{batch_id}")["data"]
    pss = []
    for item in batch["sessions"]:
        port_file = pathlib.Path(server.data_dir) / "browsers" / item["session_id"].replace("-", "") / "profile"
        leaders = [int(entry.name) for entry in pathlib.Path("/proc").iterdir() if entry.name.isdigit()
                   and str(port_file).encode() in _cmdline(entry) and _is_leader(entry)]
        pss.extend(group_pss_kib(leader) for leader in leaders)
    server.call("DELETE", f"/v1/batch-sessions/{batch_id}")
    return idle, loaded, pss


def _cmdline(entry):
    try:
        return (entry / "cmdline").read_bytes()
    except OSError:
        return b""


def _is_leader(entry):
    try:
        fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[2]) == int(entry.name) and b"--type=" not in _cmdline(entry)
    except (OSError, ValueError, IndexError):
        return False


# ---------------------------------------------------------------- report

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batches", default="10,50")
    parser.add_argument("--memory-sessions", type=int, default=50)
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--screenshots", type=int, default=20)
    parser.add_argument("--big-batch", type=int, default=1000, help="items of the batch whose GET is timed")
    parser.add_argument("--browserless", nargs="?", const="auto", default=None,
                        help="include Browserless: a ws URL, or 'auto' to start bench/browserless.sh run")
    parser.add_argument("--binary", default=str(REPO / "target" / "release" / "anchorage"))
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--smoke", action="store_true", help="a few runs of everything, to keep the harness working")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.batches, args.memory_sessions, args.round_trips, args.screenshots = 3, "2", 2, 20, 2
        args.big_batch = 10
    batches = [int(count) for count in args.batches.split(",") if count]
    parallelism = os.cpu_count() or 1
    page_url = serve_pages()
    figures = {"machine": f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB",
               "runs": args.runs}
    browserless_process = None
    with sync_playwright() as playwright:
        lifecycle_step = f"{page_url}/"
        pooled = Server(args.binary, pool_size=2, max_sessions=max(batches + [4]) + 4)
        cold = Server(args.binary, pool_size=0, max_sessions=max(args.memory_sessions, 4) + 4)
        try:
            # Warm both (the first launch of each measures the window frame).
            for server in (pooled, cold):
                client_steps(playwright, server.call("POST", "/v1/sessions", {})["data"]["cdp_url"], lifecycle_step)
                server.call("DELETE", "/v1/sessions/all")
            figures["floor"] = summary(lifecycle_floor(playwright, args.runs, lifecycle_step))
            totals, posts = lifecycle_ours(playwright, pooled, args.runs, lifecycle_step, pool_pause=POOL_PAUSE)
            figures["pool_on"], figures["post_pool_on"] = summary(totals), summary(posts)
            totals, posts = lifecycle_ours(playwright, cold, args.runs, lifecycle_step, pool_pause=0)
            figures["pool_off"], figures["post_pool_off"] = summary(totals), summary(posts)
            figures["raw"] = summary(lifecycle_raw(playwright, args.runs, lifecycle_step))
            if args.browserless:
                url = args.browserless
                if url == "auto":
                    port = free_port()
                    browserless_process = subprocess.Popen(
                        [str(REPO / "bench" / "browserless.sh"), "run"], env=dict(os.environ, PORT=str(port), TOKEN="bench"),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                    wait_for_port(port, browserless_process)
                    url = f"ws://127.0.0.1:{port}/chromium?token=bench"
                lifecycle_browserless(playwright, 2, lifecycle_step, url)  # warm-up
                figures["browserless"] = summary(lifecycle_browserless(playwright, args.runs, lifecycle_step, url))
            figures["batches"] = {}
            for count in batches:
                direct = direct_batch_time(count, parallelism)
                ours = batch_time(pooled, count)
                figures["batches"][count] = {"ours_ms": ours, "direct_ms": direct}
            big, small = big_batch_get(args.binary, args.big_batch, 10 if args.smoke else 50)
            figures["big_batch_get"] = {"items": args.big_batch, "batch": big, "baseline": small}
            rtt, throughput, sizes = proxy_figures(cold, page_url, args.round_trips, args.screenshots)
            figures["rtt"] = {name: summary(values) for name, values in rtt.items()}
            figures["screenshot_mb_s"] = {name: statistics.median(values) for name, values in throughput.items()}
            figures["screenshot_bytes"] = statistics.median(sizes)
            idle, loaded, pss = memory_figures(cold, args.memory_sessions)
            figures["memory"] = {"idle_rss_kib": idle, "loaded_rss_kib": loaded, "sessions": args.memory_sessions,
                                 "per_session_kib": (loaded - idle) / args.memory_sessions,
                                 "browser_pss_kib": statistics.median(pss) if pss else None}
        finally:
            pooled.close()
            cold.close()
            if browserless_process:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(browserless_process.pid, signal.SIGTERM)
                browserless_process.wait(timeout=60)
    report(figures, parallelism)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))


def report(figures, parallelism):
    floor = figures["floor"]["p50"]
    rows = [("anchorage, pool on", "pool_on"), ("anchorage, pool off", "pool_off"),
            ("raw Chromium, launched by the harness", "raw"), ("pre-launched browser (the floor)", "floor")]
    if "browserless" in figures:
        rows.append(("Browserless 2.42.0", "browserless"))
    print(f"Machine: {figures['machine']}; {figures['runs']} runs per lifecycle row.\n")
    print("| lifecycle: POST -> connect -> new page -> goto -> title -> end | p50 ms | p90 ms | p99 ms | p50 / floor |")
    print("| --- | --- | --- | --- | --- |")
    for label, key in rows:
        value = figures[key]
        print(f"| {label} | {value['p50']:.1f} | {value['p90']:.1f} | {value['p99']:.1f} | {value['p50'] / floor:.2f} |")
    print()
    print("| target | measured | goal | met |")
    print("| --- | --- | --- | --- |")
    def row(label, measured, goal, met):
        shown = "—" if met is None else ("yes" if met else "no")
        print(f"| {label} | {measured} | {goal} | {shown} |")
    pool_ratio = figures["pool_on"]["p50"] / floor
    row("lifecycle, pool on / floor (p50)", f"{pool_ratio:.2f}", "<= 1.2", pool_ratio <= 1.2)
    if "browserless" in figures:
        ratio = figures["pool_on"]["p50"] / figures["browserless"]["p50"]
        row("lifecycle, pool on / Browserless (p50)", f"{ratio:.2f}", "<= 0.25", ratio <= 0.25)
    ratio = figures["pool_off"]["p50"] / figures["raw"]["p50"]
    row("lifecycle, pool off / raw Chromium (p50)", f"{ratio:.2f}", "<= 1.1", ratio <= 1.1)
    post = figures["post_pool_on"]["p50"]
    row("`POST /v1/sessions` answer, pool on (p50)", f"{post:.1f} ms (pool off: {figures['post_pool_off']['p50']:.1f} ms)", "< 15 ms", post < 15)
    for count, batch in figures["batches"].items():
        ratio = batch["ours_ms"] / batch["direct_ms"]
        gated = int(count) == 50
        row(f"batch of {count} all `completed` / direct launch, {parallelism} at a time",
            f"{batch['ours_ms']:.0f} ms / {batch['direct_ms']:.0f} ms = {ratio:.2f}",
            "<= 1.1" if gated else "(reported)", ratio <= 1.1 if gated else None)
    big = figures["big_batch_get"]
    row(f"`GET /v1/batch-sessions/{{id}}`, {big['items']} items, p50 (p90)",
        f"{big['batch']['p50']:.1f} ms ({big['batch']['p90']:.1f} ms); `GET /v1/sessions/all/status`: {big['baseline']['p50']:.1f} ms",
        "(reported)", None)
    extra = figures["rtt"]["proxy"]["p50"] - figures["rtt"]["direct"]["p50"]
    row("`Runtime.evaluate` round trip, proxy - direct (p50)",
        f"+{extra:.3f} ms ({figures['rtt']['proxy']['p50']:.3f} vs {figures['rtt']['direct']['p50']:.3f}; p99 "
        f"{figures['rtt']['proxy']['p99']:.3f} vs {figures['rtt']['direct']['p99']:.3f})", "<= +0.2 ms", extra <= 0.2)
    shots = figures["screenshot_mb_s"]
    ratio = shots["proxy"] / shots["direct"]
    row(f"screenshot throughput ({figures['screenshot_bytes'] / 1e6:.1f} MB PNG), proxy / direct",
        f"{shots['proxy']:.0f} / {shots['direct']:.0f} MB/s = {ratio:.2f}", ">= 0.9", ratio >= 0.9)
    memory = figures["memory"]
    per = memory["per_session_kib"] / 1024
    row(f"server RSS per idle session ({memory['idle_rss_kib'] / 1024:.1f} MiB idle, "
        f"{memory['loaded_rss_kib'] / 1024:.1f} MiB with {memory['sessions']})", f"{per:.2f} MiB", "< 2 MiB", per < 2)
    if memory["browser_pss_kib"]:
        print(f"\nEach idle browser's PSS (median, all its processes): {memory['browser_pss_kib'] / 1024:.0f} MiB.")


if __name__ == "__main__":
    sys.exit(main())
