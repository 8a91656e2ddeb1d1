"""LangChain's Anchor Browser tools (langchain-anchorbrowser 0.2.0, a client
nobody here wrote, on the SDK 0.3 wire it pins), unchanged, against
anchorage: the content tool's Markdown and the screenshot tool's size. They
run in a virtual environment of their own (the test command makes it), since
they pin an older SDK than the other tests."""

import json
import os
import subprocess

import httpx

from conftest import API_KEY, REPO

PYTHON = REPO / "target" / "compat-langchain" / "bin" / "python"


def test_langchain_content_and_screenshot_tools(server, page_url):
    env = dict(os.environ, ANCHORBROWSER_API_KEY=API_KEY, ANCHORBROWSER_BASE_URL=server["base_url"])
    try:
        ran = subprocess.run([str(PYTHON), str(REPO / "tests/compat/langchain/run_tools.py"), page_url + "article"],
                             env=env, capture_output=True, text=True, timeout=180)
    finally:
        # The tools start a session each and leave it running: end them.
        httpx.delete(server["base_url"] + "/v1/sessions/all", headers={"anchor-api-key": API_KEY}, timeout=60)
    assert ran.returncode == 0, ran.stderr
    told = json.loads(ran.stdout.strip().splitlines()[-1])
    markdown = told["markdown"]
    assert "# Quarterly report" in markdown and "## Revenue" in markdown, markdown
    assert "[the first quarter](https://example.com/q1)" in markdown, markdown
    assert "<h1>" not in markdown, markdown
    assert told["png_size"] == [800, 600], told


def test_langchain_task_toolkit_creates_deploys_runs_lists_and_deletes(server, page_url):
    env = dict(os.environ, ANCHORBROWSER_API_KEY=API_KEY, ANCHORBROWSER_BASE_URL=server["base_url"])

    def running():
        answer = httpx.get(server["base_url"] + "/v1/sessions/all/status", headers={"anchor-api-key": API_KEY}, timeout=30)
        return {item["session_id"] for item in answer.json()["data"]["items"]}

    before = running()
    ran = subprocess.run([str(PYTHON), str(REPO / "tests/compat/langchain/run_task_tools.py"), "langchain-title", page_url],
                         env=env, capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stderr
    told = json.loads(ran.stdout.strip().splitlines()[-1])
    task_id = told["create"]["data"]["id"]
    assert told["create"]["data"]["name"] == "langchain-title", told
    assert any(task["id"] == task_id for task in told["list"]["data"]["tasks"]), told
    assert told["deploy"]["data"]["version"] == "1", told
    run = told["run"]["data"]
    assert run["success"] is True, told
    assert json.loads(run["output"]) == {"title": "anchorage compatibility page", "who": "langchain"}, told
    results = told["executions"]["data"]["results"]
    assert [result["status"] for result in results] == ["success"], told
    assert told["delete"]["success"] is True, told
    # The run's own session ended with it (cleanupSessions defaults to true).
    assert running() <= before
