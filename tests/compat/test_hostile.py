"""Hostile input from schemathesis, generated from our own /openapi.json.

Every operation gets a bounded number of generated requests, valid and
invalid (wrong types, out-of-range values, odd strings). Whatever comes in:
no 5xx, every error is the contract's JSON body, and no browser outlives
the run. Run by hand in plain pytest (schemathesis's pytest plugin does not work
with the pytest pinned here). The test cleans up what the valid requests started after each
case, so the server's four places never fill up."""

import collections
import json
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from conftest import API_KEY, browser_pids, gauge

HEADERS = {"anchor-api-key": API_KEY}


def operations(base_url):
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        # WebSocket upgrades are not plain requests, and a wait for an event
        # holds its request open for up to its timeout (ten minutes): they
        # are tested elsewhere.
        if operation.path.startswith(("/cdp/", "/live/")) or operation.path.endswith("/wait"):
            continue
        yield operation


def clean_up(base_url, response):
    """Ends what a successful request started, including an asynchronous
    start, which is waited for: it must not come up during a later test."""
    try:
        data = response.json().get("data") or {}
    except (ValueError, AttributeError):
        data = {}
    if response.status_code == 200 and isinstance(data, dict):
        if data.get("batch_id"):
            requests.delete(f"{base_url}/v1/batch-sessions/{data['batch_id']}", headers=HEADERS, timeout=60)
        if data.get("request_id") and data.get("status") == "pending":
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = requests.get(
                    f"{base_url}/v1/sessions/async/{data['request_id']}/status", headers=HEADERS, timeout=60
                ).json()["data"]["status"]
                if status not in ("pending", "processing"):
                    break
                time.sleep(0.1)
    # A generated webhook would be told of these sessions' ends, at a
    # generated URL: it goes first.
    for webhook in requests.get(base_url + "/v1/webhooks", headers=HEADERS, timeout=60).json()["webhooks"]:
        requests.delete(f"{base_url}/v1/webhooks/{webhook['id']}", headers=HEADERS, timeout=60)
    requests.delete(base_url + "/v1/sessions/all", headers=HEADERS, timeout=60)


def browser_dirs(data_dir):
    """The profile dir names of the browsers running under `data_dir` (one
    per browser: a launched one's is its session's id without dashes, a
    warm pool's starts with `pool`)."""
    marker = f"--user-data-dir={data_dir.resolve()}/browsers/".encode()
    names = set()
    for pid in browser_pids(data_dir):
        try:
            arguments = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        for argument in arguments:
            if argument.startswith(marker):
                names.add(argument[len(marker):].split(b"/")[0].decode())
    return names


def strays(server):
    """Browsers named after a session that is not live (starting or
    running). (A warm pool's browser keeps its pool name when it serves a
    session, and the pool refills in the background: those are left to the
    final check, after every session has ended.)"""
    names = {name for name in browser_dirs(server["data_dir"]) if not name.startswith("pool")}
    if not names:
        return []
    live = requests.get(server["base_url"] + "/v1/sessions/all/status", headers=HEADERS, timeout=60).json()["data"]
    live_ids = {item["session_id"].replace("-", "") for item in live["items"]}
    # A host browser of context sessions is accounted for by a live session
    # whose folder (`contexts/<session>`) is in its directory.
    browsers = server["data_dir"].resolve() / "browsers"
    hosts_in_use = {
        name for name in names if name.startswith("host")
        and any(entry.name in live_ids for entry in (browsers / name / "contexts").glob("*"))
    }
    return sorted(names - live_ids - hosts_in_use)


def no_strays(server, where):
    """Fails unless every running browser is accounted for (allowing the
    moments a browser takes to go after its session's end)."""
    deadline = time.monotonic() + 15
    while (found := strays(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found == [], f"{where}: browsers no session accounts for: {found}"


def check(case, response):
    where = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]
        assert content_type[0].startswith("application/json"), f"{where}: {response.text}"
        body = json.loads(response.text)
        assert body["error"]["code"] == response.status_code, f"{where}: {body}"
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], f"{where}: {body}"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_breaks_the_server(server, mode):
    base_url = server["base_url"]
    tried = 0
    statuses = collections.Counter()
    for operation in operations(base_url):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def run(case):
            nonlocal tried
            # As generated (the key too), then with a valid key.
            for headers in [{}, HEADERS]:
                tried += 1
                case.headers = {**(case.headers or {}), **headers}
                response = case.call(base_url=base_url, timeout=120)
                statuses[response.status_code] += 1
                try:
                    check(case, response)
                    # What the request left running, before the test's own
                    # clean-up ends it: every browser is a live session's.
                    no_strays(server, f"{case.method} {case.formatted_path}")
                finally:
                    clean_up(base_url, response)

        try:
            run()
        except Unsatisfiable:
            # Nothing about this operation can be made invalid (no parameters, no body).
            assert mode == GenerationMode.NEGATIVE
    assert tried > 60, tried
    print(f"{mode.value}: {tried} requests, by status: {dict(sorted(statuses.items()))}")


def test_no_browser_outlives_the_generated_requests(server):
    # Checked before anything is ended here: what the generated requests
    # left is all accounted for; then each live session ends on its own and
    # its browser with it.
    no_strays(server, "after the generated requests")
    live = requests.get(server["base_url"] + "/v1/sessions/all/status", headers=HEADERS, timeout=60).json()
    for item in live["data"]["items"]:
        requests.delete(f"{server['base_url']}/v1/sessions/{item['session_id']}", headers=HEADERS, timeout=60)
    listed = requests.get(server["base_url"] + "/v1/batch-sessions?limit=100", headers=HEADERS, timeout=60).json()
    for batch in listed["data"]["batches"]:
        requests.delete(f"{server['base_url']}/v1/batch-sessions/{batch['batch_id']}", headers=HEADERS, timeout=60)
    live = requests.get(server["base_url"] + "/v1/sessions/all/status", headers=HEADERS, timeout=60).json()
    assert live["data"]["count"] == 0, live
    # The browsers waiting in the warm pool stay; no other may (a pooled
    # browser that served a session included).
    def left():
        names = browser_dirs(server["data_dir"])
        return len(names) - gauge(server["base_url"], "anchorage_pool_browsers"), sorted(names)

    deadline = time.monotonic() + 15
    while left()[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left()[0] == 0, left()
