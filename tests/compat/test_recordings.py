"""A headful, recorded session through the official SDK with strict
response validation, driven by Playwright: the live view answers, the
recording pauses and resumes, and once the session ends the primary
recording is an MP4 that ffprobe reads, about as long as the session."""

import json
import subprocess
import tempfile
import time
import urllib.request

import anchorbrowser
from playwright.sync_api import sync_playwright

from conftest import API_KEY, PAGE_TITLE


def frame_colours(video):
    """The video's colours in order, four frames a second, each frame
    averaged to one pixel and named when it is clearly green or blue."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", video, "-vf", "fps=4,scale=1:1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    names = []
    for at in range(0, len(raw) - 2, 3):
        red, green, blue = raw[at], raw[at + 1], raw[at + 2]
        name = "green" if green > 150 and red < 100 and blue < 100 else \
            "blue" if blue > 150 and red < 100 and green < 100 else "other"
        if not names or names[-1] != name:
            names.append(name)
    return names


def test_sdk_headful_recorded_session_with_playwright(server, page_url):
    strict = anchorbrowser.Anchorbrowser(api_key=API_KEY, base_url=server["base_url"],
                                         _strict_response_validation=True, max_retries=0)
    created = strict.sessions.create_session(
        session={"recording": {"active": True}},
        browser={"headless": {"active": False}, "viewport": {"width": 800, "height": 600}},
    )
    session_id = created.data.id
    started = time.monotonic()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.connect_over_cdp(created.data.cdp_url)
            page = browser.contexts[0].pages[0]
            page.goto(page_url)
            assert page.title() == PAGE_TITLE
            agent, size = page.evaluate("[navigator.userAgent, [innerWidth, innerHeight]]")
            assert "Headless" not in agent and size == [800, 600]
            with urllib.request.urlopen(created.data.live_view_url, timeout=30) as live:
                assert live.status == 200
            assert strict.recordings.pause_recording(session_id).data.data.status == "success"
            page.evaluate("document.body.style.background = 'rgb(0, 255, 0)'")
            time.sleep(1)
            # Neutral again before the resume: green may show only if the
            # pause let frames through.
            page.evaluate("document.body.style.background = 'rgb(255, 255, 255)'")
            assert strict.recordings.resume_recording(session_id).data.data.status == "success"
            page.evaluate("document.body.style.background = 'rgb(0, 0, 255)'")
            time.sleep(1.5)
            browser.close()
        listed = strict.recordings.list_recordings(session_id)
        assert listed.data.count == 1 and listed.data.items[0].is_primary
    finally:
        strict.sessions.delete_session(session_id)
    recorded_for = time.monotonic() - started

    # Fetched straight after the delete, as a user writes it: the fetch
    # waits for the recording to be finished.
    video = strict.recordings.fetch_primary_recording(session_id)
    assert strict.recordings.list_recordings(session_id).data.items[0].duration != "00:00:00"
    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(video.read())
        file.flush()
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name",
                                "-of", "json", file.name], capture_output=True, text=True, check=True)
        colours = frame_colours(file.name)
    facts = json.loads(probe.stdout)
    assert facts["streams"][0]["codec_name"] == "h264"
    length = float(facts["format"]["duration"])
    # What the page showed while paused (green) is nowhere in the video;
    # what it showed after the resume (blue) is.
    assert "blue" in colours and "green" not in colours, colours
    # The paused second is not in it; the start before the first frame neither.
    assert 0 < length < recorded_for - 0.5, (length, recorded_for)
    assert strict.recordings.delete_recording(session_id, "primary").data.status == "success"
    assert strict.recordings.list_recordings(session_id).data.count == 0
