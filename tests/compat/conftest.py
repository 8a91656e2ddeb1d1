"""Fixtures for the compatibility tests: a real anchorage server started from
the built binary, with its own data dir, and a test page served on
127.0.0.1 by this process. Nothing here reaches the internet."""

import http.server
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
API_KEY = "compat-test-key-0123456789"
PAGE_TITLE = "anchorage compatibility page"


# Pages for the live-view tests: a page filled with one colour, and a page
# that counts the clicks it receives (in `window.clicks`).
COLOUR_PAGE = "<!doctype html><title>{colour}</title><style>html,body{{margin:0;height:100%;background:{colour}}}</style>"
CLICK_PAGE = (
    "<!doctype html><title>clicks</title>"
    "<style>html,body{margin:0;height:100%;background:#0000ff}</style>"
    "<script>window.clicks = 0; addEventListener('click', () => { window.clicks += 1; "
    "document.body.style.background = '#00ff00'; });</script>"
)

# A page for the REST actions: a button at (0,0)-(200,100) counting clicks
# and double clicks, a text input at (0,200)-(300,240), a box at
# (400,0)-(450,50) that follows a drag, a button far down, room to scroll.
ACTIONS_PAGE = (
    "<!doctype html><title>actions</title>"
    "<style>body{margin:0;height:5000px}#b{position:absolute;left:0;top:0;width:200px;height:100px}"
    "#t{position:absolute;left:0;top:200px;width:300px;height:40px}"
    "#d{position:absolute;left:400px;top:0;width:50px;height:50px;background:red}"
    "#far{position:absolute;left:0;top:3000px}#dl{position:absolute;left:0;top:300px}</style>"
    "<button id=b>b</button><input id=t><div id=d></div><button id=far>far</button>"
    "<a id=dl href=/figures.csv download>figures</a><input type=file id=f>"
    "<script>window.clicks=0;window.doubles=0;window.farClicks=0;let dragging=false;"
    "b.addEventListener('click',()=>clicks++);b.addEventListener('dblclick',()=>doubles++);"
    "far.addEventListener('click',()=>farClicks++);"
    "d.addEventListener('mousedown',()=>{dragging=true});"
    "addEventListener('mousemove',e=>{if(dragging){d.style.left=(e.clientX-25)+'px';d.style.top=(e.clientY-25)+'px'}});"
    "addEventListener('mouseup',()=>{dragging=false});</script>"
)

# A page with what Markdown keeps: headings, a link, a list.
ARTICLE_PAGE = (
    "<!doctype html><title>article</title><h1>Quarterly report</h1><h2>Revenue</h2>"
    "<p>See <a href=\"https://example.com/q1\">the first quarter</a>.</p><ul><li>alpha</li><li>beta</li></ul>"
)

# A form an agent fills in: its button writes what it got into #out.
FORM_PAGE = (
    "<!doctype html><title>order form</title><h1>Order</h1>"
    "<label>Name <input id=name></label>"
    "<button id=send onclick=\"document.getElementById('out').textContent = "
    "'sent ' + document.getElementById('name').value\">Send</button><p id=out>nothing yet</p>"
)

# What the actions page's download link serves.
FIGURES_CSV = b"quarter,revenue\nQ1,112\nQ2,125\n"

# A page with something to look at, for the live view's screenshot; the
# centre of its viewport is the card's colour, #2d7ff9.
DEMO_PAGE = (
    "<!doctype html><title>Quarterly report</title><style>"
    "html,body{margin:0;height:100%;font-family:sans-serif;background:#f4f6f8;color:#1f2328}"
    "header{padding:18px 32px;background:#fff;border-bottom:1px solid #d0d7de;font-size:22px}"
    "main{position:absolute;inset:64px 0 0 0;display:flex;align-items:center;justify-content:center}"
    ".card{width:60%;height:70%;background:#2d7ff9;color:#fff;border-radius:16px;padding:32px;box-sizing:border-box}"
    "</style><header>Quarterly report</header><main><div class=card><h1>Revenue up 12%</h1>"
    "<p>Served on 127.0.0.1 by the test, shown through anchorage's live view.</p>"
    "<button>Download the figures</button></div></main>"
)


class PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        if self.path.startswith("/colour/"):
            colour = "#" + "".join(ch for ch in self.path.removeprefix("/colour/") if ch in "0123456789abcdef")[:6]
            body = COLOUR_PAGE.format(colour=colour).encode()
        elif self.path == "/demo":
            body = DEMO_PAGE.encode()
        elif self.path == "/clicks":
            body = CLICK_PAGE.encode()
        elif self.path == "/article":
            body = ARTICLE_PAGE.encode()
        elif self.path == "/actions":
            body = ACTIONS_PAGE.encode()
        elif self.path == "/form":
            body = FORM_PAGE.encode()
        elif self.path == "/many":
            body = ("<!doctype html><title>many</title><ul>"
                    + "".join(f"<li><a href=#{i}>item {i}</a></li>" for i in range(10_000)) + "</ul>").encode()
        elif self.path == "/figures.csv":
            body = FIGURES_CSV
            self.send_response(200)
            self.send_header("content-type", "text/csv")
            self.send_header("content-disposition", 'attachment; filename="figures.csv"')
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        else:
            body = f"<!doctype html><title>{PAGE_TITLE}</title><h1>compat</h1>".encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def page_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def browser_pids(data_dir: pathlib.Path) -> list[int]:
    marker = f"--user-data-dir={data_dir.resolve()}/browsers/".encode()
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(argument.startswith(marker) for argument in arguments):
            found.append(int(entry.name))
    return found


def gauge(base_url, name):
    """A gauge's or counter's value in the server's `/metrics`; fails if it is missing."""
    import httpx

    text = httpx.get(base_url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def wait_until_settled(base_url, timeout=10):
    """Waits until the server's queue is empty and its scheduler has looked
    at every change: after that, a start that is still to happen would
    already have begun."""
    deadline = time.monotonic() + timeout
    while gauge(base_url, "anchorage_queued_requests") or gauge(base_url, "anchorage_admission_unseen_changes"):
        assert time.monotonic() < deadline, f"the scheduler of {base_url} did not settle"
        time.sleep(0.02)


# The servers of one run share the ad blocking ruleset the first of them
# indexed (the temp dir is the test command's own, removed after the run).
ADBLOCK_INDEX_DIR = os.path.join(tempfile.gettempdir(), "anchorage-compat-adblock-index")


def wait_for_adblock_index(base_url, api_key, timeout=90):
    """Waits until a server's ad blocking ruleset is indexed (found, or made
    by the browser the server launches for it as it starts), so that no such
    browser runs beside a test's own."""
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(base_url + "/v1/adblock", headers={"anchor-api-key": api_key})
        with urllib.request.urlopen(request, timeout=30) as response:
            status = json.loads(response.read())["data"]
        if not status["active"] or status["indexed_ahead"] or status.get("index_error"):
            return
        assert time.monotonic() < deadline, f"{base_url} never indexed its ad blocking ruleset"
        time.sleep(0.1)


def start_anchorage(binary, env):
    """Starts `anchorage serve` with `env` on a port it picks itself (the
    address is read from its start line, so no two servers can race for a
    port) and returns the process and its base URL, once its ad blocking
    ruleset is indexed. Its warnings and errors go on to this process's
    stderr; its other lines are dropped."""
    env = dict(env, ANCHORAGE_LISTEN="127.0.0.1:0",
               ANCHORAGE_LOG=env.get("ANCHORAGE_LOG", "warn") + ",anchorage=info")
    env.setdefault("ANCHORAGE_ADBLOCK_INDEX_DIR", ADBLOCK_INDEX_DIR)
    process = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, errors="replace")
    announced = queue.Queue()

    def follow():
        told = False
        for line in process.stderr:
            if not told and "listening on " in line:
                announced.put(line.split("listening on ", 1)[1].split()[0])
                told = True
            elif " INFO " not in re.sub(r"\x1b\[[0-9;]*m", "", line)[:60]:
                sys.stderr.write(line)
        announced.put(None)

    threading.Thread(target=follow, daemon=True).start()
    try:
        address = announced.get(timeout=30)
    except queue.Empty:
        address = None
    if address is None:
        process.kill()
        process.wait()
        raise RuntimeError("anchorage did not start")
    if env.get("ANCHORAGE_API_KEY"):
        wait_for_adblock_index(f"http://{address}", env["ANCHORAGE_API_KEY"])
    return process, f"http://{address}"


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("ANCHORAGE_BIN", str(REPO / "target" / "debug" / "anchorage"))
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="anchorage-compat-"))
    env = dict(
        os.environ,
        ANCHORAGE_DATA_DIR=str(data_dir),
        ANCHORAGE_API_KEY=API_KEY,
        ANCHORAGE_MAX_SESSIONS="4",
        ANCHORAGE_LOG="warn",
    )
    process, base_url = start_anchorage(binary, env)
    yield {"base_url": base_url, "data_dir": data_dir}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while browser_pids(data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert browser_pids(data_dir) == [], "browsers left after shutdown"
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture()
def client(server, monkeypatch):
    # The SDK reads its base URL from the environment, as a user would set it.
    monkeypatch.setenv("ANCHORBROWSER_BASE_URL", server["base_url"])
    from anchorbrowser import Anchorbrowser

    # Every answer must load under the SDK's strict validation.
    return Anchorbrowser(api_key=API_KEY, _strict_response_validation=True)
