"""Agent teams as strategies: bounded turns, token and turn accounting that adds up across agents, tools
by name only (never code), answer extraction, and human turns that never wait in a non-interactive run."""

from __future__ import annotations

import pytest

pytest.importorskip("autogen_agentchat")

from test_agents_client import ScriptedBackend  # noqa: E402

from conftest import keyword_task  # noqa: E402
from tunewise.agents import team as team_module  # noqa: E402
from tunewise.agents.tools import calculate, register_tool  # noqa: E402
from tunewise.backends import load_backend  # noqa: E402
from tunewise.data import Example, Task  # noqa: E402
from tunewise.errors import UserError  # noqa: E402
from tunewise.registry import strategies, strategy_config  # noqa: E402
from tunewise.strategies.base import FitContext  # noqa: E402


def maths_task() -> Task:
    ex = [Example(id="0", input="Tom has 6 bags of 7 apples. How many apples?", target="42"),
          Example(id="1", input="What is 12 plus 30?", target="42")]
    return Task(name="maths", kind="generation", train=ex, validation=[], test=ex,
                instruction="Solve the problem.")


def predict(name, backend, task, tmp_path, **options):
    strategy = strategies()[name](strategy_config({"name": name, **options}))
    ctx = FitContext(tmp_path, 0)
    return strategy.fit(backend, task, ctx).predict(task.test), ctx


def assert_accounting_adds_up(pred):
    entries = pred.trace
    assert sum(e["tokens"]["prompt"] for e in entries) == pred.prompt_tokens > 0
    assert sum(e["tokens"]["completion"] for e in entries) == pred.completion_tokens > 0
    assert entries[-1]["kind"] == "answer" and "failed" in entries[-1]
    assert entries[-1]["turns"] == sum(e["kind"] == "message" for e in entries)


@pytest.mark.parametrize("backend_name", ["fake", "fake-nologprobs"])
@pytest.mark.parametrize("name", ["reflect", "team", "tool-agent"])
def test_agent_strategies_on_the_fake_backend(name, backend_name, tmp_path):
    task = keyword_task()
    preds, ctx = predict(name, load_backend(backend_name, "causal"), task, tmp_path)
    # (the fake backend picks a label by word overlap with the last user turn, which lists every label)
    assert all(p.output in task.labels for p in preds)
    for p in preds:
        assert_accounting_adds_up(p)
    assert ctx.stats["agents"]


def test_reflect_stops_on_approve_and_answers_from_the_solver(tmp_path):
    backend = ScriptedBackend([lambda p: "APPROVE" if "strict critic" in p else "Answer: refund"])
    preds, _ = predict("reflect", backend, keyword_task(), tmp_path, rounds=3)
    p = preds[1]
    assert [(e["agent"], e["content"]) for e in p.trace if e["kind"] == "message"] == [
        ("solver", "Answer: refund"), ("critic", "APPROVE")]
    assert p.output == "refund"
    assert_accounting_adds_up(p)


@pytest.mark.parametrize("rounds", [1, 3])
def test_reflect_stays_within_its_rounds(rounds, tmp_path):
    backend = ScriptedBackend([lambda p: "Not quite." if "strict critic" in p else "Answer: delivery"])
    preds, _ = predict("reflect", backend, keyword_task(), tmp_path, rounds=rounds)
    for p in preds:
        assert p.trace[-1]["turns"] == 1 + 2 * rounds
        assert p.output == "delivery"


def test_team_with_selector_counts_the_speaker_selection(tmp_path):
    def reply(prompt):
        return "judge" if "select the next role" in prompt else "FINAL ANSWER: refund"
    roles = [{"name": "pro", "system": "Argue for it."}, {"name": "con", "system": "Argue against it."},
             {"name": "judge", "system": "Decide. Options: {labels}"}]
    preds, _ = predict("team", ScriptedBackend([reply]), keyword_task(), tmp_path, roles=roles, mode="selector",
                       max_messages=3)
    for p in preds:
        assert_accounting_adds_up(p)
        assert p.output == "refund"
        assert p.trace[-1]["turns"] == 1  # "FINAL ANSWER" ended the team at once
    # the first speaker needs no selection; any later one would be a counted `selector` entry
    backend = ScriptedBackend([reply, reply, "still thinking"])
    preds, _ = predict("team", backend, keyword_task(), tmp_path, roles=roles, mode="selector", max_messages=3,
                       stop_text="DONE")
    kinds = [e["kind"] for e in preds[0].trace]
    assert kinds.count("selector") == 2 and kinds.count("message") == 3
    assert_accounting_adds_up(preds[0])


def test_tool_agent_runs_the_tool_and_the_result_reaches_the_agent(tmp_path):
    def reply(prompt):
        if "Result of calculator" in prompt:
            return "Answer: " + prompt.rsplit("Result of calculator: ", 1)[1].split("<", 1)[0].strip()
        return '{"tool": "calculator", "arguments": {"expression": "6 * 7"}}'
    backend = ScriptedBackend([reply])
    preds, ctx = predict("tool-agent", backend, maths_task(), tmp_path)
    assert ctx.stats["tools"] == ["calculator"]  # the default for a generation task
    p = preds[0]
    assert [e["kind"] for e in p.trace] == ["task", "tool_call", "tool_result", "message", "answer"]
    assert p.trace[2]["content"] == "calculator: 42"
    assert p.output == "42"
    assert_accounting_adds_up(p)


def test_tool_agent_uses_a_tool_registered_in_python(tmp_path):
    seen = []

    @register_tool("lookup_route")
    def lookup(text: str) -> str:
        """Which desk handles the text."""
        seen.append(text)
        return "refund"

    def reply(prompt):
        return "Answer: refund" if "Result of lookup_route" in prompt else 'lookup_route("money back")'
    preds, _ = predict("tool-agent", ScriptedBackend([reply]), keyword_task(), tmp_path, tools=["lookup_route"])
    assert seen and all(p.output == "refund" for p in preds)


def test_unknown_tool_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="unknown tool 'os_system'") as info:
        predict("tool-agent", load_backend("fake", "causal"), keyword_task(), tmp_path, tools=["os_system"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("smuggled", ["__import__('os').system('touch /tmp/pwned')", "calculator; rm -rf /",
                                      "lambda: 1", "os.system"])
def test_a_config_cannot_smuggle_code_as_a_tool(smuggled):
    with pytest.raises(ValueError, match="tools"):
        strategy_config({"name": "tool-agent", "tools": [smuggled]})


@pytest.mark.parametrize("expression, expected", [
    ("(12 + 3) * 4 / 5", "12"), ("2 ** 10", "1024"), ("7 / 2", "3.5"), ("1,200 - 200", "1000"), ("48 ÷ 2 =", "24"),
    ("__import__('os').system('echo hi')", "error"), ("open('/etc/passwd').read()", "error"),
    ("9 ** 9 ** 9", "error"), ("1 / 0", "error: division by zero"), ("().__class__", "error"),
])
def test_calculator_is_arithmetic_only(expression, expected):
    assert calculate(expression).startswith(expected)


def test_retrieve_sees_only_the_training_split(tmp_path):
    task = keyword_task()
    task.test = [Example(id="t", input="secret test delivery text", target="refund")]
    task.train = task.train[:2]
    backend = ScriptedBackend([lambda p: "Answer: delivery" if "Result of retrieve" in p
                               else '{"tool": "retrieve", "arguments": {"query": "delivery text"}}'])
    preds, _ = predict("tool-agent", backend, task, tmp_path, tools=["retrieve"])
    result = next(e for e in preds[0].trace if e["kind"] == "tool_result")
    assert "where is my delivery" in result["content"] and "secret" not in result["content"]


def test_failed_extraction_is_marked_on_the_last_trace_entry(tmp_path):
    preds, _ = predict("reflect", ScriptedBackend(["I am not sure."]), keyword_task(), tmp_path)
    assert all(p.output == "" and p.trace[-1]["failed"] for p in preds)


def test_human_turns_are_skipped_with_a_note_when_not_interactive(tmp_path, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("a non-interactive run asked for input"))
    monkeypatch.setattr(team_module, "is_interactive", lambda: False)
    preds, _ = predict("reflect", load_backend("fake", "causal"), keyword_task(), tmp_path, human_turns=[1])
    notes = [e for e in preds[0].trace if e["kind"] == "note" and e["agent"] == "human"]
    assert len(notes) == 1 and "skipped" in notes[0]["content"]
    assert preds[0].output in ("delivery", "refund")


def test_a_person_can_edit_the_answer_at_a_human_turn(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(team_module, "is_interactive", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "Answer: refund")
    task = keyword_task()
    task.test = task.test[:1]
    preds, _ = predict("tool-agent", load_backend("fake", "causal"), task, tmp_path, human_turns=[1])
    assert len(asked) == 1 and "assistant" in asked[0]  # the person saw the agent's message
    assert [e["agent"] for e in preds[0].trace if e["kind"] == "human"] == ["human"]
    assert preds[0].output == "refund"  # the person's edit wins over the agent's "delivery"


def test_is_interactive_is_false_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert not team_module.is_interactive()


def test_team_config_errors_name_the_field():
    with pytest.raises(ValueError, match="roles: names must differ"):
        strategy_config({"name": "team", "roles": [{"name": "a", "system": "x"}, {"name": "a", "system": "y"}]})
    with pytest.raises(ValueError, match="answer_from"):
        strategy_config({"name": "team", "answer_from": "nobody"})
    with pytest.raises(ValueError, match="human_turns"):
        strategy_config({"name": "reflect", "human_turns": [0]})


def test_teams_batch_their_model_calls_across_examples(tmp_path):
    backend = ScriptedBackend(["Answer: delivery"])
    predict("tool-agent", backend, keyword_task(), tmp_path, concurrency=4)
    assert max(backend.batches) == 4


def test_predict_works_inside_a_running_event_loop(tmp_path):
    import asyncio

    async def inside():
        return predict("reflect", load_backend("fake", "causal"), keyword_task(), tmp_path)[0]
    preds = asyncio.run(inside())
    assert len(preds) == 4 and all(p.output in ("delivery", "refund") for p in preds)


def test_a_token_budget_stops_the_team(tmp_path):
    backend = ScriptedBackend([lambda p: "Not quite." if "strict critic" in p else "Answer: delivery"])
    preds, _ = predict("reflect", backend, keyword_task(), tmp_path, rounds=4, max_team_tokens=1)
    assert all(p.trace[-1]["turns"] == 1 and p.output == "delivery" for p in preds)


def test_without_autogen_a_team_is_a_one_line_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tunewise.agents.autogen_team", None)  # as if AutoGen were missing
    with pytest.raises(UserError, match=r"tunewise\[agents\]") as info:
        predict("reflect", load_backend("fake", "causal"), keyword_task(), tmp_path)
    assert "\n" not in str(info.value)


def test_human_turns_never_add_agent_messages(tmp_path, monkeypatch):
    monkeypatch.setattr(team_module, "is_interactive", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "")  # Enter: approve
    task = keyword_task()
    task.test = task.test[:1]
    preds, _ = predict("tool-agent", load_backend("fake", "causal"), task, tmp_path, human_turns=[1, 5])
    assert [e["kind"] for e in preds[0].trace] == ["task", "message", "human", "answer"]
    assert preds[0].output in task.labels  # an approval is not an edit
