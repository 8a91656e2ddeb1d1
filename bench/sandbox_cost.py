"""What running browsers unprivileged and sandboxed costs a start.

Two servers with the pool off, run side by side in one go: one with the
defaults (as root: browsers run as nobody with Chromium's sandbox, when the
kernel allows it), one with ANCHORAGE_BROWSER_USER="" (browsers run as the
server's user; as root that means --no-sandbox). Starts alternate between
them; each is `POST /v1/sessions` until the answer, then `DELETE`.

    cargo build --release -p anchorage
    python3 bench/sandbox_cost.py --runs 20
"""

import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import KEY, REPO, free_port, wait_for_port  # noqa: E402


def start(binary, extra):
    data_dir = tempfile.mkdtemp(prefix="anchorage-sandbox-cost-")
    port = free_port()
    env = dict(os.environ, ANCHORAGE_LISTEN=f"127.0.0.1:{port}", ANCHORAGE_DATA_DIR=data_dir, ANCHORAGE_API_KEY=KEY,
               ANCHORAGE_POOL_SIZE="0", ANCHORAGE_LOG="warn", **extra)
    process = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL)
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}"


def call(base_url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    request.add_header("anchor-api-key", KEY)
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(REPO / "target" / "release" / "anchorage"))
    parser.add_argument("--runs", type=int, default=20)
    arguments = parser.parse_args()
    servers = {
        "defaults (unprivileged user, sandbox)": start(arguments.binary, {}),
        "server's user (root, --no-sandbox)": start(arguments.binary, {"ANCHORAGE_BROWSER_USER": ""}),
    }
    timings = {name: [] for name in servers}
    try:
        for _ in range(arguments.runs + 2):
            for name, (_, base_url) in servers.items():
                began = time.perf_counter()
                session = call(base_url, "POST", "/v1/sessions", {})["data"]
                timings[name].append((time.perf_counter() - began) * 1000)
                call(base_url, "DELETE", f"/v1/sessions/{session['id']}")
                time.sleep(1.5)  # let the ended browser's processes go
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    medians = {name: statistics.median(values[2:]) for name, values in timings.items()}
    for name, median in medians.items():
        print(f"{name}: POST /v1/sessions p50 {median:.0f} ms over {arguments.runs} runs")
    first, second = medians.values()
    print(f"ratio (defaults / server's user): {first / second:.2f}")


if __name__ == "__main__":
    main()
