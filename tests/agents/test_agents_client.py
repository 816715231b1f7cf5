"""The AutoGen model client over tunewise backends: real AgentChat agents and teams on the fake backend
and the tiny local model, tool calls through the JSON convention, usage accounting, human in the loop."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("autogen_agentchat")

from autogen_agentchat.agents import AssistantAgent, UserProxyAgent  # noqa: E402
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination  # noqa: E402
from autogen_agentchat.messages import (  # noqa: E402
    BaseChatMessage,
    ModelClientStreamingChunkEvent,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat  # noqa: E402
from autogen_core.models import (  # noqa: E402
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    SystemMessage,
    UserMessage,
    validate_model_info,
)

from tunewise.agents.client import GenerationBatcher, TunewiseChatClient, to_chat  # noqa: E402
from tunewise.agents.toolcall import ToolSpec, parse_tool_calls  # noqa: E402
from tunewise.agents.tools import calculator  # noqa: E402
from tunewise.backends import load_backend  # noqa: E402
from tunewise.backends.fake import FakeBackend  # noqa: E402


class ScriptedBackend(FakeBackend):
    """Replies in order (the last one repeats; a callable gets the prompt); records prompts and batch sizes."""

    def __init__(self, replies):
        super().__init__("fake-scripted")
        self.replies, self.prompts, self.batches = list(replies), [], []

    def generate(self, prompts, max_new_tokens=64, stop=(), batch_size=8, on_batch=None):
        self.batches.append(len(prompts))
        outs = []
        for prompt in prompts:
            self.prompts.append(prompt)
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            reply = reply(prompt) if callable(reply) else reply
            outs.append((reply, len(reply.split())))
        return outs


def fake():
    return load_backend("fake-nologprobs", "causal")


def test_assistant_agent_on_the_fake_backend_reports_usage():
    client = TunewiseChatClient(fake())
    agent = AssistantAgent("helper", model_client=client,
                           system_message="Route the message. Answer with exactly one of: refund, delivery.")
    result = asyncio.run(agent.run(task="where is my delivery"))
    reply = result.messages[-1]
    assert reply.content == "delivery"
    assert reply.models_usage.prompt_tokens > 0 and reply.models_usage.completion_tokens == 1
    assert client.total_usage() == reply.models_usage == client.actual_usage()


def test_round_robin_team_on_the_tiny_local_model(tiny_causal):
    backend = load_backend(tiny_causal, "causal", "cpu")
    clients = [TunewiseChatClient(backend, max_new_tokens=4) for _ in range(2)]
    agents = [AssistantAgent(name, model_client=c, system_message=f"You are {name}.")
              for name, c in zip(("alice", "bob"), clients, strict=True)]
    team = RoundRobinGroupChat(agents, termination_condition=MaxMessageTermination(4))
    result = asyncio.run(team.run(task="Say hello."))
    assert [m.source for m in result.messages[:4]] == ["user", "alice", "bob", "alice"]
    for m in result.messages[1:4]:
        assert 0 < m.models_usage.completion_tokens <= 4
    # alice spoke twice: her client counted both calls
    assert clients[0].total_usage().prompt_tokens == sum(
        m.models_usage.prompt_tokens for m in result.messages[1:4] if m.source == "alice")


def test_selector_group_chat_terminates_and_counts_selection():
    def reply(prompt):
        return "bob" if "select the next role" in prompt else "noted"
    backend = ScriptedBackend([reply])
    agents = [AssistantAgent(n, model_client=TunewiseChatClient(backend), description=f"{n} helps")
              for n in ("alice", "bob", "carol")]
    selector = TunewiseChatClient(backend, max_new_tokens=8)
    team = SelectorGroupChat(agents, model_client=selector, termination_condition=MaxMessageTermination(3))
    result = asyncio.run(team.run(task="Plan a picnic."))
    assert len(result.messages) == 3 and result.messages[1].source == "bob"  # the model's choice
    assert selector.total_usage().prompt_tokens > 0


def test_tool_call_is_executed_and_its_result_reaches_the_agent():
    backend = ScriptedBackend(['{"tool": "calculator", "arguments": {"expression": "6 * 7"}}', "The answer is 42."])
    client = TunewiseChatClient(backend)
    agent = AssistantAgent("solver", model_client=client, tools=[calculator], reflect_on_tool_use=True)
    result = asyncio.run(agent.run(task="What is 6 times 7?"))
    request = next(m for m in result.messages if isinstance(m, ToolCallRequestEvent))
    assert request.content[0].name == "calculator"
    execution = next(m for m in result.messages if isinstance(m, ToolCallExecutionEvent))
    assert execution.content[0].content == "42"
    assert "calculator(expression: string)" in backend.prompts[0]  # the tool was offered
    assert "Result of calculator: 42" in backend.prompts[1]  # ... and its result came back
    assert result.messages[-1].content == "The answer is 42."
    assert client.total_usage().completion_tokens == sum(len(r.split()) for r in (
        '{"tool": "calculator", "arguments": {"expression": "6 * 7"}}', "The answer is 42."))


def test_streaming_agent_gets_chunks_then_the_result():
    agent = AssistantAgent("helper", model_client=TunewiseChatClient(ScriptedBackend(["one two three"])),
                           model_client_stream=True)
    async def stream():
        return [item async for item in agent.run_stream(task="Count.")]  # chunks are not kept in TaskResult
    items = asyncio.run(stream())
    chunks = [m.content for m in items if isinstance(m, ModelClientStreamingChunkEvent)]
    assert len(chunks) == 3 and "".join(chunks) == items[-1].messages[-1].content == "one two three"


def test_a_model_that_ignores_the_tool_convention_gives_plain_text():
    client = TunewiseChatClient(ScriptedBackend(["I think it is 42, maybe use calculator later."]))
    agent = AssistantAgent("solver", model_client=client, tools=[calculator])
    result = asyncio.run(agent.run(task="What is 6 times 7?"))
    assert not any(isinstance(m, ToolCallRequestEvent) for m in result.messages)
    assert result.messages[-1].content.startswith("I think it is 42")


def test_user_proxy_agent_lets_a_person_approve():
    asked = []
    human = UserProxyAgent("human", input_func=lambda prompt: asked.append(prompt) or "APPROVE")
    assistant = AssistantAgent("writer", model_client=TunewiseChatClient(ScriptedBackend(["Hello there."])))
    team = RoundRobinGroupChat([assistant, human], termination_condition=TextMentionTermination("APPROVE")
                               | MaxMessageTermination(6))
    result = asyncio.run(team.run(task="Draft a greeting."))
    chat = [m for m in result.messages if isinstance(m, BaseChatMessage)]  # not the input-requested event
    assert [(m.source, m.content) for m in chat[1:]] == [("writer", "Hello there."), ("human", "APPROVE")]
    assert len(asked) == 1


def test_create_stream_count_tokens_and_model_info():
    client = TunewiseChatClient(fake(), context_window=1000)
    messages = [SystemMessage(content="Answer with exactly one of: refund, delivery."),
                UserMessage(content="where is my delivery", source="user")]

    async def collect():
        return [chunk async for chunk in client.create_stream(messages)]
    chunks = asyncio.run(collect())
    assert "".join(chunks[:-1]) == chunks[-1].content == "delivery"
    n = client.count_tokens(messages)
    assert n > 0 and client.remaining_tokens(messages) == 1000 - n
    validate_model_info(client.model_info)
    assert client.model_info["function_calling"] and not client.model_info["vision"]
    asyncio.run(client.close())


def test_to_chat_merges_system_messages_and_alternates_roles():
    chat = to_chat([SystemMessage(content="a"), SystemMessage(content="b"), UserMessage(content="task", source="user"),
                    UserMessage(content="too vague", source="critic"), AssistantMessage(content="ok", source="me"),
                    FunctionExecutionResultMessage(content=[FunctionExecutionResult(content="42", name="calculator",
                                                                                    call_id="1")])])
    assert chat == [{"role": "system", "content": "a\n\nb"},
                    {"role": "user", "content": "task\n\ncritic: too vague"},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "Result of calculator: 42"}]


def test_the_context_window_drops_the_oldest_turns():
    client = TunewiseChatClient(fake(), context_window=40, max_new_tokens=5)
    messages = [SystemMessage(content="keep me")] + [
        UserMessage(content=f"turn{i} " + "word " * 8, source="user") if i % 2 == 0 else
        AssistantMessage(content=f"turn{i} reply", source="me") for i in range(8)]
    prompt = client._prompt(messages, [], None, 5)
    assert client.backend.count_tokens(prompt) + 5 <= 40
    assert "keep me" in prompt and "turn6" in prompt and "turn0" not in prompt


SPECS = [ToolSpec("calculator", "", {"type": "object", "properties": {"expression": {"type": "string"}},
                                     "required": ["expression"]})]


@pytest.mark.parametrize("text, expected", [
    ('{"tool": "calculator", "arguments": {"expression": "1+2"}}', [("calculator", {"expression": "1+2"})]),
    ('Sure!\n```json\n{"name": "calculator", "args": {"expression": "3*4"}}\n```',
     [("calculator", {"expression": "3*4"})]),
    ('{"tool": "calculator", "arguments": "{\\"expression\\": \\"2-1\\"}"}', [("calculator", {"expression": "2-1"})]),
    ('{"function": {"name": "calculator", "arguments": {"expr": "5/5"}}}', [("calculator", {"expression": "5/5"})]),
    ('{"tool": "calculator", "expression": "7 + 1"}', [("calculator", {"expression": "7 + 1"})]),
    ('I will use calculator("12 * (3 + 4)") now', [("calculator", {"expression": "12 * (3 + 4)"})]),
    ('{"tool": "search", "arguments": {"q": "x"}}', []),
    ('{"tool": "calculator", "arguments": {"expression": "1+', []),
    ("The answer is 42.", []),
])
def test_tool_calls_are_parsed_robustly(text, expected):
    assert parse_tool_calls(text, SPECS) == expected


def test_concurrent_calls_share_one_batch():
    backend = ScriptedBackend(["ok"])
    batcher = GenerationBatcher(backend)
    clients = [TunewiseChatClient(backend, batcher=batcher) for _ in range(4)]

    async def all_at_once():
        return await asyncio.gather(*(c.create([UserMessage(content=f"q{i}", source="user")])
                                      for i, c in enumerate(clients)))
    results = asyncio.run(all_at_once())
    assert [r.content for r in results] == ["ok"] * 4
    assert backend.batches == [4]
