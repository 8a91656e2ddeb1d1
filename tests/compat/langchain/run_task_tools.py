"""Runs LangChain's task toolkit (langchain-anchorbrowser 0.2.0), unchanged,
against the server named by ANCHORBROWSER_BASE_URL: create a task, list the
tasks, deploy it, run it with inputs, list its executions, delete it; prints
what each tool gave back (JSON text, as the tools give it to a model) as one
JSON line. Run by tests/compat/test_langchain.py with the virtual
environment that holds langchain-anchorbrowser and the SDK it pins."""

import base64
import json
import sys

from langchain_anchorbrowser import AnchorTaskToolKit

name, page_url = sys.argv[1], sys.argv[2]
tools = {tool.name: tool for tool in AnchorTaskToolKit().get_tools()}
code = """
export default async function ({ page }: { page: any }) {
  await page.goto(process.env.ANCHOR_URL as string);
  return { title: await page.title(), who: process.env.ANCHOR_WHO };
}
"""
told = {}
told["create"] = json.loads(tools["create_task"].invoke({"name": name, "description": "reads a title"}))
task_id = told["create"]["data"]["id"]
told["list"] = json.loads(tools["list_tasks"].invoke({"page": "1", "limit": "100"}))
told["deploy"] = json.loads(tools["deploy_task"].invoke({"task_id": task_id, "code": base64.b64encode(code.encode()).decode()}))
told["run"] = json.loads(tools["run_task"].invoke({
    "task_id": task_id,
    "inputs": json.dumps({"ANCHOR_URL": page_url, "ANCHOR_WHO": "langchain"}),
}))
told["executions"] = json.loads(tools["list_task_executions"].invoke({"task_id": task_id}))
told["delete"] = json.loads(tools["delete_task"].invoke({"task_id": task_id}))
print(json.dumps(told))
