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

from conftest import API_KEY, browser_pids

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
    requests.delete(server["base_url"] + "/v1/sessions/all", headers=HEADERS, timeout=60)
    listed = requests.get(server["base_url"] + "/v1/batch-sessions?limit=100", headers=HEADERS, timeout=60).json()
    for batch in listed["data"]["batches"]:
        requests.delete(f"{server['base_url']}/v1/batch-sessions/{batch['batch_id']}", headers=HEADERS, timeout=60)
    live = requests.get(server["base_url"] + "/v1/sessions/all/status", headers=HEADERS, timeout=60).json()
    assert live["data"]["count"] == 0, live
    # The warm pool's browsers (profile dirs named pool…) stay; no other may.
    pool_marker = f"--user-data-dir={server['data_dir'].resolve()}/browsers/pool".encode()

    def session_browsers():
        found = []
        for pid in browser_pids(server["data_dir"]):
            try:
                arguments = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if not any(argument.startswith(pool_marker) for argument in arguments):
                found.append(pid)
        return found

    deadline = time.monotonic() + 15
    while session_browsers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_browsers() == []
