"""The official SDK's eight webhook methods with strict response validation,
against a receiver this test runs on 127.0.0.1 that checks each delivery's
signature the way upstream's documentation tells receivers to."""

import hashlib
import hmac
import http.server
import json
import threading
import time

import anchorbrowser

from conftest import API_KEY


class Receiver(http.server.BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):  # noqa: N802 (the standard library's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.got.append((self.headers, body))  # case-insensitive names
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def verified(headers, body: bytes, secret: str) -> bool:
    """Upstream's recipe: HMAC-SHA256 of "v0:{timestamp}:{raw body}", hex,
    compared in constant time with a v1 of Anchor-Signature."""
    timestamp = headers["Anchor-Timestamp"]
    if abs(time.time() - int(timestamp)) > 120:
        return False
    expected = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    parts = dict(part.split("=", 1) for part in headers["Anchor-Signature"].split(",")[:1])
    signatures = [part[3:] for part in headers["Anchor-Signature"].split(",") if part.startswith("v1=")]
    return parts.get("t") == timestamp and any(hmac.compare_digest(expected, given) for given in signatures)


def wait_for(count: int) -> list:
    deadline = time.monotonic() + 30
    while len(Receiver.got) < count:
        assert time.monotonic() < deadline, f"waited for {count} deliveries, got {len(Receiver.got)}"
        time.sleep(0.05)
    return Receiver.got


def test_sdk_webhooks_deliver_signed_events_and_every_method_validates(server):
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    strict = anchorbrowser.Anchorbrowser(api_key=API_KEY, base_url=server["base_url"],
                                         _strict_response_validation=True, max_retries=0)
    try:
        made = strict.webhooks.create_webhook(url=url, subscribed_events=["session.completed"],
                                              description="compat")
        assert made.secret and made.enabled and made.description == "compat"
        assert str(made.url) == url
        assert made.id in [webhook.id for webhook in strict.webhooks.list_webhooks().webhooks]
        assert strict.webhooks.get_webhook(made.id).subscribed_events[0].root == "session.completed"

        session = strict.sessions.create_session()
        strict.sessions.delete_session(session.data.id)
        headers, body = wait_for(1)[0]
        envelope = json.loads(body)
        assert envelope["type"] == "session.completed"
        assert envelope["data"]["session_id"] == session.data.id
        assert headers["Anchor-Event"] == "session.completed"
        assert verified(headers, body, made.secret)

        updated = strict.webhooks.update_webhook(made.id, subscribed_events=["batch.completed", "batch.failed"])
        assert [event.root for event in updated.subscribed_events] == ["batch.completed", "batch.failed"]
        rotated = strict.webhooks.rotate_webhook_secret(made.id)
        assert rotated.secret != made.secret
        sent = strict.webhooks.send_webhook_test_event(made.id, event_type="batch.failed")
        assert sent.event_type.root == "batch.failed"
        headers, body = wait_for(2)[1]
        assert json.loads(body)["id"] == sent.external_event_id
        assert verified(headers, body, rotated.secret) and verified(headers, body, made.secret)

        deadline = time.monotonic() + 30
        while True:
            rows = strict.webhooks.list_webhook_events(made.id, limit=10)
            if all(row.status == "succeeded" for row in rows.events) and rows.pagination.total == 2:
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.1)
        assert {row.external_event_id for row in rows.events} >= {sent.external_event_id}
        assert rows.events[0].attempt == 1 and rows.events[0].response_status == 200
        failed_only = strict.webhooks.list_webhook_events(made.id, status="failed")
        assert failed_only.events == [] and failed_only.pagination.total == 0
    finally:
        for webhook in strict.webhooks.list_webhooks().webhooks:
            if str(webhook.url) == url:
                assert strict.webhooks.delete_webhook(webhook.id).ok is True
        receiver.shutdown()
