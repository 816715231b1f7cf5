"""`tunewise agents write TOPIC`: a content-creation team (researcher, writer, editor) over any model.

The researcher lists facts, the writer drafts from them, the editor returns the final text; `rounds`
repeats the cycle (the researcher then checks the edited text). Every message goes to `on_turn` as it
is produced (the command prints it live) and the conversation, final text and tokens are saved as JSON.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tunewise.agents.team import Role, TeamSpec, Turn, run_teams
from tunewise.errors import UserError
from tunewise.runs import Session

ROLES = (
    Role("researcher", "You are a researcher. List four to six short, accurate facts about the topic as bullet "
                       "points. Later, point out any factual error in the edited text.", "Gathers facts."),
    Role("writer", "You are a writer. Write a clear, engaging article of about 120 words on the topic, using "
                   "the researcher's facts.", "Drafts the article."),
    Role("editor", "You are an editor. Improve the writer's draft: fix errors, cut filler, keep it about 120 "
                   "words. Reply with the final article only.", "Returns the final text."),
)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "topic"


def write(topic: str, model: str = "smollm2-135m-instruct", device: str = "auto", rounds: int = 1,
          max_new_tokens: int = 256, output: str | Path | None = None, human_turns: Sequence[int] = (),
          on_turn: Callable[[Turn], None] | None = None) -> dict[str, Any]:
    """Run the writing team on `topic`; returns the conversation and saves it to `output` (JSON)."""
    if not topic.strip():
        raise UserError("TOPIC: give the subject to write about, e.g. `tunewise agents write \"tide pools\"`")
    backend = Session.for_model(model, device).backend("causal")  # the run API loads the model
    spec = TeamSpec(roles=ROLES, max_messages=3 * rounds, max_new_tokens=max_new_tokens,
                    human_turns=tuple(human_turns))
    start = time.perf_counter()
    run = run_teams(backend, [(spec, f"Topic: {topic.strip()}")], concurrency=1,
                    on_turn=(lambda _, t: on_turn(t)) if on_turn else None)[0]
    result = {"topic": topic, "model": model, "final": run.final_text(("editor",)), "stop_reason": run.stop_reason,
              "messages": run.trace(), "tokens": {"prompt": run.prompt_tokens, "completion": run.completion_tokens},
              "seconds": time.perf_counter() - start}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(output) if output else Path("runs") / f"agents-write-{_slug(topic)}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    result["path"] = str(path)
    return result
