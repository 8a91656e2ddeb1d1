"""The official SDK's extensions and CA certificates, a session's own
proxy, and the browser options that are Chromium's own, against anchorage
with strict response validation; each effect is read back from a page with
Playwright (or, for dialogs, with a bare DevTools client)."""

import base64
import http.server
import io
import itertools
import json
import socketserver
import subprocess
import threading
import zipfile

import anchorbrowser
import httpx
import pytest
from playwright.sync_api import sync_playwright
from websockets.sync.client import connect as ws_connect

from conftest import API_KEY, PageHandler


@pytest.fixture()
def strict(server):
    return anchorbrowser.Anchorbrowser(api_key=API_KEY, base_url=server["base_url"], _strict_response_validation=True)


def page_of(strict, browser=None, session=None):
    """Starts a session, yields its page through Playwright, ends it."""
    created = strict.sessions.create_session(browser=browser or {}, session=session or {}).data
    playwright = sync_playwright().start()
    connected = playwright.chromium.connect_over_cdp(created.cdp_url)
    return created, playwright, connected, connected.contexts[0].pages[-1]


def end(strict, created, playwright, connected):
    connected.close()
    playwright.stop()
    strict.sessions.delete_session(created.id)


def test_sdk_extension_marks_the_pages_of_sessions_that_load_it(strict, page_url):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("manifest.json", '{"manifest_version": 3, "name": "sdk marker", "version": "1.0", '
                        '"content_scripts": [{"matches": ["<all_urls>"], "js": ["m.js"], "run_at": "document_end"}]}')
        zipped.writestr("m.js", "document.documentElement.dataset.sdk = 'marked';")
    uploaded = strict.extensions.upload_extension(name="sdk marker", file=("marker.zip", archive.getvalue())).data
    assert uploaded.manifest.name == "sdk marker"
    assert strict.extensions.get_extension(str(uploaded.id)).name == "sdk marker"
    assert str(uploaded.id) in [str(item.id) for item in strict.extensions.list_extensions().data]

    created, playwright, connected, page = page_of(strict, browser={"extensions": [str(uploaded.id)]})
    try:
        page.goto(page_url)
        page.wait_for_function("document.documentElement.dataset.sdk === 'marked'")
    finally:
        end(strict, created, playwright, connected)
    assert strict.extensions.delete_extension(str(uploaded.id)).data.data.status == "success"
    with pytest.raises(anchorbrowser.BadRequestError):
        strict.extensions.upload_extension(name="broken", file=("broken.zip", b"not a zip"))


def test_sdk_certificate_is_trusted_by_the_sessions_that_name_it(strict, tmp_path):
    def openssl(*arguments):
        subprocess.run(["openssl", *arguments], cwd=tmp_path, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=sdk test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf")
    (tmp_path / "index.html").write_text("<title>sdk secure page</title>")
    with socketserver.TCPServer(("127.0.0.1", 0), None) as probe:
        port = probe.server_address[1]
    server = subprocess.Popen(["openssl", "s_server", "-quiet", "-WWW", "-accept", str(port), "-cert", "leaf.pem",
                               "-key", "leaf.key"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        made = strict.certificates.create_certificate(name="sdk-ca", file=("ca.pem", (tmp_path / "ca.pem").read_bytes()),
                                                      description="made by the test").data
        assert made.name == "sdk-ca" and made.description == "made by the test"
        assert "sdk-ca" in [item.name for item in strict.certificates.list_certificates().data]
        url = f"https://127.0.0.1:{port}/index.html"
        for browser, wanted in (({"certificates": ["sdk-ca"]}, "sdk secure page"), ({}, "Privacy error")):
            created, playwright, connected, page = page_of(strict, browser=browser)
            try:
                try:
                    page.goto(url)
                except Exception:  # noqa: BLE001 (an interstitial fails the navigation in Playwright)
                    pass
                page.wait_for_function(f"document.title === {wanted!r}")
            finally:
                end(strict, created, playwright, connected)
        assert strict.certificates.delete_certificate("sdk-ca").data.status == "success"
        with pytest.raises(anchorbrowser.BadRequestError):
            strict.certificates.create_certificate(name="leaf", file=("leaf.pem", (tmp_path / "leaf.pem").read_bytes()))
    finally:
        server.kill()
        server.wait()


class AuthProxy(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """An HTTP proxy that wants sdk:pa55 and answers every request itself."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.served = 0
        self.wanted = "Basic " + base64.b64encode(b"sdk:pa55").decode()
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = []
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                head.append(line.decode("latin-1").strip())
            if not head:
                return
            given = next((line.split(":", 1)[1].strip() for line in head
                          if line.lower().startswith("proxy-authorization:")), None)
            if given != self.server.wanted:
                self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 b"Proxy-Authenticate: Basic realm=\"sdk\"\r\nContent-Length: 0\r\n\r\n")
                continue
            self.server.served += 1
            body = b"<title>through the proxy</title>"
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def test_sdk_session_browses_through_its_own_proxy(strict):
    proxy = AuthProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        settings = {"type": "custom", "server": f"http://127.0.0.1:{proxy.server_address[1]}",
                    "username": "sdk", "password": "pa55", "active": True}
        created, playwright, connected, page = page_of(strict, session={"proxy": settings})
        try:
            page.goto("http://proxied.test/")
            assert page.title() == "through the proxy" and proxy.served >= 1
            # (Read raw: the SDK's model of this answer types `tags` as an object,
            # where the sessions contract and every other answer give a list.)
            shown = httpx.get(f"{str(strict.base_url).rstrip('/')}/v1/sessions/{created.id}", headers={"anchor-api-key": API_KEY})
            assert shown.json()["data"]["configuration"]["session"]["proxy"]["password"] == "[redacted]"
            assert "pa55" not in shown.text
        finally:
            end(strict, created, playwright, connected)
        with pytest.raises(anchorbrowser.BadRequestError):
            strict.sessions.create_session(session={"proxy": {"type": "anchor_proxy", "active": True}})
    finally:
        proxy.shutdown()
        proxy.server_close()


# A page that opens a window as it loads (no user gesture), says whether it
# could, and can try to read another origin that sends no CORS headers.
FLAGS_PAGE = (
    "<!doctype html><title>flags</title><script>"
    "window.opened = window.open('about:blank#onload') ? 'opened' : 'blocked';"
    "window.readOther = url => fetch(url).then(r => r.text()).then(() => 'read', () => 'blocked');"
    "</script>"
)


class FlagsHandler(PageHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        if self.path != "/flags":
            return super().do_GET()
        body = FLAGS_PAGE.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def dialogs_answered(cdp_url, url, accept):
    """Runs three dialogs (confirm, prompt, alert) on the tab showing `url`
    through a bare DevTools client and returns what they gave the page. With
    `accept` set the client accepts each dialog itself; without it the client
    does nothing, so the page goes on only if something else answers."""
    with ws_connect(cdp_url, max_size=None, open_timeout=10) as socket:
        numbers = itertools.count(1)

        def call(method, params, session=None):
            number = next(numbers)
            socket.send(json.dumps({"id": number, "method": method, "params": params,
                                    **({"sessionId": session} if session else {})}))
            while True:
                message = json.loads(socket.recv(timeout=20))
                if message.get("id") == number:
                    return message["result"]
                if accept and message.get("method") == "Page.javascriptDialogOpening":
                    socket.send(json.dumps({"id": next(numbers), "method": "Page.handleJavaScriptDialog",
                                            "params": {"accept": True}, "sessionId": message["sessionId"]}))

        target = next(info["targetId"] for info in call("Target.getTargets", {})["targetInfos"]
                      if info["type"] == "page" and info["url"] == url)
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        if accept:
            call("Page.enable", {}, session)
        answer = call("Runtime.evaluate", {"expression": "[confirm('sure?'), prompt('name?'), (alert('hi'), 'after')]",
                                           "returnByValue": True}, session)
        return answer["result"]["value"]


def test_sdk_native_browser_flags_show_their_effect(strict, page_url):
    """One session with every one of `disable_web_security`, `popup_blocker`
    off, `pdf_viewer` off, `fullscreen`, `disable_dialogs` and
    `force_popups_as_tabs`, one with none, the same page in each."""
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlagsHandler)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{pages.server_address[1]}/flags"
    flagged = {"disable_web_security": {"active": True}, "popup_blocker": {"active": False},
               "pdf_viewer": {"active": False}, "fullscreen": {"active": True},
               "disable_dialogs": {"active": True}, "force_popups_as_tabs": {"active": True},
               "viewport": {"width": 1024, "height": 700}}
    seen = {}
    try:
        for name, browser in (("flagged", flagged), ("plain", {"viewport": {"width": 1024, "height": 700}})):
            created = strict.sessions.create_session(browser=browser).data
            playwright = sync_playwright().start()
            try:
                assert strict.sessions.goto(created.id, url=url).status == "navigated"
                # Dialogs first, before Playwright (which answers dialogs nobody handles).
                if name == "flagged":
                    seen["dialogs"] = dialogs_answered(created.cdp_url, url, accept=False)
                else:
                    seen["plain dialogs"] = dialogs_answered(created.cdp_url, url, accept=True)
                connected = playwright.chromium.connect_over_cdp(created.cdp_url)
                page = next(page for page in connected.contexts[0].pages if page.url == url)
                seen[name] = page.evaluate(
                    "async other => [window.opened, await readOther(other), navigator.pdfViewerEnabled,"
                    " [innerWidth, innerHeight, screen.width, screen.height, outerWidth]]", page_url)
                # A popup opened with a gesture (Playwright's evaluate gives
                # one): a tab of the opener's window, or a window of its own.
                cdp = connected.new_browser_cdp_session()
                opener = page.context.new_cdp_session(page).send("Target.getTargetInfo")["targetInfo"]["targetId"]
                with page.expect_popup() as popup:
                    page.evaluate("void window.open('about:blank#popup', '', 'popup,width=320,height=240')")
                popup.value.wait_for_load_state()
                popup_target = next(info["targetId"] for info in cdp.send("Target.getTargets")["targetInfos"]
                                    if info["url"].endswith("#popup"))
                windows = [cdp.send("Browser.getWindowForTarget", {"targetId": target})["windowId"]
                           for target in (opener, popup_target)]
                seen[name + " popup"] = "tab" if windows[0] == windows[1] else "window"
                connected.close()
            finally:
                playwright.stop()
                strict.sessions.delete_session(created.id)
    finally:
        pages.shutdown()
        pages.server_close()
    assert seen["flagged"] == ["opened", "read", False, [1024, 700, 1024, 700, 1024]], seen
    opened, read, viewer, sizes = seen["plain"]
    assert (opened, read, viewer) == ("blocked", "blocked", True), seen
    assert sizes[:2] == [1024, 700] and sizes[2:4] != [1024, 700], seen
    assert seen["flagged popup"] == "tab" and seen["plain popup"] == "window", seen
    assert seen["dialogs"] == [False, None, "after"], seen
    assert seen["plain dialogs"] == [True, "", "after"], seen
