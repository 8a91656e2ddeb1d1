"""Batch figures, each against a baseline measured in the same run.

    cargo build --release -p anchorage && python3 bench/batch.py [--count 20] [--gets 50]

1. Time until every item of a batch of COUNT is `completed`, with
   ANCHORAGE_LAUNCH_CONCURRENCY at its default (the core count), against
   launching COUNT Chromiums directly with the same parallelism until each
   prints its DevTools endpoint, all kept running until the last is up.
2. Latency of `GET /v1/batch-sessions/{id}` for a batch of 1000 items (at
   most one browser runs: ANCHORAGE_MAX_SESSIONS=1), against
   `GET /v1/sessions/all/status` on the same server.

Reports; asserts nothing.
"""

import argparse
import concurrent.futures
import os
import statistics
import time

from start_latency import call, end_raw, percentile, raw_launch, server_process


def time_batch(count):
    with server_process({}) as base:
        started = time.perf_counter()
        batch_id = call(base, "POST", "/v1/batch-sessions", {"count": count})["data"]["batch_id"]
        while True:
            batch = call(base, "GET", f"/v1/batch-sessions/{batch_id}")["data"]
            if batch["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.02)
        elapsed = (time.perf_counter() - started) * 1000
        assert batch["completed_requests"] == count, batch
        call(base, "DELETE", f"/v1/batch-sessions/{batch_id}")
        return elapsed


def time_direct(count, parallelism):
    """COUNT browsers launched directly, PARALLELISM at a time, all kept
    running until the last is up (as a batch's are)."""
    running = []
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallelism) as pool:
        list(pool.map(lambda _: raw_launch(running), range(count)))
    elapsed = (time.perf_counter() - started) * 1000
    for launched in running:
        end_raw(launched)
    return elapsed


def get_latencies(gets):
    with server_process({"ANCHORAGE_MAX_SESSIONS": "1"}) as base:
        batch_id = call(base, "POST", "/v1/batch-sessions", {"count": 1000})["data"]["batch_id"]
        batch_times, small_times = [], []
        for _ in range(gets):
            started = time.perf_counter()
            batch = call(base, "GET", f"/v1/batch-sessions/{batch_id}")
            batch_times.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            call(base, "GET", "/v1/sessions/all/status")
            small_times.append((time.perf_counter() - started) * 1000)
        assert len(batch["data"]["sessions"]) == 1000
        call(base, "PATCH", f"/v1/batch-sessions/{batch_id}", {"status": "cancelled"})
        return batch_times, small_times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--gets", type=int, default=50)
    arguments = parser.parse_args()
    parallelism = os.cpu_count() or 1
    direct = time_direct(arguments.count, parallelism)
    ours = time_batch(arguments.count)
    batch_times, small_times = get_latencies(arguments.gets)
    print("| measurement | value | baseline | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| batch of {arguments.count} until all `completed` (launch concurrency {parallelism}) | "
          f"{ours:.0f} ms | {direct:.0f} ms ({arguments.count} direct launches, {parallelism} at a time) | "
          f"{ours / direct:.2f} |")
    small = statistics.median(small_times)
    print(f"| `GET /v1/batch-sessions/{{id}}`, 1000 items, p50 (p90) over {arguments.gets} | "
          f"{statistics.median(batch_times):.1f} ms ({percentile(batch_times, 0.9):.1f} ms) | "
          f"{small:.1f} ms (`GET /v1/sessions/all/status`) | {statistics.median(batch_times) / small:.1f} |")


if __name__ == "__main__":
    main()
