"""The official SDK's extensions and CA certificates, and a session's own
proxy, against anchorage with strict response validation; each effect is
read back from a page with Playwright."""

import base64
import io
import socketserver
import subprocess
import threading
import zipfile

import anchorbrowser
import httpx
import pytest
from playwright.sync_api import sync_playwright

from conftest import API_KEY


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
