"""The one chat-format fine-tuning data check (`tunewise.data.chat_format`): every problem with line, field and
fix; a BOM and CRLF line ends accepted; duplicates warned, not refused; the case files with the right counts."""

from __future__ import annotations

import json

import pytest

from conftest import CASES
from tunewise.config import TaskConfig
from tunewise.data import load_task
from tunewise.data.chat_format import ROLES, check_chat, decode
from tunewise.errors import UserError
from tunewise.strategies.finetuning._chat_data import check_file

WINDOWS = CASES / "finetune_jsonl" / "library_chat_windows.jsonl"
EMPTY = CASES / "finetune_jsonl" / "library_chat_empty_answers.jsonl"
USER = {"role": "user", "content": "what time is it?"}
ANSWER = {"role": "assistant", "content": "noon"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": "{\"tz\": \"UTC\"}"}}


def line(*messages, **extra) -> str:
    return json.dumps({"messages": list(messages), **extra})


def words(text: str) -> int:
    return len(text.split())


def only_problem(text: str, **kw):
    report = check_chat(text, **kw)
    assert len(report.problems) == 1, report.problems
    return report.problems[0]


def test_the_windows_file_with_bom_and_crlf_is_accepted_with_8_examples():
    raw = WINDOWS.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw  # the case is what a Windows editor saves
    report = check_file(WINDOWS, words, 4096)  # what openai-finetune runs before uploading
    assert report.ok and report.examples == 8 and report.problems == []
    assert report.conversations[0][1]["content"] == "When does the library open on Saturday?"
    assert all(t > 3 for t in report.tokens)


def test_empty_and_blank_answers_are_refused_naming_lines_3_and_5():
    report = check_file(EMPTY, words)
    assert not report.ok
    assert [(p.line, p.field) for p in report.problems] == [(3, "messages[2].content"), (5, "messages[2].content")]
    assert "is empty" in report.problems[0].message and "blank" in report.problems[1].message
    message = report.describe("f.jsonl")
    assert message.startswith("f.jsonl: line 3: messages[2].content: the assistant's answer is empty")
    assert "line 5: messages[2].content: the assistant's answer is blank" in message and "\n" not in message


def test_a_chat_task_file_gets_the_same_check():
    task = load_task(TaskConfig(source=str(WINDOWS), kind="generation", test_size=0.25))
    assert len(task.train + task.validation + task.test) == 8
    with pytest.raises(UserError) as info:
        load_task(TaskConfig(source=str(EMPTY), kind="generation"))
    assert "line 3: messages[2].content" in str(info.value) and "line 5: messages[2].content" in str(info.value)


def test_an_unknown_role_is_named_with_the_allowed_ones():
    problem = only_problem(line({"role": "robot", "content": "beep"}, ANSWER))
    assert (problem.line, problem.field) == (1, "messages[0].role")
    assert "'robot'" in problem.message and ", ".join(ROLES) in problem.fix


@pytest.mark.parametrize("text, field, says", [
    ("{not json", "", "not valid JSON"),
    ('["a"]', "", "a JSON list, not an object"),
    (json.dumps({"rows": []}), "messages", "missing or empty"),
    (line(), "messages", "missing or empty"),
    (line("hi", ANSWER), "messages[0]", "not an object"),
    (line({"content": "x"}, ANSWER), "messages[0].role", "missing"),
    (line({"role": "user", "content": "x", "mood": 1}, ANSWER), "messages[0].mood", "not a message key"),
    (line({"role": "user"}, ANSWER), "messages[0].content", "missing"),
    (line({"role": "user", "content": 3}, ANSWER), "messages[0].content", "int, not text"),
    (line({"role": "user", "content": [{"type": "audio"}]}, ANSWER), "messages[0].content[0]", "not a text"),
    (line({"role": "system", "content": " "}, USER, ANSWER), "messages[0].content", "system message is blank"),
    (line(USER), "messages", "no assistant message"),
    (line(USER, {**ANSWER, "weight": 0}), "messages", "weight 0"),
    (line(USER, {**ANSWER, "weight": 2}), "messages[1].weight", "is 2, not 0 or 1"),
    (line(USER, {**ANSWER, "weight": True}), "messages[1].weight", "is True, not 0 or 1"),
    (line({**USER, "weight": 1}, ANSWER), "messages[0].weight", "is set on a user message"),
    (line(USER, {"role": "assistant", "tool_calls": []}), "messages[1].tool_calls", "non-empty list"),
    (line(USER, {"role": "assistant", "tool_calls": [{**CALL, "id": ""}]}), "messages[1].tool_calls[0].id", "missing"),
    (line(USER, {"role": "assistant", "tool_calls": [{**CALL, "type": "web"}]}), "messages[1].tool_calls[0].type",
     "'web'"),
    (line(USER, {"role": "assistant", "tool_calls": [{**CALL, "function": {"arguments": "{}"}}]}),
     "messages[1].tool_calls[0].function.name", "missing"),
    (line(USER, {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {}}}]}),
     "messages[1].tool_calls[0].function.arguments", "not a string"),
    (line(USER, {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{x"}}]}),
     "messages[1].tool_calls[0].function.arguments", "not valid JSON"),
    (line({**USER, "tool_calls": [CALL]}, ANSWER), "messages[0].tool_calls", "only allowed on assistant"),
    (line(USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "content": "12:00"}, ANSWER),
     "messages[2].tool_call_id", "None answers no earlier tool call (ids: call_1)"),
    (line(USER, {"role": "tool", "tool_call_id": "call_9", "content": "12:00"}, ANSWER),
     "messages[1].tool_call_id", "'call_9' answers no earlier tool call (ids: none)"),
    (line(USER, {"role": "function", "content": "12:00"}, ANSWER), "messages[1].name", "missing"),
])
def test_each_problem_names_line_field_and_fix(text, field, says):
    problem = only_problem("\n" + text)  # a blank first line is skipped but counted
    assert (problem.line, problem.field) == (2, field)
    assert says in problem.message, problem.message
    assert problem.fix and problem.fix in str(problem)


def test_a_valid_tool_call_conversation_passes():
    text = line({"role": "system", "content": "Use the clock."}, USER, {"role": "assistant", "content": None,
                                                                       "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12:00"}, {**ANSWER, "weight": 1},
                tools=[{"type": "function", "function": {"name": "clock", "parameters": {}}}])
    report = check_chat(text)
    assert report.ok and report.examples == 1, report.problems


def test_an_example_over_the_model_context_is_refused_with_its_tokens():
    long = line(USER, {"role": "assistant", "content": "word " * 50})
    report = check_chat(line(USER, ANSWER) + "\n" + long, words, max_tokens=40)
    assert [p.line for p in report.problems] == [2]
    assert "63 tokens, over the model's 40" in report.problems[0].message  # the cookbook: 3 + (3 + 4) + (3 + 50)
    assert report.examples == 1 and report.tokens == [3 + 3 + 4 + 3 + 1]


def test_duplicates_are_warned_not_refused():
    text = "\n".join([line(USER, ANSWER), line(USER, {"role": "assistant", "content": "one"}), line(USER, ANSWER)])
    report = check_chat(text)
    assert report.ok and report.examples == 3
    assert [(w.line, w.message) for w in report.warnings] == [(3, "repeats line 1")]


def test_many_problems_stay_on_one_line_and_are_counted():
    report = check_chat("\n".join(["{bad"] * 9))
    message = report.describe("f.jsonl")
    assert message.count("not valid JSON") == 5 and message.endswith("and 4 more problems") and "\n" not in message


def test_bytes_that_are_not_utf8_name_their_line():
    text, problem = decode(b"\xef\xbb\xbf" + line(USER, ANSWER).encode() + b"\n\xff\n")
    assert text is None and problem.line == 2 and "0xff" in problem.message
    text, problem = decode(b"\xef\xbb\xbfabc")
    assert text == "abc" and problem is None


def test_json_nested_past_the_parser_limit_is_a_problem_not_a_crash(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    report = check_chat(line(USER, ANSWER) + "\n" + deep)
    assert [(p.line, p.message) for p in report.problems] == [(2, "not valid JSON (nested too deeply)")]
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"text": "a", "label": "b"}) + "\n" + deep + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"data.jsonl: line 2: not valid JSON \(nested too deeply\)"):
        load_task(TaskConfig(source=str(path)))


def test_openai_finetune_shows_the_duplicate_warnings(capsys):
    from tunewise.strategies.finetuning.openai_finetune import _warn

    report = check_chat("\n".join([line(USER, ANSWER)] * 6))
    _warn("openai-finetune", "train.jsonl", report.warnings)
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("warning: openai-finetune: train.jsonl: line 2: messages: repeats line 1")
    assert err.endswith("(and 2 more)")
