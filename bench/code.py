"""Users' code beside the browser (issue 24): `execute_code` against a client of one's own, in one go.

    cargo build --release -p anchorage
    python3 bench/code.py --runs 20

The snippet: `page.goto` of a local page, then 20 `page.evaluate` calls.
For one server, one session:
- local: a Node process (the runtime's own playwright-core) that, for each
  run, connects over the session's `cdp_url`, runs the snippet and
  disconnects; the time of each run is measured inside it (the process is
  warm after its first run); and the same with a fresh `node` per run,
  timed from outside (what a script run from a shell pays);
- execute_code, cold: `POST /v1/tools/execute-code` with
  `ANCHORAGE_CODE_WARM=0`, so that no runner waits ready: each run is
  forked from the node's zygote as it comes (the default), and, as the
  baseline, each starts a Node process of its own (Node, modules, the
  sandbox) with `ANCHORAGE_CODE_ZYGOTE=off`; timed around the call by this
  script;
- execute_code, warm: the same with a warm runner ready (a pause between
  runs lets it be started again), each run in turn with one of the local
  client's (kept running, driven run by run), so that both meet the machine
  in the same state; the overhead is against those client runs;
- execute_code, one call right after the other: no pause, so each run
  takes the runner started as the previous one ended, still loading (an
  agent or a script calling in a loop);
- then both again through a relay on loopback that holds every chunk
  10 ms each way (20 ms more per round trip), for the client far from the
  fleet;
- runs at once: --concurrency sessions each run a snippet that waits
  4 s; the memory of the runs' processes (proportional set size of every
  process of a run user) is read while they wait, on the server that keeps
  no runner warm (a warm one would count as a run's); the time of a batch
  of busy snippets at 1, 2, 4, … at once gives where the machine saturates.
Ratios against the local client; nothing is asserted.
"""

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import harness  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNTIME = REPO / "runtime"
RUN_UIDS = range(1_900_000_000, 2_000_000_000)

# One run of the snippet by a Node client of one's own: connect, snippet,
# disconnect; its time in ms.
CLIENT_RUN = r"""
const { chromium } = require(process.env.RUNTIME + '/node_modules/playwright-core');
const [cdpUrl, pageUrl] = [process.argv[1], process.argv[2]];
async function once() {
  const started = performance.now();
  const browser = await chromium.connectOverCDP(cdpUrl);
  const context = browser.contexts()[0];
  const page = context.pages()[0] || await context.newPage();
  await page.goto(pageUrl);
  let sum = 0;
  for (let i = 0; i < 20; i++) sum += await page.evaluate((n) => n * 2, i);
  await browser.close();
  return performance.now() - started;
}
"""

# The client for --runs runs in a row, in one process.
LOCAL_CLIENT = CLIENT_RUN + r"""
(async () => {
  const times = [];
  for (let run = 0; run < Number(process.argv[3]); run++) times.push(await once());
  console.log(JSON.stringify(times));
})();
"""

# The same client, kept running and driven one run at a time (a line on
# stdin starts a run; its time comes back as a line), so that its runs can be
# interleaved with execute_code's and both meet the same machine.
PAIRED_CLIENT = CLIENT_RUN + r"""
require('readline').createInterface({ input: process.stdin })
  .on('line', async () => process.stdout.write(JSON.stringify(await once()) + "\n"));
"""


def paired_runs(base, session, page_url, runs, pause):
    """The local client and execute_code with a warm runner, run after run in turn."""
    client = subprocess.Popen(["node", "-e", PAIRED_CLIENT, session["cdp_url"], page_url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, RUNTIME=str(RUNTIME)))
    local, warm = [], []
    try:
        for run in range(runs + 1):
            # Both go on a machine at rest (the runner used last is replaced
            # by a new warm one in the background meanwhile).
            time.sleep(pause)
            client.stdin.write("run\n")
            client.stdin.flush()
            took = float(client.stdout.readline())
            time.sleep(pause)
            warm_took = execute(base, session["id"], snippet(page_url))
            if run > 0:  # the client's first run is its cold one
                local.append(took)
                warm.append(warm_took)
    finally:
        client.kill()
    return local, warm


def snippet(page_url):
    return (f"await page.goto({json.dumps(page_url)});\n"
            "let sum = 0;\nfor (let i = 0; i < 20; i++) sum += await page.evaluate((n) => n * 2, i);\nreturn sum;")


def local_runs(cdp_url, page_url, runs):
    out = subprocess.run(["node", "-e", LOCAL_CLIENT, cdp_url, page_url, str(runs)], capture_output=True, text=True,
                         env=dict(os.environ, RUNTIME=str(RUNTIME)), timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def local_cold_runs(cdp_url, page_url, runs):
    """A fresh Node process per run (start, load Playwright, connect, snippet), timed from outside."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["node", "-e", LOCAL_CLIENT, cdp_url, page_url, "1"], capture_output=True, check=True,
                       env=dict(os.environ, RUNTIME=str(RUNTIME)), timeout=120)
        times.append((time.perf_counter() - started) * 1000)
    return times


def execute(base, session_id, code, timeout=300):
    request = urllib.request.Request(f"{base}/v1/tools/execute-code?sessionId={session_id}", method="POST",
                                     data=json.dumps({"code": code}).encode(),
                                     headers={"anchor-api-key": harness.KEY, "content-type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    took = (time.perf_counter() - started) * 1000
    if not answer.get("success"):
        raise RuntimeError(f"the snippet failed: {answer}")
    return took


def execute_runs(base, session_id, code, runs, pause):
    times = []
    for _ in range(runs):
        if pause:
            time.sleep(pause)
        times.append(execute(base, session_id, code))
    return times


class DelayRelay:
    """A TCP relay on loopback that delivers each chunk `delay` seconds after it arrived, each way."""

    def __init__(self, target_port, delay):
        self.target_port, self.delay = target_port, delay
        self.loop = asyncio.new_event_loop()
        self.port = harness.free_port()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def pipe(reader, writer):
            queue = asyncio.Queue()

            async def deliver():
                while True:
                    due, data = await queue.get()
                    if data is None:
                        writer.close()
                        return
                    wait = due - self.loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    writer.write(data)
                    await writer.drain()

            task = self.loop.create_task(deliver())
            try:
                while data := await reader.read(65536):
                    queue.put_nowait((self.loop.time() + self.delay, data))
            except ConnectionError:
                pass
            queue.put_nowait((0, None))
            await task

        async def handle(client_reader, client_writer):
            try:
                server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer),
                                 return_exceptions=True)

        async def start():
            await asyncio.start_server(handle, "127.0.0.1", self.port)
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()


def run_user_pss_kib():
    """Proportional set size of every process of a run user."""
    total = 0
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid = int(next(line for line in (entry / "status").read_text().splitlines() if line.startswith("Uid:")).split()[1])
            if uid not in RUN_UIDS:
                continue
            total += int(next(line for line in (entry / "smaps_rollup").read_text().splitlines()
                              if line.startswith("Pss:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
    return total


def warm_figures(args, page_url):
    server = harness.Server(args.binary, code_warm=1, pool_size=0)
    try:
        session = server.call("POST", "/v1/sessions", {})["data"]
        local, warm = paired_runs(server.base, session, page_url, args.runs, args.warm_pause)
        server.call("DELETE", f"/v1/sessions/{session['id']}")
    finally:
        server.close()
    return {"local": local, "warm": warm}


def pool_figures(args, page_url):
    """execute_code every --warm-pause seconds with --warm-pool runners kept warm: p50, and the runners the runs got."""
    server = harness.Server(args.binary, code_warm=args.warm_pool, pool_size=0)
    try:
        session = server.call("POST", "/v1/sessions", {})["data"]
        time.sleep(3)  # the pool fills
        times = execute_runs(server.base, session["id"], snippet(page_url), args.runs, args.warm_pause)
        kinds = {kind: int(server.metric(f'anchorage_code_runners_total{{runner="{kind}"}}'))
                 for kind in ("warm", "warming", "cold", "forked")}
        server.call("DELETE", f"/v1/sessions/{session['id']}")
    finally:
        server.close()
    return statistics.median(times), kinds


def wait_for_zygote(server, timeout=90):
    deadline = time.monotonic() + timeout
    while server.metric("anchorage_code_zygote_ready") != 1 and time.monotonic() < deadline:
        time.sleep(0.1)


def zygote_pss_kib():
    """The proportional set size of the zygotes (root's `runner.cjs --zygote` processes), KiB."""
    total = 0
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"--zygote" not in (entry / "cmdline").read_bytes() or entry.stat().st_uid != 0:
                continue
            for line in (entry / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class Sessions:
    """A fresh session for each measurement: Chromium keeps the isolated world of every Playwright client that
    connected to a page, so each connection makes the page's later loads slower (about 0.7 ms per connection
    here), and measurements taken one after the other on one session would not be alike."""

    def __init__(self, server):
        self.server = server
        self.current = None

    def fresh(self):
        self.close()
        self.current = self.server.call("POST", "/v1/sessions", {})["data"]
        return self.current

    def close(self):
        if self.current:
            self.server.call("DELETE", f"/v1/sessions/{self.current['id']}")
            self.current = None


def figures(args, page_url):
    results = {}
    code = snippet(page_url)
    # The baseline first: no zygote, each cold run a Node process of its own.
    server = harness.Server(args.binary, code_warm=0, code_zygote="off", pool_size=0)
    try:
        sessions = Sessions(server)
        results["spawned"] = execute_runs(server.base, sessions.fresh()["id"], code, args.runs, 0)
        sessions.close()
    finally:
        server.close()
    for warm in (0, 1):
        server = harness.Server(args.binary, code_warm=warm, pool_size=0, code_max_runs=max(8, args.concurrency))
        try:
            wait_for_zygote(server)
            sessions = Sessions(server)
            port = int(server.base.rsplit(":", 1)[1])
            if warm == 0:
                results["local"] = local_runs(sessions.fresh()["cdp_url"], page_url, args.runs)
                results["local_cold"] = local_cold_runs(sessions.fresh()["cdp_url"], page_url, args.runs)
                results["cold"] = execute_runs(server.base, sessions.fresh()["id"], code, args.runs, 0)
                relay = DelayRelay(port, 0.010)
                far = sessions.fresh()["cdp_url"].replace(f":{port}/", f":{relay.port}/")
                results["local_far"] = local_runs(far, page_url, args.runs)
                results["cold_far"] = execute_runs(f"http://127.0.0.1:{relay.port}", sessions.fresh()["id"], code,
                                                   args.runs, 0)
                sessions.close()
                results["per_run_mib"], results["zygote_mib"] = memory_per_run(server, args)
            else:
                results["local_paired"], results["warm"] = paired_runs(server.base, sessions.fresh(), page_url,
                                                                       args.runs, args.warm_pause)
                # One call right after the other: each takes the runner
                # started when the last one ended, still loading.
                results["back_to_back"] = execute_runs(server.base, sessions.fresh()["id"], code, args.runs, 0)
                relay = DelayRelay(port, 0.010)
                results["warm_far"] = execute_runs(f"http://127.0.0.1:{relay.port}", sessions.fresh()["id"], code,
                                                   args.runs, args.warm_pause)
                sessions.close()
                results.update(at_once(server, args, page_url))
        finally:
            server.close()
    return results


def memory_per_run(server, args):
    """Memory per run while --concurrency runs wait (on a server that keeps no runner warm, so that every
    process of a run user belongs to one of them)."""
    sessions = [server.call("POST", "/v1/sessions", {})["data"]["id"] for _ in range(args.concurrency)]
    before = run_user_pss_kib()
    with ThreadPoolExecutor(args.concurrency) as pool:
        waiting = [pool.submit(execute, server.base, session, "await new Promise((r) => setTimeout(r, 4000)); return 1;")
                   for session in sessions]
        deadline = time.monotonic() + 30
        while server.metric("anchorage_code_runs") < args.concurrency and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        during = run_user_pss_kib()
        zygote = zygote_pss_kib()
        for future in waiting:
            future.result()
    for session in sessions:
        server.call("DELETE", f"/v1/sessions/{session}")
    return (during - before) / 1024 / args.concurrency, zygote / 1024


def at_once(server, args, page_url):
    """Batch times of busy snippets at growing concurrency."""
    sessions = [server.call("POST", "/v1/sessions", {})["data"]["id"] for _ in range(args.concurrency)]
    busy = ("const started = Date.now(); let n = 0;\n"
            "while (Date.now() - started < 1000) { n += await page.evaluate(() => 1); }\nreturn n;")
    throughput = {}
    level = 1
    while level <= args.concurrency:
        started = time.perf_counter()
        with ThreadPoolExecutor(level) as pool:
            list(pool.map(lambda session: execute(server.base, session, busy), sessions[:level]))
        throughput[level] = level / (time.perf_counter() - started)
        level *= 2
    for session in sessions:
        server.call("DELETE", f"/v1/sessions/{session}")
    return {"throughput": throughput}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(REPO / "target" / "release" / "anchorage"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warm-only", action="store_true",
                        help="only the local client and execute_code with a warm runner (for trying a change)")
    parser.add_argument("--warm-pause", type=float, default=1.0, help="seconds between warm runs (the next runner starts)")
    parser.add_argument("--warm-pool", type=int, default=0,
                        help="only: execute_code every --warm-pause s with this many runners kept warm (p50, runners got)")
    args = parser.parse_args()
    page_url = harness.serve_pages()
    if args.warm_pool:
        p50, kinds = pool_figures(args, page_url)
        print(f"p50 of {args.runs}, one every {args.warm_pause} s, {args.warm_pool} kept warm: {p50:.1f} ms; "
              f"runners: {kinds}")
        return
    if args.warm_only:
        local, warm = (statistics.median(values) for values in warm_figures(args, page_url).values())
        print(f"p50 of {args.runs}: local Node client {local:.1f} ms, execute_code warm {warm:.1f} ms (+{warm - local:.1f} ms)")
        return
    results = figures(args, page_url)
    p50 = {name: statistics.median(values) for name, values in results.items() if isinstance(values, list)}
    print(f"snippet: goto + 20 page.evaluate; {args.runs} runs each; p50 in ms")
    print(f"  local Node client (connect, snippet, disconnect) {p50['local']:8.1f}")
    print(f"  local Node client, a fresh process per run       {p50['local_cold']:8.1f}")
    print(f"  execute_code, no runner ready: forked             {p50['cold']:8.1f}  (+{p50['cold'] - p50['local']:.1f} ms, {p50['cold'] / p50['local']:.2f}x)")
    print(f"  the same, each run its own process (zygote off)   {p50['spawned']:8.1f}  (+{p50['spawned'] - p50['local']:.1f} ms, {p50['spawned'] / p50['local']:.2f}x)")
    print(f"  execute_code, warm runner                        {p50['warm']:8.1f}  (+{p50['warm'] - p50['local']:.1f} ms, {p50['warm'] / p50['local']:.2f}x)")
    print(f"  the same, run in turn with the local client: client {p50['local_paired']:.1f}, execute_code warm "
          f"{p50['warm']:.1f} (+{p50['warm'] - p50['local_paired']:.1f} ms)")
    print(f"  execute_code, one call right after the other      {p50['back_to_back']:8.1f}  "
          f"(+{p50['back_to_back'] - p50['local']:.1f} ms, {p50['back_to_back'] / p50['local']:.2f}x)")
    print("with 20 ms more per round trip between client and server:")
    print(f"  local Node client                                {p50['local_far']:8.1f}")
    print(f"  execute_code, no runner ready: forked             {p50['cold_far']:8.1f}  ({p50['cold_far'] / p50['local_far']:.2f}x of the client's time)")
    print(f"  execute_code, warm runner                        {p50['warm_far']:8.1f}  ({p50['warm_far'] / p50['local_far']:.2f}x of the client's time)")
    print(f"memory per run (PSS of its processes, {args.concurrency} waiting at once): {results['per_run_mib']:.1f} MiB; "
          f"the zygote (once per node, with them): {results['zygote_mib']:.1f} MiB")
    print("busy snippets (1 s of page.evaluate calls each), runs per second by runs at once:")
    for level, rate in results["throughput"].items():
        print(f"  {level:3d} at once: {rate:5.2f} runs/s")


if __name__ == "__main__":
    main()
