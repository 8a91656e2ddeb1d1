"""The official SDK's profiles against anchorage, with strict response
validation: a cookie and a localStorage value set in a session that
persists into a profile are there in the next session started from it,
and a profile made from a running session is listed once it ended."""

import time

import anchorbrowser
import pytest
from playwright.sync_api import sync_playwright

from conftest import API_KEY


@pytest.fixture()
def strict(server):
    return anchorbrowser.Anchorbrowser(api_key=API_KEY, base_url=server["base_url"], _strict_response_validation=True)


def read_and_write(strict, page_url, browser, write):
    """Starts a session with `browser`, reads the page's cookie and stored
    value, optionally writes new ones, and ends the session."""
    session = strict.sessions.create_session(browser=browser).data
    try:
        with sync_playwright() as playwright:
            connected = playwright.chromium.connect_over_cdp(session.cdp_url)
            page = connected.contexts[0].pages[-1]
            page.goto(page_url)
            seen = page.evaluate("[document.cookie, localStorage.getItem('seen')]")
            if write:
                page.evaluate("document.cookie = 'member=1; max-age=3600; path=/'; localStorage.setItem('seen', 'yes')")
            connected.close()
    finally:
        strict.sessions.delete_session(session.id)
    return seen


def wait_for_status(strict, name, wanted):
    deadline = time.monotonic() + 30
    while (status := strict.profiles.get_profile(name).data.status) != wanted:
        assert time.monotonic() < deadline, f"{name} is {status}"
        time.sleep(0.1)


def test_sdk_profiles_carry_state_from_one_session_to_the_next(strict, page_url):
    assert strict.profiles.create_profile(name="sdk-profile", description="kept state").data.status == "success"
    persist = {"profile": {"name": "sdk-profile", "persist": True}}
    assert read_and_write(strict, page_url, persist, write=True) == ["", None]
    # Started at once while the state is being written (the profile shows
    # `saving`): the start waits for the save and has the state.
    assert read_and_write(strict, page_url, {"profile": {"name": "sdk-profile"}}, write=False) == ["member=1", "yes"]
    assert strict.profiles.get_profile("sdk-profile").data.status == "ready"
    assert read_and_write(strict, page_url, {}, write=False) == ["", None]

    # A profile is a browser's directory: its source is a browser of its own
    # (the server may make context sessions by default).
    session = strict.sessions.create_session(extra_body={"anchorage": {"isolation": "browser"}}).data
    try:
        assert strict.profiles.create_profile(name="sdk-live", source="session", session_id=session.id).data.status == "success"
        assert strict.profiles.get_profile("sdk-live").data.status == "pending"
        # Nothing is saved while its session runs: a start naming it says so.
        with pytest.raises(anchorbrowser.BadRequestError, match="saved when session"):
            strict.sessions.create_session(browser={"profile": {"name": "sdk-live"}})
    finally:
        strict.sessions.delete_session(session.id)
    wait_for_status(strict, "sdk-live", "ready")
    # Other tests of this server (the hostile-input one) make profiles too: look at ours.
    listed = strict.profiles.list_profiles().data
    ours = [item for item in listed.items if item.name in ("sdk-profile", "sdk-live")]
    assert [item.name for item in ours] == ["sdk-profile", "sdk-live"] and listed.count == len(listed.items)
    assert str(ours[1].session_id) == session.id

    for name in ("sdk-profile", "sdk-live"):
        assert strict.profiles.delete_profile(name).data.status == "success"
    with pytest.raises(anchorbrowser.NotFoundError):
        strict.profiles.get_profile("sdk-profile")
    with pytest.raises(anchorbrowser.BadRequestError):
        strict.sessions.create_session(browser={"profile": {"name": "sdk-profile"}})
