"""Time from `POST /v1/sessions` to its answer, against a baseline measured
in the same run: launching the same Chromium by hand until it prints its
DevTools endpoint (what any server must wait for at the least).

    cargo build --release -p anchorage && python3 bench/start_latency.py [--runs 20]

Prints one Markdown table row per measurement and the ratio. Nothing here
asserts on time; it reports.
"""

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[1]
KEY = "bench-key-0123456789"


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def call(base, method, path, body=None):
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"anchor-api-key": KEY, "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def server_process(extra_env):
    """A release anchorage on a free port with a temp data dir; yields its base URL."""
    data_dir = tempfile.mkdtemp(prefix="anchorage-bench-")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, ANCHORAGE_LISTEN=f"127.0.0.1:{port}", ANCHORAGE_DATA_DIR=data_dir,
               ANCHORAGE_API_KEY=KEY, ANCHORAGE_LOG="warn", **extra_env)
    server = subprocess.Popen([str(REPO / "target/release/anchorage"), "serve"], env=env,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)


def measure_server(runs):
    with server_process({}) as base:
        # One warm-up start (the first launch also measures the window frame).
        call(base, "DELETE", f"/v1/sessions/{call(base, 'POST', '/v1/sessions', {})['data']['id']}")
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            session = call(base, "POST", "/v1/sessions", {})
            times.append((time.perf_counter() - started) * 1000)
            call(base, "DELETE", f"/v1/sessions/{session['data']['id']}")
        return times


def raw_launch(keep=None):
    """Launches Chromium by hand until DevTools is up; returns milliseconds.
    With `keep` (a list), the browser is left running and recorded there for
    the caller to end with `end_raw`; otherwise it is ended at once."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="bench-raw-")
    started = time.perf_counter()
    process = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in process.stderr:
        if "DevTools listening on ws://" in line:
            break
    elapsed = (time.perf_counter() - started) * 1000
    if keep is None:
        end_raw((process, profile))
    else:
        keep.append((process, profile))
    return elapsed


def end_raw(launched):
    process, profile = launched
    os.killpg(process.pid, 9)
    process.wait()
    shutil.rmtree(profile, ignore_errors=True)


def measure_raw_chromium(runs):
    return [raw_launch() for _ in range(runs)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    raw = measure_raw_chromium(runs)
    ours = measure_server(runs)
    print("| measurement | runs | p50 ms | p90 ms | ratio of p50 to baseline |")
    print("| --- | --- | --- | --- | --- |")
    base = statistics.median(raw)
    for name, values in [("raw Chromium launch until DevTools is up (baseline)", raw),
                         ("`POST /v1/sessions` until its answer", ours)]:
        print(f"| {name} | {len(values)} | {statistics.median(values):.0f} | "
              f"{percentile(values, 0.9):.0f} | {statistics.median(values) / base:.2f} |")


if __name__ == "__main__":
    main()
