"""`tunewise agents ...`: agent teams that do tunewise's own work (prompt optimisation) and a writing demo.

Both show the conversation live, one message at a time, and save it as JSON. The logic lives in
`tunewise.apps.agents_optimize` and `tunewise.apps.agents_write`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tunewise.cli import app, friendly, out

agents = typer.Typer(no_args_is_help=True, help="Agent teams (AutoGen) on tunewise models.")
app.add_typer(agents, name="agents")


def show_turn(turn) -> None:
    """Print one message of a team as it arrives."""
    if turn.kind == "task":
        title = "task"
    elif turn.kind in ("message", "tool_call", "selector"):
        title = f"{turn.agent} ({turn.kind}, {turn.prompt_tokens} prompt + {turn.completion_tokens} completion tokens)"
    else:
        title = f"{turn.agent} ({turn.kind})"
    out.rule(escape(title), align="left")
    out.print(turn.content, markup=False, highlight=False, soft_wrap=True)


@agents.command("optimize-prompt")
@friendly
def optimize_prompt_command(
    config: Annotated[Path, typer.Argument(help="Experiment YAML: its task and model are used.")],
    rounds: Annotated[int, typer.Option(min=1, max=20, help="Propose-evaluate-critique cycles.")] = 3,
    validation_examples: Annotated[int, typer.Option(min=1, help="Validation examples scored per candidate.")] = 32,
    output: Annotated[Path | None, typer.Option(help="JSON file for the result (default: in output_dir).")] = None,
):
    """A prompt engineer proposes instructions, an evaluator tool scores them on the validation split, a
    critic analyses the failures; prints the best instruction and saves the history."""
    from tunewise.apps.agents_optimize import optimize_prompt

    result = optimize_prompt(config, rounds=rounds, validation_examples=validation_examples, output=output,
                             on_turn=show_turn)
    out.rule("candidates", align="left")
    for c in result["candidates"]:
        out.print(f"{c['validation_score']:.3f}  [{c['source']}] {escape(c['instruction'])}", highlight=False)
    best, original = result["best"], result["original"]
    out.print(f"\n[bold]best instruction[/] ({result['validation_source']} accuracy {best['validation_score']:.3f}"
              f", original {original['validation_score']:.3f}):\n{escape(best['instruction'])}", highlight=False)
    out.print(f"saved: {result['path']}", highlight=False, soft_wrap=True)


@agents.command("write")
@friendly
def write_command(
    topic: Annotated[str, typer.Argument(help="What to write about.")],
    model: Annotated[str, typer.Option(help="Causal LM: embedded name, hub name, path or 'fake'.")] =
        "smollm2-135m-instruct",
    rounds: Annotated[int, typer.Option(min=1, max=10, help="Researcher-writer-editor cycles.")] = 1,
    max_tokens: Annotated[int, typer.Option(min=1, max=4096, help="Longest message, in tokens.")] = 256,
    human_turn: Annotated[list[int] | None, typer.Option(
        help="Pause after this agent message for your approval or edit (repeatable); skipped when not "
             "interactive.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    output: Annotated[Path | None, typer.Option(help="JSON file for the conversation (default: runs/).")] = None,
):
    """A researcher, a writer and an editor write about TOPIC; the conversation is shown live and saved."""
    from tunewise.apps.agents_write import write

    result = write(topic, model=model, device=device, rounds=rounds, max_new_tokens=max_tokens, output=output,
                   human_turns=human_turn or (), on_turn=show_turn)
    out.rule("final text", align="left")
    out.print(result["final"], markup=False, highlight=False, soft_wrap=True)
    out.print(f"\n{result['tokens']['prompt']} prompt + {result['tokens']['completion']} completion tokens, "
              f"{result['seconds']:.1f} s · saved: {result['path']}", highlight=False, soft_wrap=True)
