"""Agent frameworks no one here wrote, against a real `tunewise serve` process on a loopback port: Microsoft
Agent Framework (`agent-framework-openai`'s chat-completions client, an agent with a Python tool, run to
completion, also through `tunewise agents ask`) and AutoGen's own `OpenAIChatCompletionClient` driving an
`AssistantAgent` with a tool. The served model is `scripted_tool_caller` (see _toolmodels.py): it calls a
tool as soon as tools are offered, as frameworks that send tool_choice "auto" need; it spells forced text in
small pieces, hence max_tokens of 160 for a short call. What it answers after the tool result is noise, so
the tests assert the loop's mechanics: the tool ran with schema-valid arguments, its result reached the
model's prompt (a recording proxy sees the request; the server's prompt-token count matches the local
rendering), and the run finished."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Annotated, Literal

import pytest
from typer.testing import CliRunner

from _serving import THREADS, LoopbackServer, run_folder, write_config
from _toolmodels import scripted_tool_caller
from tunewise.cli import app
from tunewise.serve.process import ServerProcess

BRANCHES = ("Elm Street", "Main Square")
HOURS = '{"open": true, "hours": "10:00-18:00"}'


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory, smollm2_tokenizer):
    from conftest import make_rows, write_csv

    root = tmp_path_factory.mktemp("scripted")
    model = scripted_tool_caller(root / "tool-caller", smollm2_tokenizer)
    config = write_config(root / "exp.yaml", task={"source": str(write_csv(root / "s.csv", make_rows(6)))},
                          model=str(model), strategies=["zero-shot"], output_dir=str(root / "runs"), seed=1)
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    return run_folder(result.output)


@pytest.fixture(scope="module")
def server(scripted_run, tmp_path_factory):
    with ServerProcess(scripted_run, [*THREADS, "--state-dir", str(tmp_path_factory.mktemp("state"))]) as proc:
        yield proc


@pytest.fixture(scope="module")
def model() -> str:
    return "tool-caller"


class Recorder(LoopbackServer):
    """A loopback HTTP proxy in front of the server that keeps every chat request and its reply, so a test can
    see what a framework sent (the tool result) and what the server made of it (prompt tokens)."""

    def __init__(self, target: str):
        self.exchanges: list[tuple[dict, dict]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, body: bytes | None):
                request = urllib.request.Request(target + self.path.removeprefix("/v1"), data=body,
                                                 method=self.command,
                                                 headers={"content-type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=300) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as err:
                    status, data = err.code, err.read()
                if body and self.path.endswith("/chat/completions") and status == 200:
                    recorder.exchanges.append((json.loads(body), json.loads(data)))
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 (http.server's naming)
                self._forward(self.rfile.read(int(self.headers.get("content-length", 0))))

            def do_GET(self):  # noqa: N802
                self._forward(None)

            def log_message(self, *args):
                pass

        self.serve(Handler)

    def check_tool_results_reached_the_prompt(self, backend) -> int:
        """For every request that carried a tool result: it is in the prompt the server rendered, whose size
        the server reported. Returns how many such requests there were."""
        from tunewise.serve import toolprompt, tools
        from tunewise.serve.schemas import ChatRequest

        seen = 0
        for body, reply in self.exchanges:
            if any(m.get("role") == "tool" for m in body["messages"]):
                req = ChatRequest.model_validate(body)
                prompt = toolprompt.render(backend, req.messages, tools.plan(req))
                assert HOURS in prompt
                assert reply["usage"]["prompt_tokens"] == backend.count_tokens(prompt)
                seen += 1
        return seen


@pytest.fixture
def recorder(server):
    proxy = Recorder(server.url)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def local(scripted_run):
    from tunewise.backends import load_backend

    return load_backend(str(scripted_run.parent.parent / "tool-caller"), "causal", "cpu")


def test_agent_framework_agent_runs_its_python_tool_to_completion(recorder, local, model):
    from agent_framework import Agent, tool
    from agent_framework.openai import OpenAIChatCompletionClient

    calls: list[str] = []

    @tool
    def opening_hours(branch: Annotated[Literal["Elm Street", "Main Square"], "The library branch"]) -> str:
        """Opening hours of a library branch."""
        calls.append(branch)
        return HOURS

    client = OpenAIChatCompletionClient(model=model, base_url=recorder.url, api_key="unused")
    client.function_invocation_configuration["max_iterations"] = 2
    agent = Agent(client=client, instructions="You help library visitors.", tools=[opening_hours])
    response = asyncio.run(agent.run("Is the Elm Street branch open tomorrow?",
                                     options={"max_tokens": 160, "temperature": 0}))
    assert calls and set(calls) <= set(BRANCHES)  # called, with arguments in the declared enum
    contents = [c for m in response.messages for c in m.contents]
    results = [c for c in contents if c.type == "function_result"]
    assert results and all(HOURS in str(r.result) for r in results)
    assert any(c.type == "function_call" for c in contents)
    assert response.messages[-1].role == "assistant"  # the final answer after the tool round(s)
    assert recorder.check_tool_results_reached_the_prompt(local) == len(recorder.exchanges) - 1 >= 1


def test_autogen_assistant_agent_calls_its_tool_through_openai_chat_completion_client(recorder, local, model):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.messages import TextMessage, ToolCallExecutionEvent, ToolCallRequestEvent
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    calls: list[str] = []

    async def opening_hours(branch: Literal["Elm Street", "Main Square"]) -> str:
        """Opening hours of a library branch."""
        calls.append(branch)
        return HOURS

    client = OpenAIChatCompletionClient(
        model=model, base_url=recorder.url, api_key="unused", max_tokens=160, temperature=0,
        model_info={"vision": False, "function_calling": True, "json_output": True, "family": "unknown",
                    "structured_output": True})
    # reflect_on_tool_use: after the tool runs, the model answers with its result in the prompt.
    agent = AssistantAgent("librarian", model_client=client, tools=[opening_hours], reflect_on_tool_use=True,
                           system_message="You help library visitors.")

    async def go():
        try:
            return await agent.run(task="Is the Elm Street branch open tomorrow?")
        finally:
            await client.close()

    result = asyncio.run(go())
    kinds = [type(m) for m in result.messages]
    assert ToolCallRequestEvent in kinds and ToolCallExecutionEvent in kinds
    request = next(m for m in result.messages if isinstance(m, ToolCallRequestEvent))
    assert [json.loads(c.arguments)["branch"] for c in request.content] == calls and set(calls) <= set(BRANCHES)
    execution = next(m for m in result.messages if isinstance(m, ToolCallExecutionEvent))
    assert [r.content for r in execution.content] == [HOURS] * len(calls)
    assert isinstance(result.messages[-1], TextMessage) and result.messages[-1].models_usage.completion_tokens > 0
    assert recorder.check_tool_results_reached_the_prompt(local) == 1


def test_tunewise_agents_ask_runs_an_agent_framework_agent_on_a_served_run(scripted_run):
    from tunewise.agents.tools import _TOOLS, register_tool

    @register_tool("branch_hours")
    def branch_hours(branch: Literal["Elm Street", "Main Square"]) -> str:
        """Opening hours of a library branch."""
        return HOURS

    try:
        result = CliRunner().invoke(app, ["agents", "ask", "Is Elm Street open?", "--run", str(scripted_run),
                                          "--tool", "branch_hours", "--max-tokens", "160", "--max-rounds", "1"])
    finally:
        _TOOLS.pop("branch_hours")
    assert result.exit_code == 0, result.output
    assert 'tool call branch_hours({"branch": "' in result.output and f"tool result {HOURS}" in result.output
    assert "1 tool call(s)" in result.output and "(model tool-caller)" in result.output
