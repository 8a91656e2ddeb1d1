"""Starting from a saved profile, and ending a session that saves one, next
to the same calls without a profile, in the same go.

    cargo build --release -p anchorage
    python3 bench/profiles.py                  # a 50 MB profile, 15 runs of each

Setup: a server with no warm pool (every start launches, with or without a
profile); a profile filled to --megabytes by a persisting session that
writes random bytes into the page's IndexedDB.
Rows (alternating, medians):
- start: `POST /v1/sessions` with `browser.profile.name` (its copy goes into
  the new browser's profile before the launch) against a cold start without.
- end: `DELETE /v1/sessions/{id}` of a session with `persist: true` (the
  save runs after the answer) against the end of a plain session.
Reports; asserts nothing about time.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import Cdp, Server, percentile, serve_pages  # noqa: E402

FILL = """(async () => {
  const db = await new Promise((ok, fail) => {
    const open = indexedDB.open('bench', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('blobs');
    open.onsuccess = () => ok(open.result);
    open.onerror = () => fail(open.error);
  });
  for (let i = 0; i < %d; i++) {
    const bytes = new Uint8Array(1024 * 1024);
    for (let at = 0; at < bytes.length; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
    await new Promise((ok, fail) => {
      const put = db.transaction('blobs', 'readwrite').objectStore('blobs').put(new Blob([bytes]), i);
      put.onsuccess = ok; put.onerror = () => fail(put.error);
    });
  }
  return 'filled';
})()"""


def timed(call):
    started = time.perf_counter()
    value = call()
    return value, (time.perf_counter() - started) * 1000


def wait_ready(server, name):
    deadline = time.monotonic() + 120
    while server.call("GET", f"/v1/profiles/{name}")["data"]["status"] != "ready":
        assert time.monotonic() < deadline, "the profile was not saved"
        time.sleep(0.1)


def stored_bytes(server):
    return int(server.metric('anchorage_stored_bytes{kind="profiles"}'))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--binary", default=str(pathlib.Path(__file__).resolve().parents[1] / "target/release/anchorage"))
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    page_url = serve_pages() + "/"
    server = Server(args.binary, pool_size=0, max_sessions=4)
    try:
        server.call("POST", "/v1/profiles", {"name": "big"})
        session = server.call("POST", "/v1/sessions", {"browser": {"profile": {"name": "big", "persist": True}}})["data"]
        cdp = Cdp(session["cdp_url"])
        page = cdp.page_session()
        cdp.call("Page.navigate", {"url": page_url}, page)
        time.sleep(1)
        filled, _ = cdp.call("Runtime.evaluate", {"expression": FILL % args.megabytes, "awaitPromise": True,
                                                   "returnByValue": True}, page)
        assert filled["result"].get("value") == "filled", filled
        cdp.close()
        server.call("DELETE", f"/v1/sessions/{session['id']}")
        wait_ready(server, "big")
        size = stored_bytes(server)

        starts = {"with profile": [], "without": []}
        ends = {"persisting": [], "plain": []}
        bodies = {"with profile": {"browser": {"profile": {"name": "big"}}}, "without": {}}
        # The start rows first, the end rows after: a save (a copy of the
        # whole profile) and the removal of a large ended profile must not
        # overlap a measured start.
        for _ in range(args.runs):
            for name, body in bodies.items():
                time.sleep(0.5)
                created, elapsed = timed(lambda body=body: server.call("POST", "/v1/sessions", body))
                starts[name].append(elapsed)
                server.call("DELETE", f"/v1/sessions/{created['data']['id']}")
        for _ in range(args.runs):
            for name, body in (("persisting", {"browser": {"profile": {"name": "big", "persist": True}}}),
                               ("plain", {})):
                time.sleep(0.5)
                created = server.call("POST", "/v1/sessions", body)["data"]
                time.sleep(0.3)
                _, elapsed = timed(lambda created=created: server.call("DELETE", f"/v1/sessions/{created['id']}"))
                ends[name].append(elapsed)
                if name == "persisting":
                    wait_ready(server, "big")
        figures = {
            "profile_bytes": size,
            "runs": args.runs,
            "start_ms": {name: {"p50": statistics.median(values), "p90": percentile(values, 0.9)}
                         for name, values in starts.items()},
            "start_ratio": statistics.median(starts["with profile"]) / statistics.median(starts["without"]),
            "end_ms": {name: {"p50": statistics.median(values), "p90": percentile(values, 0.9)}
                       for name, values in ends.items()},
        }
    finally:
        server.close()
    print(json.dumps(figures, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
