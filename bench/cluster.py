"""Scale-out on one machine, in one go: what PostgreSQL and several nodes
cost against the single SQLite node, with the same total browser capacity.

    cargo build --release -p anchorage
    python3 bench/cluster.py --json /tmp/bench/cluster.json

Starts a throwaway PostgreSQL cluster of its own (scripts/lib.sh, as the
test command does; each setup gets a fresh schema) and stops it at the end.

Rows:
- batch of --batch (default 50), from POST until GET shows every item
  completed: one node on SQLite, one node on PostgreSQL, three nodes on
  PostgreSQL (capacity split evenly, the batch sent to the first node);
  pool off; rounds alternate the order of the setups. Median and the
  ratio to the SQLite node.
- POST /v1/sessions answered from the warm pool (pool 1, starts 2 s apart
  so the pool refills): SQLite against PostgreSQL, p50 and p90.
- a CDP round trip (Runtime.evaluate "1 + 1") to a session straight at
  the node that runs it, and through another node (which passes the
  WebSocket's bytes on), alternating; p50 and p90 and the difference.
- handoff: POST /v1/sessions at a node that is full (its one place held),
  which another node serves from its warm pool, against the same POST
  straight at that other node; alternating, 2 s apart and each once the
  pool has its browser again;
  p50 and p90 and the ratio. This is where nodes learning of each other's
  changes late (a poll) or at once (a signal) shows.

--rows picks rows (batch, start, cdp, handoff; default all).

Reports medians and ratios; asserts nothing about time.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import Cdp, Server, percentile  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


class Postgres:
    """A throwaway cluster, started and stopped with scripts/lib.sh."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="anchorage-bench-pg-")
        pathlib.Path(self.dir).chmod(0o711)
        self.url = subprocess.run(
            ["bash", "-c", 'source "$0/scripts/lib.sh"; start_test_postgres "$1/cluster" >&2; '
                           'echo "$ANCHORAGE_TEST_POSTGRES_URL"', str(REPO), self.dir],
            check=True, capture_output=True, text=True).stdout.strip()
        self.schemas = 0

    def fresh(self):
        """A URL of a new, empty schema."""
        self.schemas += 1
        schema = f"bench_{self.schemas}"
        subprocess.run(["psql", "-q", self.url, "-c", f"CREATE SCHEMA {schema}"], check=True)
        options = urllib.parse.quote(f"-c search_path={schema}")
        return f"{self.url}?options={options}"

    def close(self):
        subprocess.run(["bash", "-c", 'source "$0/scripts/lib.sh"; stop_postgres_in "$1/cluster"',
                        str(REPO), self.dir], check=False)
        subprocess.run(["rm", "-rf", self.dir], check=False)


def batch_seconds(nodes, count):
    started = time.monotonic()
    batch_id = nodes[0].call("POST", "/v1/batch-sessions", {"count": count})["data"]["batch_id"]
    while True:
        batch = nodes[-1].call("GET", f"/v1/batch-sessions/{batch_id}")["data"]
        if batch["completed_requests"] + batch["failed_requests"] >= count:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert batch["failed_requests"] == 0, batch
    nodes[0].call("DELETE", f"/v1/batch-sessions/{batch_id}")
    return elapsed


def start_figures(server, starts):
    times = []
    for _ in range(starts):
        time.sleep(2)
        began = time.perf_counter()
        session = server.call("POST", "/v1/sessions", {})["data"]
        times.append((time.perf_counter() - began) * 1000)
        server.call("DELETE", f"/v1/sessions/{session['id']}")
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(REPO / "target/release/anchorage"))
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--handoffs", type=int, default=15)
    parser.add_argument("--rows", default="batch,start,cdp,handoff")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rows = set(args.rows.split(","))
    postgres = Postgres()
    figures = {}
    try:
        if "handoff" in rows:
            figures["handoff_start_ms"] = handoff_figures(args.binary, postgres.fresh(), args.handoffs)
        if "batch" in rows:
            figures["batch"] = batch_figures(args, postgres)
        if "start" in rows:
            figures["start_with_pool_ms"] = pool_start_figures(args, postgres)
        if "cdp" in rows:
            figures["cdp_round_trip_ms"] = round_trip_figures(args, postgres)
    finally:
        postgres.close()
    print(json.dumps(figures, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))


def pool_is_full(server):
    """Waits until the server's warm pool holds its browser."""
    deadline = time.monotonic() + 30
    while server.metric("anchorage_pool_browsers") != 1:
        assert time.monotonic() < deadline, "the pool did not refill"
        time.sleep(0.05)


def handoff_figures(binary, url, count):
    full = Server(binary, pool_size=0, max_sessions=1, database_url=url)
    room = Server(binary, pool_size=1, max_sessions=2, database_url=url)
    try:
        held = full.call("POST", "/v1/sessions", {})["data"]
        times = {"at a full node, served by another": [], "straight at the node with room": []}
        for _ in range(count):
            for name, server in ((list(times)[0], full), (list(times)[1], room)):
                time.sleep(2)
                pool_is_full(room)
                began = time.perf_counter()
                session = server.call("POST", "/v1/sessions", {})["data"]
                times[name].append((time.perf_counter() - began) * 1000)
                room.call("DELETE", f"/v1/sessions/{session['id']}")
        full.call("DELETE", f"/v1/sessions/{held['id']}")
    finally:
        full.close()
        room.close()
    result = {name: {"p50": round(percentile(values, 0.5), 1), "p90": round(percentile(values, 0.9), 1)}
              for name, values in times.items()}
    result["ratio_p50"] = round(percentile(times["at a full node, served by another"], 0.5)
                                / percentile(times["straight at the node with room"], 0.5), 2)
    return result


def batch_figures(args, postgres):
    capacity = args.batch + 1
    share = -(-capacity // 3)
    setups = {
        "sqlite, 1 node": lambda: [Server(args.binary, pool_size=0, max_sessions=capacity)],
        "postgres, 1 node": lambda: [Server(args.binary, pool_size=0, max_sessions=capacity,
                                            database_url=postgres.fresh())],
        "postgres, 3 nodes": lambda: (lambda url: [Server(args.binary, pool_size=0, max_sessions=share,
                                                          database_url=url) for _ in range(3)])(postgres.fresh()),
    }
    batches = {name: [] for name in setups}
    for round_number in range(args.rounds):
        order = list(setups)
        order = order[round_number % len(order):] + order[:round_number % len(order)]
        for name in order:
            nodes = setups[name]()
            try:
                batches[name].append(batch_seconds(nodes, args.batch))
            finally:
                for node in nodes:
                    node.close()
    base = statistics.median(batches["sqlite, 1 node"])
    return {name: {"median_s": round(statistics.median(times), 2),
                   "ratio": round(statistics.median(times) / base, 3), "runs": times}
            for name, times in batches.items()}


def pool_start_figures(args, postgres):
    sqlite = Server(args.binary, pool_size=1, max_sessions=4)
    pg = Server(args.binary, pool_size=1, max_sessions=4, database_url=postgres.fresh())
    try:
        time.sleep(3)
        starts = {"sqlite": [], "postgres": []}
        for _ in range(args.starts):
            for name, server in (("sqlite", sqlite), ("postgres", pg)):
                starts[name].extend(start_figures(server, 1))
    finally:
        sqlite.close()
        pg.close()
    return {name: {"p50": round(percentile(times, 0.5), 2), "p90": round(percentile(times, 0.9), 2)}
            for name, times in starts.items()}


def round_trip_figures(args, postgres):
    url = postgres.fresh()
    owner = Server(args.binary, pool_size=0, max_sessions=1, database_url=url)
    other = Server(args.binary, pool_size=0, max_sessions=1, database_url=url)
    try:
        session = owner.call("POST", "/v1/sessions", {})["data"]
        direct_url = session["cdp_url"]
        through_url = other.base.replace("http://", "ws://") + "/" + direct_url.split("/", 3)[3]
        sockets = {"direct": Cdp(direct_url), "through another node": Cdp(through_url)}
        pages = {name: cdp.page_session() for name, cdp in sockets.items()}
        for name, cdp in sockets.items():
            for _ in range(20):
                cdp.call("Runtime.evaluate", {"expression": "1 + 1"}, pages[name])
        rtt = {name: [] for name in sockets}
        for _ in range(args.round_trips):
            for name, cdp in sockets.items():
                began = time.perf_counter()
                cdp.call("Runtime.evaluate", {"expression": "1 + 1"}, pages[name])
                rtt[name].append((time.perf_counter() - began) * 1000)
        for cdp in sockets.values():
            cdp.close()
        owner.call("DELETE", f"/v1/sessions/{session['id']}")
    finally:
        owner.close()
        other.close()
    figures = {name: {"p50": round(percentile(times, 0.5), 3), "p90": round(percentile(times, 0.9), 3)}
               for name, times in rtt.items()}
    figures["extra_p50"] = round(percentile(rtt["through another node"], 0.5) - percentile(rtt["direct"], 0.5), 3)
    return figures


if __name__ == "__main__":
    main()
