"""When a fresh Chromium can be used, over a DevTools pipe and over a port.

anchorage's browsers speak DevTools over `--remote-debugging-pipe`, and a
session counts as `running` once the browser has answered a command on it.
Before the pipe, the signal was Chromium's "DevTools listening on" line for
`--remote-debugging-port`, which comes earlier than the browser can answer.
This launches Chromium both ways, alternating, with the flags that matter
(headless, no sandbox, the default window), and reports per way:

- the first signal: the pipe's answer to `Browser.getVersion`, or the port's
  "listening" line;
- usable: `Target.getTargets` answered (for the port: after connecting and
  asking `Browser.getVersion` first, as a client would).

    python3 bench/devtools_transport.py --runs 15
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

from websockets.sync.client import connect as ws_connect

CHROMIUM = "/usr/lib/chromium/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-gpu", "--test-type", "--window-size=1440,987"]


def read_answers(reader, buffered, count):
    """Reads from the pipe until COUNT NUL-ended messages have arrived."""
    while buffered.count(b"\0") < count:
        chunk = os.read(reader, 65536)
        if not chunk:
            raise RuntimeError("the browser closed its pipe")
        buffered += chunk
    return buffered


def over_pipe():
    commands_read, commands_write = os.pipe()
    answers_read, answers_write = os.pipe()
    profile = tempfile.mkdtemp(prefix="bench-pipe-")

    def place_fds():
        # Copies first, so that neither move overwrites the other's source.
        high_commands, high_answers = os.dup(commands_read), os.dup(answers_write)
        os.dup2(high_commands, 3)
        os.dup2(high_answers, 4)

    started = time.perf_counter()
    process = subprocess.Popen([CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
                                "about:blank"], preexec_fn=place_fds, pass_fds=(3, 4),
                               stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(commands_read)
    os.close(answers_write)
    try:
        os.write(commands_write, json.dumps({"id": 1, "method": "Browser.getVersion"}).encode() + b"\0")
        buffered = read_answers(answers_read, b"", 1)
        first = time.perf_counter() - started
        os.write(commands_write, json.dumps({"id": 2, "method": "Target.getTargets"}).encode() + b"\0")
        read_answers(answers_read, buffered, 2)
        usable = time.perf_counter() - started
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        os.close(commands_write)
        os.close(answers_read)
        shutil.rmtree(profile, ignore_errors=True)
    return first * 1000, usable * 1000


def over_port():
    profile = tempfile.mkdtemp(prefix="bench-port-")
    started = time.perf_counter()
    process = subprocess.Popen([CHROMIUM, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                "about:blank"], stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = None
        for line in process.stderr:
            if "DevTools listening on " in line:
                url = line.split("DevTools listening on ", 1)[1].strip()
                break
        if url is None:
            raise RuntimeError("chromium exited before it listened")
        first = time.perf_counter() - started
        with ws_connect(url) as socket:
            for number, method in enumerate(["Browser.getVersion", "Target.getTargets"], start=1):
                socket.send(json.dumps({"id": number, "method": method}))
                while json.loads(socket.recv()).get("id") != number:
                    pass
        usable = time.perf_counter() - started
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return first * 1000, usable * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pause", type=float, default=0.7, help="seconds between launches, to let the last one go")
    args = parser.parse_args()
    figures = {"pipe": [], "port": []}
    for _ in range(args.runs):
        for name, launch in (("pipe", over_pipe), ("port", over_port)):
            figures[name].append(launch())
            time.sleep(args.pause)
    print(f"{args.runs} launches each, alternating; p50 ms from spawn")
    print("| DevTools over | first signal | usable (getTargets answered) |")
    print("| --- | --- | --- |")
    for name, runs in figures.items():
        first = statistics.median(run[0] for run in runs)
        usable = statistics.median(run[1] for run in runs)
        print(f"| {name} | {first:.0f} | {usable:.0f} |")


if __name__ == "__main__":
    main()
