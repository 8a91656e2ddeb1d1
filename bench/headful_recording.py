"""What headful sessions and recordings cost, each against its baseline in
the same go.

    cargo build --release -p anchorage
    python3 bench/headful_recording.py --json /tmp/bench/headful_recording.json

Rows:
- start: `POST /v1/sessions` (pool off, 1280x800) headful against headless,
  alternating, p50 of --starts each; then the PSS of each kind's processes
  (Chromium's group, plus its Xvfb for headful), --resident sessions of a
  kind open at once, an about:blank page each.
- recording CPU: a 1280x800 session showing an animation, recorded against
  not recorded, --seconds each, alternating twice: CPU seconds per minute
  of the server, the browser's group and ffmpeg together (`/proc`).
- workload: a fixed page workload (layout and script, timed in the page) in
  a recorded session against an unrecorded one, both showing the animation,
  alternating --rounds times: p50 of each and the slowdown.

Reports medians and ratios; asserts nothing about time.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import Cdp, Server, group_pss_kib  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
ANIMATION = "data:text/html," + urllib.parse.quote("<body style='margin:0'><canvas id=c width=1280 height=800></canvas><script>"
             "const x=c.getContext('2d');let t=0;(function f(){t++;x.fillStyle='hsl('+(t%360)+',80%,50%)';"
             "x.fillRect(0,0,1280,800);x.fillStyle='#fff';x.font='64px sans-serif';x.fillText('frame '+t,100,400);"
             "requestAnimationFrame(f)})()</script>")  # noqa: E501
WORKLOAD = ("(() => { const start = performance.now(); let sum = 0;"
            " for (let round = 0; round < 40; round++) {"
            "  const box = document.createElement('div'); box.style.width = (round * 7) + 'px';"
            "  document.body.appendChild(box); sum += box.offsetWidth;"
            "  for (let i = 0; i < 200000; i++) { sum += Math.sqrt(i * round); } box.remove(); }"
            " return performance.now() - start; })()")


def pids_of_group(pgid):
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / TICKS


def leaders(data_dir, session_id, program):
    """Group leaders whose command line names the session's folder."""
    marker = f"{data_dir}/browsers/{session_id.replace('-', '')}/"
    marker_recording = f"{data_dir}/recordings/{session_id}/"
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            pgid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
        except (OSError, ValueError, IndexError):
            continue
        if pgid != int(entry.name) or not arguments[0].endswith(program.encode()):
            continue
        if any(marker.encode() in argument or marker_recording.encode() in argument for argument in arguments):
            found.append(pgid)
    return found


def session_processes(server, session_id):
    groups = []
    for program in ("chromium", "Xvfb", "ffmpeg"):
        groups += leaders(server.data_dir, session_id, program)
    pids = [server.process.pid]
    for group in groups:
        pids += pids_of_group(group)
    return groups, pids


def start(server, headful):
    body = {"browser": {"headless": {"active": not headful}, "viewport": {"width": 1280, "height": 800}}}
    began = time.monotonic()
    session = server.call("POST", "/v1/sessions", body)["data"]
    return (time.monotonic() - began) * 1000, session


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(pathlib.Path(__file__).resolve().parents[1] / "target/release/anchorage"))
    parser.add_argument("--starts", type=int, default=15)
    parser.add_argument("--resident", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--json")
    args = parser.parse_args()
    figures = {}
    server = Server(args.binary, pool_size=0, max_sessions=8)
    try:
        times = {"headless": [], "headful": []}
        for round_number in range(args.starts):
            for kind in (("headless", "headful") if round_number % 2 else ("headful", "headless")):
                took, session = start(server, kind == "headful")
                times[kind].append(took)
                server.call("DELETE", f"/v1/sessions/{session['id']}")
        for kind in times:
            figures[f"start_p50_{kind}_ms"] = statistics.median(times[kind])
        for kind in ("headless", "headful"):
            sessions = [start(server, kind == "headful")[1] for _ in range(args.resident)]
            time.sleep(3)
            total = 0
            for session in sessions:
                groups, _ = session_processes(server, session["id"])
                total += sum(group_pss_kib(group) for group in groups)
            figures[f"pss_per_session_{kind}_mib"] = total / len(sessions) / 1024
            for session in sessions:
                server.call("DELETE", f"/v1/sessions/{session['id']}")

        cpu = {"recorded": [], "unrecorded": []}
        work = {"recorded": [], "unrecorded": []}
        for round_number in range(2):
            for kind in (("recorded", "unrecorded") if round_number % 2 else ("unrecorded", "recorded")):
                body = {"session": {"recording": {"active": kind == "recorded"}},
                        "browser": {"viewport": {"width": 1280, "height": 800}}}
                session = server.call("POST", "/v1/sessions", body)["data"]
                cdp = Cdp(session["cdp_url"])
                page = cdp.page_session()
                cdp.call("Page.navigate", {"url": ANIMATION}, page)
                time.sleep(1)
                _, pids = session_processes(server, session["id"])
                before = cpu_seconds(pids)
                time.sleep(args.seconds)
                _, pids_after = session_processes(server, session["id"])
                used = cpu_seconds(set(pids) | set(pids_after)) - before
                cpu[kind].append(used / args.seconds * 60)
                for _ in range(args.rounds // 2):
                    took = cdp.call("Runtime.evaluate", {"expression": WORKLOAD, "returnByValue": True}, page)[0]
                    work[kind].append(took["result"]["value"])
                cdp.close()
                server.call("DELETE", f"/v1/sessions/{session['id']}")
        for kind in cpu:
            figures[f"cpu_s_per_min_{kind}"] = statistics.median(cpu[kind])
            figures[f"workload_p50_{kind}_ms"] = statistics.median(work[kind])
        figures["workload_slowdown"] = figures["workload_p50_recorded_ms"] / figures["workload_p50_unrecorded_ms"]
    finally:
        server.close()
    for name, value in figures.items():
        print(f"{name}: {value:.2f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
