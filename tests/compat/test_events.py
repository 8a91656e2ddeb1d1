"""The official SDK's named events with strict response validation: a
waiter in one thread is released by a signal from another client."""

import threading
import time

import anchorbrowser
import httpx
import pytest

from conftest import API_KEY


def test_sdk_wait_is_released_by_a_signal_and_times_out_cleanly(server):
    strict = anchorbrowser.Anchorbrowser(api_key=API_KEY, base_url=server["base_url"],
                                         _strict_response_validation=True, max_retries=0)
    got = {}

    def wait():
        got["event"] = strict.events.wait_for_event("sdk-ready", timeout_ms=20_000)

    waiter = threading.Thread(target=wait)
    waiter.start()
    # A signal with nobody waiting is not kept: signal once the wait arrived.
    deadline = time.monotonic() + 10
    while "anchorage_event_waiters 1\n" not in httpx.get(server["base_url"] + "/metrics").text:
        assert time.monotonic() < deadline, "the wait did not arrive"
        time.sleep(0.01)
    assert strict.events.signal_event("sdk-ready", data={"step": "approved"}).data.status == "success"
    waiter.join(timeout=30)
    assert got["event"].data == {"step": "approved"}
    with pytest.raises(anchorbrowser.APIStatusError) as timed_out:
        strict.events.wait_for_event("nobody-signals", timeout_ms=300)
    assert timed_out.value.status_code == 504
