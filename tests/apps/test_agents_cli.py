"""`tunewise agents write|optimize-prompt`, and agent strategies in `tunewise run` with stdin closed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("autogen_agentchat")

from typer.testing import CliRunner  # noqa: E402

from tunewise.cli import app  # noqa: E402

runner = CliRunner()


def write_config(tmp_path: Path, strategies: str = "[zero-shot]") -> Path:
    rows = [("where is my delivery", "delivery"), ("i want a refund please", "refund"),
            ("delivery is late again", "delivery"), ("refund my money", "refund")] * 6
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"{t} {i},{y}\n" for i, (t, y) in enumerate(rows)), encoding="utf-8")
    config = tmp_path / "exp.yaml"
    config.write_text(f"task:\n  source: {data}\n  instruction: Route the message.\nmodel: fake\n"
                      f"strategies: {strategies}\noutput_dir: {tmp_path / 'runs'}\n", encoding="utf-8")
    return config


def test_write_shows_the_conversation_and_saves_it(tmp_path):
    saved = tmp_path / "talk.json"
    result = runner.invoke(app, ["agents", "write", "tide pools", "--model", "fake", "--output", str(saved)])
    assert result.exit_code == 0, result.output
    for role in ("researcher", "writer", "editor", "final text"):
        assert role in result.output
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert [m["agent"] for m in data["messages"]] == ["user", "researcher", "writer", "editor"]
    assert data["tokens"]["prompt"] == sum(m["tokens"]["prompt"] for m in data["messages"]) > 0


def test_write_with_an_empty_topic_is_a_one_line_error():
    result = runner.invoke(app, ["agents", "write", "  ", "--model", "fake"])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [result.output.strip()]


def test_optimize_prompt_scores_on_validation_and_never_sees_the_test_split(tmp_path, monkeypatch):
    from tunewise.backends import cache
    from tunewise.backends.fake import FakeBackend
    from tunewise.config import load_config
    from tunewise.data import load_task

    config = write_config(tmp_path)
    seen: list[str] = []

    class Recording(FakeBackend):
        def score(self, prefix, suffixes, continuations, **kw):
            seen.extend(prefix + s for s in suffixes)
            return super().score(prefix, suffixes, continuations, **kw)

        def generate(self, prompts, *args, **kw):
            seen.extend(prompts)
            return [("INSTRUCTION: Decide whether the message is about a delivery or a refund.", 12)
                    for _ in prompts]

    monkeypatch.setattr(cache, "load_backend", lambda *a, **k: Recording("fake"))  # the run API's loader
    out_file = tmp_path / "opt.json"
    result = runner.invoke(app, ["agents", "optimize-prompt", str(config), "--rounds", "2", "--output",
                                 str(out_file)])
    assert result.exit_code == 0, result.output
    assert "best instruction" in result.output
    data = json.loads(out_file.read_text(encoding="utf-8"))
    assert data["candidates"][0]["source"] == "original"
    assert data["best"]["validation_score"] >= data["original"]["validation_score"]
    assert [m["agent"] for m in data["conversation"] if m["kind"] == "message"][:3] == [
        "engineer", "evaluator", "critic"]
    cfg = load_config(config)
    test_inputs = [e.input for e in load_task(cfg.task, seed=cfg.seed).test]
    assert seen and not any(t in prompt for t in test_inputs for prompt in seen)


NO_TTY_TEAM = """
import json
from tunewise.agents.team import Role, TeamSpec, run_teams
from tunewise.backends.fake import FakeBackend
spec = TeamSpec(roles=(Role("solver", "Solve."), Role("critic", "Check.")), max_messages=3, human_turns=(1, 2))
print(json.dumps(run_teams(FakeBackend("fake"), [(spec, "where is my delivery")])[0].trace()))
"""


def test_a_team_with_stdin_closed_never_waits_for_a_person():
    env = {**os.environ, "CI": ""}  # a closed stdin alone must be enough
    done = subprocess.run([sys.executable, "-c", NO_TTY_TEAM], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    trace = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(e["agent"], e["kind"]) for e in trace] == [
        ("user", "task"), ("solver", "message"), ("human", "note"), ("critic", "message"), ("human", "note"),
        ("solver", "message")]


def test_tunewise_run_with_human_turns_finishes_without_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("a run without a terminal asked for input"))
    config = write_config(tmp_path, "[{name: reflect, human_turns: [1]}]")
    result = runner.invoke(app, ["run", str(config), "--limit", "4"])  # CliRunner's stdin is not a terminal
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs").iterdir())
    rows = [json.loads(line) for line in (run_dir / "predictions" / "reflect.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert [e["kind"] for e in row["trace"] if e["agent"] == "human"] == ["note"]
