"""anchorage soak: many sessions through batches and single starts, with
random cancels, deletes and client drops, for a bounded time at the
machine's capacity; then the same baseline checks as the leak test, and a
report of failures by cause.

    cargo build --release -p anchorage
    python3 bench/soak.py                          # 10 minutes, up to 600 sessions
    python3 bench/soak.py --minutes 2 --sessions 60 --binary target/debug/anchorage

The server runs with its defaults for this machine (ANCHORAGE_MAX_SESSIONS
from memory and cores), a local test page is served on 127.0.0.1, and
nothing reaches the internet. Exit status 1 when a baseline check fails;
failures of single operations are counted and reported, not fatal.
"""

import argparse
import collections
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

from websockets.sync.client import connect as ws_connect

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import KEY, REPO, free_port, serve_pages  # noqa: E402


class Api:
    def __init__(self, base_url):
        self.base_url = base_url

    def call(self, method, path, body=None, timeout=120):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("anchor-api-key", KEY)
        if data is not None:
            request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            try:
                return error.code, json.load(error)
            except ValueError:
                return error.code, {"error": {"message": "not JSON"}}

    def metrics(self):
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=30) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values


def browser_groups(data_dir):
    marker = f"--user-data-dir={data_dir.resolve()}/browsers/".encode()
    groups = set()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            if any(argument.startswith(marker) for argument in arguments):
                stat = (entry / "stat").read_text()
                groups.add(int(stat.rsplit(")", 1)[1].split()[2]))
        except (OSError, IndexError, ValueError):
            continue
    return groups


def descriptors(pid, data_dir):
    """The server's open descriptors, leaving out the database pool's (it
    opens connections as load asks, up to its maximum, and keeps them)."""
    database = str(data_dir.resolve() / "anchorage.db")
    found = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if not target.startswith(database):
                found.append(target)
    except OSError:
        pass
    return found


def open_files(pid, data_dir):
    return len(descriptors(pid, data_dir))


def resident_mib(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return -1.0


class Soak:
    def __init__(self, api, page_url, deadline, budget, seed, hold):
        self.api = api
        self.hold = hold
        self.page_url = page_url
        self.deadline = deadline
        self.budget = budget
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.started = 0
        self.outcomes = collections.Counter()
        self.failures = collections.Counter()

    def take(self, count):
        """Reserves `count` sessions of the budget; how many it got."""
        with self.lock:
            granted = max(0, min(count, self.budget - self.started))
            self.started += granted
            return granted

    def note(self, outcome, cause=None):
        with self.lock:
            self.outcomes[outcome] += 1
            if cause:
                self.failures[cause[:120]] += 1

    def use(self, cdp_url):
        """Connects a CDP client, opens the test page now and then for a
        while (as a user's script would), and leaves cleanly or by dropping
        the connection."""
        with ws_connect(cdp_url, max_size=None, open_timeout=30) as socket_:
            until = time.monotonic() + self.random.uniform(*self.hold)
            command = 0
            while True:
                command += 1
                socket_.send(json.dumps({"id": command, "method": "Target.createTarget", "params": {"url": self.page_url}}))
                while json.loads(socket_.recv(timeout=60)).get("id") != command:
                    pass
                if time.monotonic() >= until:
                    break
                time.sleep(self.random.uniform(1, 4))
            if self.random.random() < 0.3:
                # A client that vanishes without a close frame.
                socket_.socket.close()
                self.note("client dropped")
                return
        self.note("client used")

    def single(self):
        if not self.take(1):
            return
        status, answer = self.api.call("POST", "/v1/sessions", {"session": {"tags": ["soak"]}})
        if status != 200:
            self.note("single failed", f"POST /v1/sessions {status}: {answer.get('error', {}).get('message')}")
            return
        session = answer["data"]
        try:
            self.use(session["cdp_url"])
        except Exception as error:  # noqa: BLE001 (reported, not fatal)
            self.note("client failed", f"client: {type(error).__name__}: {error}")
        if self.random.random() < 0.8:
            status, answer = self.api.call("DELETE", f"/v1/sessions/{session['id']}")
            self.note("single ended" if status == 200 else "end failed", None if status == 200 else f"DELETE {status}")
        else:
            self.note("single left to its idle timeout")

    def batch(self):
        count = self.take(self.random.randint(2, 12))
        if not count:
            return
        status, answer = self.api.call("POST", "/v1/batch-sessions", {"count": count, "configuration": {"session": {"tags": ["soak"]}}})
        if status != 200:
            self.note("batch failed", f"POST /v1/batch-sessions {status}: {answer.get('error', {}).get('message')}")
            return
        batch_id = answer["data"]["batch_id"]
        fate = self.random.random()
        time.sleep(self.random.uniform(0, 3))
        if fate < 0.25:
            status, answer = self.api.call("PATCH", f"/v1/batch-sessions/{batch_id}", {"status": "cancelled"})
            self.note("batch cancelled" if status == 200 else "cancel refused (already final)")
        elif fate < 0.45:
            status, answer = self.api.call("DELETE", f"/v1/batch-sessions/{batch_id}")
            self.note("batch deleted" if status == 200 else "delete failed", None if status == 200 else f"DELETE batch {status}")
        else:
            # Wait for it, use a few of its sessions, then delete it.
            until = time.monotonic() + 120
            while time.monotonic() < until:
                status, answer = self.api.call("GET", f"/v1/batch-sessions/{batch_id}")
                if status == 200 and answer["data"]["status"] in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.5)
            data = answer.get("data", {})
            for item in data.get("sessions", []):
                if item.get("status") == "failed":
                    self.note("item failed", f"item: {item.get('error')}")
            for item in [item for item in data.get("sessions", []) if item.get("cdp_url")][:3]:
                try:
                    self.use(item["cdp_url"])
                except Exception as error:  # noqa: BLE001
                    self.note("client failed", f"client: {type(error).__name__}: {error}")
            status, _ = self.api.call("DELETE", f"/v1/batch-sessions/{batch_id}")
            self.note("batch used and deleted" if status == 200 else "delete failed", None if status == 200 else f"DELETE batch {status}")

    def worker(self):
        while time.monotonic() < self.deadline and self.started < self.budget:
            try:
                (self.batch if self.random.random() < 0.4 else self.single)()
            except Exception as error:  # noqa: BLE001
                # Where in this script it happened, to tell the steps apart.
                frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == __file__]
                where = f"{frames[-1].name}:{frames[-1].lineno}" if frames else "?"
                self.note("worker error", f"{where}: {type(error).__name__}: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(REPO / "target" / "release" / "anchorage"))
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sessions", type=int, default=600, help="most sessions to start in all")
    parser.add_argument("--workers", type=int, default=8, help="clients working at once")
    parser.add_argument("--hold", type=float, nargs=2, default=(10, 40), metavar=("MIN", "MAX"),
                        help="seconds a client keeps using a session")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    arguments = parser.parse_args()

    page_url = serve_pages()
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="anchorage-soak-"))
    port = free_port()
    env = dict(os.environ, ANCHORAGE_LISTEN=f"127.0.0.1:{port}", ANCHORAGE_DATA_DIR=str(data_dir),
               ANCHORAGE_API_KEY=KEY, ANCHORAGE_LOG="warn")
    server = subprocess.Popen([arguments.binary, "serve"], env=env, stdout=subprocess.DEVNULL)
    api = Api(f"http://127.0.0.1:{port}")
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None:
                sys.exit("anchorage did not start")
            time.sleep(0.05)
    time.sleep(3)  # the warm pool fills
    baseline = {"open_files": open_files(server.pid, data_dir), "resident_mib": resident_mib(server.pid),
                "browser_groups": len(browser_groups(data_dir))}

    started = time.monotonic()
    soak = Soak(api, page_url, started + arguments.minutes * 60, arguments.sessions, arguments.seed, arguments.hold)
    peaks = {"sessions_running": 0, "resident_mib": 0.0, "open_files": 0}
    workers = [threading.Thread(target=soak.worker, daemon=True) for _ in range(arguments.workers)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        time.sleep(2)
        try:
            running = api.metrics().get("anchorage_sessions_running", 0)
        except OSError:
            running = -1
        peaks["sessions_running"] = max(peaks["sessions_running"], running)
        peaks["resident_mib"] = max(peaks["resident_mib"], resident_mib(server.pid))
        peaks["open_files"] = max(peaks["open_files"], open_files(server.pid, data_dir))
    elapsed = time.monotonic() - started

    # Sessions left to their idle timeout are ended here, like any client would.
    api.call("DELETE", "/v1/sessions/all")
    settle_until = time.monotonic() + 60
    while time.monotonic() < settle_until:
        metrics = api.metrics()
        if (metrics.get("anchorage_sessions_running") == 0 and metrics.get("anchorage_websocket_tasks") == 0
                and metrics.get("anchorage_queued_requests") == 0
                and len(browser_groups(data_dir)) == baseline["browser_groups"]
                and open_files(server.pid, data_dir) <= baseline["open_files"]):
            break
        time.sleep(0.5)
    metrics = api.metrics()
    after = {"open_files": open_files(server.pid, data_dir), "resident_mib": resident_mib(server.pid),
             "browser_groups": len(browser_groups(data_dir))}
    checks = {
        "no session running": metrics.get("anchorage_sessions_running") == 0,
        "no WebSocket task left": metrics.get("anchorage_websocket_tasks") == 0,
        "nothing queued": metrics.get("anchorage_queued_requests") == 0,
        "browsers back to the pool's": after["browser_groups"] == baseline["browser_groups"],
        "descriptors back to baseline": after["open_files"] <= baseline["open_files"],
        "session dirs only the pool's": len([entry for entry in (data_dir / "browsers").iterdir()
                                              if not entry.name.startswith("pool")]) == 0,
    }
    if not checks["descriptors back to baseline"]:
        print("open descriptors:", descriptors(server.pid, data_dir), file=sys.stderr)
    server.send_signal(signal.SIGTERM)
    exit_code = server.wait(timeout=60)
    checks["clean exit"] = exit_code == 0
    checks["no browser after exit"] = not browser_groups(data_dir)

    report = {
        "seed": arguments.seed, "minutes": round(elapsed / 60, 1), "sessions_started": soak.started,
        "launches": metrics.get("anchorage_launches_total"), "launch_failures": metrics.get("anchorage_launch_failures_total"),
        "peak_sessions_running": peaks["sessions_running"], "server_resident_mib": {"baseline": round(baseline["resident_mib"], 1),
        "peak": round(peaks["resident_mib"], 1), "after": round(after["resident_mib"], 1)},
        "server_open_files": {"baseline": baseline["open_files"], "peak": peaks["open_files"], "after": after["open_files"]},
        "outcomes": dict(soak.outcomes.most_common()), "failures_by_cause": dict(soak.failures.most_common()),
        "checks": checks,
    }
    print(json.dumps(report, indent=2))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
