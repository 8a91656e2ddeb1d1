"""Ad blocking (on by default) with Playwright's own request interception:
`page.route` still sees every request that was not blocked, and a request
the lists block never reaches the site, whatever the route did with it."""

import http.server
import threading

from playwright.sync_api import sync_playwright


class SiteHandler(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):  # noqa: N802 (the standard library's name)
        SiteHandler.seen.append(self.path)
        if self.path == "/adpage":
            body, kind = (b"<!doctype html><title>ads</title><p id=content>content</p>"
                          b"<img src=/ads/banners/top.png><img src=/logo.png><script src=/app.js></script>"), "text/html"
        elif self.path == "/app.js":
            body, kind = b"window.appLoaded = true;", "text/javascript"
        else:
            body, kind = b"GIF89a", "image/gif"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_page_route_sees_what_is_not_blocked_and_blocked_requests_never_leave(client):
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SiteHandler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{site.server_address[1]}"
    created = client.sessions.create_session()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.connect_over_cdp(created.data.cdp_url)
            page = browser.contexts[0].pages[0]
            routed = []

            def route(handled):
                routed.append(handled.request.url)
                handled.continue_()

            page.route("**/*", route)
            page.goto(base + "/adpage")
            page.wait_for_function("window.appLoaded === true")
            page.wait_for_function("[...document.images].every((image) => image.complete)")
            for path in ["/adpage", "/app.js", "/logo.png"]:
                assert base + path in routed, routed
                assert path in SiteHandler.seen, SiteHandler.seen
            # EasyList's /ads/banners/*$image: failed in the browser, never sent.
            assert "/ads/banners/top.png" not in SiteHandler.seen, SiteHandler.seen
            broken = page.evaluate("[...document.images].filter((image) => image.naturalWidth === 0)"
                                   ".map((image) => new URL(image.src).pathname)")
            assert "/ads/banners/top.png" in broken, broken
            browser.close()
    finally:
        client.sessions.delete_session(created.data.id)
        site.shutdown()
