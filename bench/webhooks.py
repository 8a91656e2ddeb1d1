"""What webhooks cost an API call, and how soon an event arrives, in one go.

    cargo build --release -p anchorage
    python3 bench/webhooks.py                      # the figures of BENCHMARKS.md

Two servers of the same build, side by side: a baseline without webhooks,
and one whose team has 5 webhooks subscribed to `session.completed`, each
posting to a local receiver that takes --receiver-delay seconds to answer
(a slow receiver). Each round starts a session on both (pool on) and then
times `DELETE /v1/sessions/{id}` on each, alternating which goes first.

Rows:
- end call: the `DELETE` round trip, p50 and p90, both servers; the ratio.
- delivery: from the `DELETE` answer to the first of the 5 deliveries of
  that session's event reaching the receiver, p50 and p90.

Reports medians and ratios; asserts nothing about time.
"""

import argparse
import http.server
import json
import pathlib
import statistics
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import Server, percentile  # noqa: E402

ARRIVED = {}
DELAY = [0.0]


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (the standard library's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ARRIVED.setdefault(body["data"]["session_id"], time.monotonic())
        time.sleep(DELAY[0])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(pathlib.Path(__file__).resolve().parents[1] / "target/release/anchorage"))
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--receiver-delay", type=float, default=2.0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    DELAY[0] = args.receiver_delay

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    quiet = Server(args.binary, pool_size=1, max_sessions=4)
    told = Server(args.binary, pool_size=1, max_sessions=4)
    try:
        for _ in range(5):
            told.call("POST", "/v1/webhooks", {"url": url, "subscribed_events": ["session.completed"]})
        ends = {"quiet": [], "told": []}
        delivery = []
        for round_number in range(args.rounds):
            sides = [("quiet", quiet), ("told", told)]
            if round_number % 2:
                sides.reverse()
            for name, server in sides:
                session_id = server.call("POST", "/v1/sessions", {})["data"]["id"]
                time.sleep(0.3)  # the pool refills between rounds
                started = time.monotonic()
                server.call("DELETE", f"/v1/sessions/{session_id}")
                answered = time.monotonic()
                ends[name].append((answered - started) * 1000)
                if name == "told":
                    deadline = answered + 30
                    while session_id not in ARRIVED and time.monotonic() < deadline:
                        time.sleep(0.002)
                    if session_id in ARRIVED:
                        delivery.append((ARRIVED[session_id] - answered) * 1000)
        figures = {
            "end_p50_quiet_ms": statistics.median(ends["quiet"]),
            "end_p50_told_ms": statistics.median(ends["told"]),
            "end_p90_quiet_ms": percentile(ends["quiet"], 0.9),
            "end_p90_told_ms": percentile(ends["told"], 0.9),
            "delivery_p50_ms": statistics.median(delivery),
            "delivery_p90_ms": percentile(delivery, 0.9),
            "rounds": args.rounds,
            "receiver_delay_s": args.receiver_delay,
        }
        figures["end_p50_ratio"] = figures["end_p50_told_ms"] / figures["end_p50_quiet_ms"]
        print(f"DELETE p50: {figures['end_p50_told_ms']:.2f} ms with 5 webhooks vs "
              f"{figures['end_p50_quiet_ms']:.2f} ms without ({figures['end_p50_ratio']:.2f}x); "
              f"p90 {figures['end_p90_told_ms']:.2f} vs {figures['end_p90_quiet_ms']:.2f} ms")
        print(f"first delivery after the DELETE answer: p50 {figures['delivery_p50_ms']:.1f} ms, "
              f"p90 {figures['delivery_p90_ms']:.1f} ms (receiver answers after {args.receiver_delay} s)")
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        quiet.close()
        told.close()
        receiver.shutdown()


if __name__ == "__main__":
    main()
