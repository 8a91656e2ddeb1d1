"""Sessions per machine (issue 23): context sessions against browser sessions, in one go.

    cargo build --release -p anchorage
    python3 bench/density.py --sessions 40 --batch 100   # 40 of each kind one after another; batches of 100

For each isolation (`browser`, then `context`; one server each, pool off):
start --sessions sessions one by one through `POST /v1/sessions`, each
opening a small local page, and after each one check it answers a
`Runtime.evaluate` over its own `cdp_url`. Reports:
- memory per session: the drop in the machine's `MemAvailable` from before
  the first start to after the last, divided by the count (every process
  counts: browsers, hosts, renderers, the server), and the server's own
  reading of its browsers (`anchorage_memory_in_use_bytes`) / count;
- start time: median and p90 of `POST /v1/sessions` (the first context
  session of a run launches its host; the rest only make a context);
- the full client cycle on one fresh session of each kind (connect, goto,
  title, disconnect, end), median of --cycles;
- a start when something is ready for it (browser: the warm pool; context:
  the host's spare context), median of --handouts;
- a batch of --batch: from the POST to every item running.
Ratios are context against browser. Asserts nothing about time.

    python3 bench/density.py --scale 900 --memory-mib 20000

With --scale, the run measures how many sessions fit instead: for each
isolation, one server with `ANCHORAGE_MAX_MEMORY_MIB` at --memory-mib
starts sessions one by one (each opening the page and answering a
`Runtime.evaluate` over its own `cdp_url`) until --scale run, or a start is
still waiting after --wait seconds (the memory limit was reached), or the
machine has less than --floor-mib available (a guard for the run itself). Then
every session is asked again, and the count that answers, the memory per
session (`MemAvailable` drop, and the server's own reading,
`anchorage_memory_in_use_bytes`) and the ratio of the counts are reported.
--contexts-per-host sets `ANCHORAGE_CONTEXTS_PER_HOST` for it, and
--kinds context runs one kind only.
"""

import argparse
import http.server
import json
import pathlib
import statistics
import sys
import threading
import time
import urllib.error

from playwright.sync_api import sync_playwright
from websockets.sync.client import connect as websocket_connect

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import Server  # noqa: E402

PAGE = b"<!doctype html><title>density</title><h1>a small page</h1><p>" + b"text " * 200


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *_):
        pass


def mem_available_kib():
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def evaluates(cdp_url):
    """Connects to the session over its cdp_url and evaluates on its page."""
    with websocket_connect(cdp_url, open_timeout=30, max_size=None) as socket:
        def call(message_id, method, params, session=None):
            message = {"id": message_id, "method": method, "params": params}
            if session:
                message["sessionId"] = session
            socket.send(json.dumps(message))
            while True:
                answer = json.loads(socket.recv())
                if answer.get("id") == message_id:
                    return answer["result"]

        targets = call(1, "Target.getTargets", {})["targetInfos"]
        page = next(info for info in targets if info["type"] == "page")
        session = call(2, "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
        # The start answers once the page is asked for; it may still load.
        deadline = time.monotonic() + 10
        for number in range(3, 10_000):
            value = call(number, "Runtime.evaluate", {"expression": "document.title", "returnByValue": True}, session)
            if value["result"].get("value") == "density" or time.monotonic() > deadline:
                return value["result"].get("value") == "density"
            time.sleep(0.02)
        return False


def fill(binary, isolation, count, url):
    server = Server(binary, session_isolation=isolation, pool_size=0, max_sessions=count + 4,
                    launch_concurrency=2)
    ids, starts = [], []
    try:
        # What the previous server freed is back before the count begins.
        time.sleep(5)
        before = mem_available_kib()
        for _ in range(count):
            began = time.perf_counter()
            data = server.call("POST", "/v1/sessions", {"session": {"initial_url": url}})["data"]
            starts.append(time.perf_counter() - began)
            ids.append(data["id"])
            assert evaluates(data["cdp_url"]), "a session did not answer"
        time.sleep(2)
        used = before - mem_available_kib()
        read = server.metric("anchorage_memory_in_use_bytes")
        return {"per_session_mib": used / count / 1024, "read_mib": read / count / 1024 / 1024, "starts": starts}
    finally:
        for session_id in ids:
            server.call("DELETE", f"/v1/sessions/{session_id}")
        server.close()


def reading_ms(data_dir):
    """One reading as the server takes it (every process of every group
    whose leader's command line names a directory under the server's
    browsers dir; `Pss` of `smaps_rollup` each), timed; and its count."""
    marker = f"{data_dir}/browsers/".encode()
    began = time.perf_counter()
    groups, members = set(), []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            group = int(stat[stat.rindex(")") + 2:].split()[2])
            if group == int(entry.name) and marker in (entry / "cmdline").read_bytes():
                groups.add(group)
            members.append((entry, group))
        except (OSError, ValueError):
            continue
    count = 0
    for entry, group in members:
        if group in groups:
            try:
                (entry / "smaps_rollup").read_text()
                count += 1
            except OSError:
                pass
    return (time.perf_counter() - began) * 1000, count


def scale(binary, isolation, cap, memory_mib, wait, url, floor_mib, per_host):
    """Starts sessions until `cap` run or one waits `wait` seconds."""
    server = Server(binary, session_isolation=isolation, pool_size=0, max_sessions=cap + 10,
                    launch_concurrency=2, max_memory_mib=memory_mib, contexts_per_host=per_host)
    ids, urls = [], {}
    try:
        before = mem_available_kib()
        began = time.perf_counter()
        while len(ids) < cap and mem_available_kib() > floor_mib * 1024:
            try:
                # No idle end while the others start (the default is 5 minutes).
                data = server.call("POST", "/v1/sessions",
                                   {"session": {"initial_url": url, "timeout": {"idle_timeout": -1}}},
                                   timeout=wait)["data"]
            except (TimeoutError, urllib.error.URLError):
                break
            ids.append(data["id"])
            urls[data["id"]] = data["cdp_url"]
            assert evaluates(data["cdp_url"]), "a session did not answer"
            if len(ids) % 50 == 0:
                print(f"  {isolation}: {len(ids)} sessions, {time.perf_counter() - began:.0f} s, "
                      f"MemAvailable {mem_available_kib() // 1024} MiB", flush=True)
        filled = time.perf_counter() - began
        time.sleep(3)
        used = before - mem_available_kib()
        read = server.metric("anchorage_memory_in_use_bytes")
        took, processes = reading_ms(server.data_dir)
        answering = 0
        for session_id in ids:
            data = server.call("GET", f"/v1/sessions/{session_id}")["data"]
            try:
                if data["status"] == "running" and evaluates(urls[session_id]):
                    answering += 1
            except Exception as error:  # noqa: BLE001 (a session that cannot answer is counted out)
                print(f"  {isolation}: {session_id} did not answer: {error}", flush=True)
        return {"count": len(ids), "answering": answering, "mib": used / max(len(ids), 1) / 1024,
                "read_mib": read / max(len(ids), 1) / 1024 / 1024, "seconds": filled,
                "reading": f"{took:.0f} ms for {processes} processes"}
    finally:
        for session_id in ids:
            try:
                server.call("DELETE", f"/v1/sessions/{session_id}")
            except urllib.error.URLError:
                pass
        server.close()


def handouts(binary, isolation, rounds):
    """Starts when something is ready for them: the warm pool's browser
    (browser mode, pool of 2) or the host's spare context (context mode,
    with one session already on the host); a pause between starts lets the
    pool or the spare refill."""
    server = Server(binary, session_isolation=isolation, pool_size=2)
    ids, times = [], []
    try:
        ids.append(server.call("POST", "/v1/sessions", {})["data"]["id"])
        for _ in range(rounds):
            time.sleep(1.5)
            began = time.perf_counter()
            ids.append(server.call("POST", "/v1/sessions", {})["data"]["id"])
            times.append(time.perf_counter() - began)
        return times
    finally:
        for session_id in ids:
            server.call("DELETE", f"/v1/sessions/{session_id}")
        server.close()


def batch_ready(binary, isolation, count):
    """Seconds from `POST /v1/batch-sessions` of `count` to all running."""
    server = Server(binary, session_isolation=isolation, pool_size=0, max_sessions=count + 4,
                    launch_concurrency=2)
    try:
        began = time.perf_counter()
        batch_id = server.call("POST", "/v1/batch-sessions", {"count": count})["data"]["batch_id"]
        while True:
            batch = server.call("GET", f"/v1/batch-sessions/{batch_id}")["data"]
            if batch["completed_requests"] + batch["failed_requests"] >= count:
                took = time.perf_counter() - began
                break
            time.sleep(0.05)
        server.call("DELETE", f"/v1/batch-sessions/{batch_id}")
        return took
    finally:
        server.close()


def cycle(binary, isolation, url, rounds):
    server = Server(binary, session_isolation=isolation, pool_size=0)
    times = []
    try:
        # One session of the kind runs throughout, so a context session's
        # host is up (as on a busy node) and the cycle measures the session.
        keep = server.call("POST", "/v1/sessions", {})["data"]["id"]
        with sync_playwright() as playwright:
            for _ in range(rounds):
                began = time.perf_counter()
                data = server.call("POST", "/v1/sessions", {})["data"]
                browser = playwright.chromium.connect_over_cdp(data["cdp_url"])
                page = browser.contexts[0].pages[0]
                page.goto(url)
                assert page.title() == "density"
                browser.close()
                server.call("DELETE", f"/v1/sessions/{data['id']}")
                times.append(time.perf_counter() - began)
        server.call("DELETE", f"/v1/sessions/{keep}")
        return times
    finally:
        server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/anchorage")
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--handouts", type=int, default=8)
    parser.add_argument("--batch", type=int, default=30)
    parser.add_argument("--scale", type=int, default=0)
    parser.add_argument("--memory-mib", type=int, default=20000)
    parser.add_argument("--wait", type=float, default=45)
    parser.add_argument("--floor-mib", type=int, default=1500)
    parser.add_argument("--kinds", default="context,browser")
    parser.add_argument("--contexts-per-host", type=int, default=20)
    args = parser.parse_args()
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{pages.server_address[1]}/"

    if args.scale:
        print(f"at most {args.scale} sessions of each kind, ANCHORAGE_MAX_MEMORY_MIB={args.memory_mib}, "
              f"ANCHORAGE_CONTEXTS_PER_HOST={args.contexts_per_host}", flush=True)
        reached = {kind: scale(args.binary, kind, args.scale, args.memory_mib, args.wait, url, args.floor_mib,
                         args.contexts_per_host)
                   for kind in args.kinds.split(",")}
        print(f"{'':>10} {'sessions':>9} {'answering':>10} {'MiB/session':>12} {'read MiB/session':>17} {'fill s':>7}"
              "  one reading")
        for kind, row in reached.items():
            print(f"{kind:>10} {row['count']:>9} {row['answering']:>10} {row['mib']:>12.1f} {row['read_mib']:>17.1f} "
                  f"{row['seconds']:>7.0f}  {row['reading']}")
        if len(reached) == 2:
            print(f"sessions, context / browser: "
                  f"{reached['context']['answering'] / max(reached['browser']['answering'], 1):.2f}x")
        return

    results = {kind: fill(args.binary, kind, args.sessions, url) for kind in ("browser", "context")}
    cycles = {kind: cycle(args.binary, kind, url, args.cycles) for kind in ("browser", "context")}
    ready = {kind: handouts(args.binary, kind, args.handouts) for kind in ("browser", "context")}
    batches = {kind: batch_ready(args.binary, kind, args.batch) for kind in ("browser", "context")}
    print(f"{args.sessions} sessions of each kind, each with a page that answers Runtime.evaluate")
    print(f"{'':>10} {'MiB/session':>12} {'read MiB/s.':>12} {'start p50 ms':>13} {'start p90 ms':>13} {'cycle p50 ms':>13}")
    for kind in ("browser", "context"):
        starts = sorted(results[kind]["starts"])
        print(f"{kind:>10} {results[kind]['per_session_mib']:>12.1f} {results[kind]['read_mib']:>12.1f} "
              f"{statistics.median(starts) * 1000:>13.0f} "
              f"{starts[int(len(starts) * 0.9)] * 1000:>13.0f} {statistics.median(cycles[kind]) * 1000:>13.0f}")
    ratio = results["browser"]["per_session_mib"] / max(results["context"]["per_session_mib"], 0.1)
    print(f"sessions per GiB, context / browser: {ratio:.2f}x")
    print(f"start p50, context / browser: "
          f"{statistics.median(results['context']['starts']) / statistics.median(results['browser']['starts']):.2f}x")
    print(f"client cycle p50, context / browser: "
          f"{statistics.median(cycles['context']) / statistics.median(cycles['browser']):.2f}x")
    for kind in ("browser", "context"):
        print(f"start with one ready ({'pooled browser' if kind == 'browser' else 'spare context'}), {kind}: "
              f"p50 {statistics.median(ready[kind]) * 1000:.0f} ms")
    print(f"batch of {args.batch} ready: browser {batches['browser']:.1f} s, context {batches['context']:.1f} s, "
          f"browser / context {batches['browser'] / batches['context']:.2f}x")


if __name__ == "__main__":
    main()
