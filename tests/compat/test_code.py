"""The user's code beside the browser, through the official SDK 1.0.1 with
strict response validation: `tools.execute_code`, and every method of
`tasks_legacy` (create, list, get, update, drafts, deploy, publish,
versions, runs by id and by name, sync and async, executions, deletes),
with a second team that cannot see the first one's task. LangChain's task
tools (a client nobody here wrote) run against the same server in
test_langchain.py."""

import base64
import os
import subprocess
import time

import anchorbrowser
import pytest

from conftest import REPO


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# A task as upstream's documentation writes one: a default export that
# reads its inputs from the environment, builds the npm SDK's client from
# the environment (ANCHORBROWSER_BASE_URL and the run's key), and drives
# its session's page; here it also reads the session through that client.
TASK_CODE = """
import Anchorbrowser from 'anchorbrowser';

export default async function run({ page }: { page: any }) {
  const client = new Anchorbrowser();
  const session = await client.sessions.retrieve(process.env.ANCHOR_SESSION_ID as string);
  await page.goto(process.env.ANCHOR_TARGET_URL as string);
  const title: string = await page.title();
  return { title, greeting: process.env.ANCHOR_GREETING, sessionStatus: session.data?.status };
}
"""


@pytest.fixture()
def session(client):
    created = client.sessions.create_session()
    yield created.data.id
    client.sessions.delete_session(created.data.id)


def test_execute_code_returns_the_snippets_value_and_reports_a_throw(client, session, page_url):
    done = client.tools.execute_code(
        session_id=str(session),
        code=f"await page.goto({page_url!r}); return {{ title: await page.title(), n: 21 * 2 }};",
    )
    assert done.success is True, done
    assert done.output is not None and '"n":42' in done.output, done
    assert "compatibility" in done.output, done
    assert done.execution_result_id, done
    failed = client.tools.execute_code(session_id=session, code="throw new Error('not today')")
    assert failed.success is False and "not today" in (failed.error or ""), failed
    with pytest.raises(anchorbrowser.BadRequestError):
        client.tools.execute_code(session_id=session, code="")
    with pytest.raises(anchorbrowser.NotFoundError):
        client.tools.execute_code(session_id="182bd5e5-6e1a-4fe4-a799-aa6d9a6ab26e", code="return 1")


def test_a_task_is_kept_in_versions_and_runs_with_inputs_sync_and_async(client, server, session, page_url):
    tasks = client.tasks_legacy
    name = f"title-{int(time.time() * 1000)}"
    created = tasks.create_task(name=name, language="typescript", code=b64(TASK_CODE), description="reads a title")
    task = created.data
    assert task.name == name and task.latest_version == "draft" and base64.b64decode(task.code).decode() == TASK_CODE
    with pytest.raises(anchorbrowser.ConflictError):
        tasks.create_task(name=name, language="typescript")
    with pytest.raises(anchorbrowser.BadRequestError):
        tasks.create_task(name="has spaces", language="typescript")
    assert any(listed.id == task.id for listed in tasks.list_tasks(page="1", limit="100").data.tasks)

    assert tasks.update_task(task.id, description="reads the title").data.description == "reads the title"
    assert tasks.get_task(task.id).data.latest == "draft"
    assert tasks.get_task_draft(task.id).data.version == "draft"
    saved = tasks.save_task_draft(task.id, code=b64(TASK_CODE), description="draft two")
    assert saved.data.description == "draft two"

    deployed = tasks.deploy_task(task.id)  # the draft's code, as version 1
    assert deployed.data.version == "1" and deployed.data.code == b64(TASK_CODE)
    published = tasks.publish_task_version(task.id, "5", code=b64(TASK_CODE), description="five")
    assert published.data.version == "5"
    with pytest.raises(anchorbrowser.BadRequestError):
        tasks.publish_task_version(task.id, "latest", code=b64(TASK_CODE))
    assert tasks.get_task_version(task.id, "5").data.description == "five"
    assert tasks.get_latest_task_version(task.id).data.version == "5"
    assert [v.version for v in tasks.list_task_versions(task.id).data.versions] == ["draft", "1", "5"]

    # A sync run by id, in the caller's session, with inputs.
    ran = tasks.run_adhoc_task(
        task_id=str(task.id),
        version="1",
        session_id=str(session),
        inputs={"ANCHOR_TARGET_URL": page_url, "ANCHOR_GREETING": "hello"},
    )
    assert ran.data.success is True, ran
    assert '"greeting":"hello"' in ran.data.output and "compatibility" in ran.data.output, ran
    assert '"sessionStatus":"running"' in ran.data.output, ran
    assert ran.data.execution_time is not None and ran.data.execution_result_id
    # The named session is the caller's: the run leaves it running.
    assert client.sessions.get_session(session).data.status == "running"

    # An async run by name, in a session of its own, polled until it ends.
    started = tasks.run_task_by_name(name, async_=True, inputs={"ANCHOR_TARGET_URL": page_url, "ANCHOR_GREETING": "async"})
    assert started.data.async_ is True and started.data.execution_result_id, started
    execution_id = started.data.execution_result_id
    deadline = time.monotonic() + 90
    while True:
        polled = tasks.get_task_execution(task.id, execution_id).data
        if polled.status not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, polled
        time.sleep(0.3)
    assert polled.status == "success" and '"greeting":"async"' in polled.output, polled
    assert polled.version == "5"

    listed = tasks.list_task_executions(task.id, status="success").data
    assert listed.pagination.total == 2 and {r.version for r in listed.results} == {"1", "5"}
    assert tasks.list_task_executions(task.id, version="1").data.pagination.total == 1

    # A run that throws is a failure, recorded as one.
    tasks.publish_task_version(task.id, "6", code=b64("export default async () => { throw new Error('broken'); }"))
    broke = tasks.run_adhoc_task(task_id=str(task.id), session_id=str(session))
    assert broke.data.success is False and "broken" in broke.data.error, broke
    assert tasks.list_task_executions(task.id, status="failure").data.pagination.total == 1

    # Another team sees none of it.
    other_key = subprocess.run(
        [os.environ.get("ANCHORAGE_BIN", str(REPO / "target/debug/anchorage")), "keys", "create", "--team", "strangers"],
        env=dict(os.environ, ANCHORAGE_DATA_DIR=str(server["data_dir"])),
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    stranger = anchorbrowser.Anchorbrowser(api_key=other_key, base_url=server["base_url"], _strict_response_validation=True)
    for attempt in (
        lambda: stranger.tasks_legacy.get_task(task.id),
        lambda: stranger.tasks_legacy.run_adhoc_task(task_id=str(task.id)),
        lambda: stranger.tasks_legacy.run_task_by_name(name),
        lambda: stranger.tasks_legacy.list_task_executions(task.id),
        lambda: stranger.tasks_legacy.get_task_execution(task.id, execution_id),
        lambda: stranger.tasks_legacy.delete_task(task.id),
    ):
        with pytest.raises(anchorbrowser.NotFoundError):
            attempt()
    # … nor may it run code in the first team's session.
    with pytest.raises(anchorbrowser.NotFoundError):
        stranger.tools.execute_code(session_id=session, code="return 1")

    assert tasks.delete_task_version(task.id, "1").data.success is True
    with pytest.raises(anchorbrowser.NotFoundError):
        tasks.get_task_version(task.id, "1")
    assert tasks.delete_task(task.id).data.success is True
    with pytest.raises(anchorbrowser.NotFoundError):
        tasks.get_task(task.id)
