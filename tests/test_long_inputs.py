"""Inputs longer than the model can take: the `long_input` case (one ~14,000-word test input) run on a tiny
model whose context is 128 tokens; the truncate/refuse policy of `backends/context.py` on every prompting,
agent and training path; batches bounded by tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import CASES, keyword_task
from tunewise.backends import load_backend
from tunewise.backends.context import InputTooLong, token_batches
from tunewise.cli import app
from tunewise.data import Example, Task
from tunewise.registry import get_strategy, strategy_config
from tunewise.strategies.base import FitContext

CASE = CASES / "long_input"
runner = CliRunner()


@pytest.fixture(scope="module")
def short_causal(tmp_path_factory, smollm2_tokenizer) -> str:
    """A 2-layer Llama with SmolLM2's tokenizer and a context of 128 tokens."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=True,
                         pad_token_id=smollm2_tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("short-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return str(path)


def case_config(tmp_path: Path, model: str, encoder: str, **task) -> Path:
    cfg = yaml.safe_load((CASE / "config.yaml").read_text(encoding="utf-8"))
    cfg["task"] = {**cfg["task"], "source": str(CASE / cfg["task"]["source"]), **task}
    cfg.update(model=model, encoder=encoder, output_dir=str(tmp_path / "runs"),
               strategies=["zero-shot", {"name": "head-only", "epochs": 1, "early_stopping_patience": None}])
    path = tmp_path / "long_input.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_long_input_case_finishes_truncates_one_input_and_says_so(tmp_path, short_causal, tiny_encoder):
    result = runner.invoke(app, ["run", str(case_config(tmp_path, short_causal, tiny_encoder))])
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1].split("run folder: ")[1])
    results = {r["strategy"]: r for r in json.loads((run_dir / "results.json").read_text(encoding="utf-8"))}
    labels = json.loads((run_dir / "splits.json").read_text(encoding="utf-8"))["labels"]
    for sid in ("zero-shot", "head-only"):
        assert results[sid]["status"] == "done"
        assert results[sid]["cost"]["details"]["truncated_inputs"] == 1
        rows = [json.loads(line) for line in (run_dir / "predictions" / f"{sid}.jsonl").read_text().splitlines()]
        long_row = next(r for r in rows if r["example_id"] == "47")
        assert long_row["output"] in labels  # the over-long input got a prediction
        cut = next(s for s in long_row["trace"] if s["step"] == "truncated")
        assert cut["prompt_tokens"] > 10_000 and cut["kept_tokens"] <= 128
        assert all(not any(s["step"] == "truncated" for s in r["trace"] or []) for r in rows if r is not long_row)
    zero_shot = next(r for r in (run_dir / "predictions" / "zero-shot.jsonl").read_text().splitlines()
                     if '"example_id": "47"' in r)
    assert json.loads(zero_shot)["prompt_tokens"] <= 128
    shown = runner.invoke(app, ["show", str(run_dir)], terminal_width=200)
    assert "truncated inputs" in shown.output and "zero-shot 1" in shown.output and "head-only 1" in shown.output
    from tunewise.report.html import build_report

    html = build_report(run_dir).html.read_text(encoding="utf-8")
    assert "Inputs cut to fit the model" in html and "1 of 10 test inputs" in html


def test_refuse_stops_with_one_line_naming_the_example(tmp_path, short_causal, tiny_encoder):
    result = runner.invoke(app, ["run", str(case_config(tmp_path, short_causal, tiny_encoder, long_inputs="refuse"))])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    line = errors[0]
    assert "garden_log.csv:47" in line and "tokens, over the limit of" in line and "128" in line


def test_validate_reports_the_longest_inputs_against_the_context(tmp_path, short_causal, tiny_encoder):
    result = runner.invoke(app, ["validate", str(case_config(tmp_path, short_causal, tiny_encoder))],
                           terminal_width=400)
    assert result.exit_code == 0, result.output
    causal = next(line for line in result.output.splitlines() if line.startswith(short_causal))
    assert "garden_log.csv:47 18," in causal and "1 of 46 over the model's context of 128 tokens" in causal


def long_task(n_words: int = 3000, **policy) -> Task:
    """keyword_task plus one test input of n_words words whose first and last words are markers."""
    base = keyword_task()
    text = "where is my delivery " + " ".join(f"w{i}" for i in range(n_words)) + " LASTWORD"
    long = Example(id="long", input=text, target="delivery", meta={"source": "long.csv:9"})
    return Task(name="kw", kind="classification", train=base.train, validation=[], test=base.test + [long],
                instruction="Route the customer message to a team.", labels=base.labels, **policy)


def fit(name: str, backend, task: Task, tmp_path: Path, **options):
    cfg = strategy_config({"name": name, **options})
    return get_strategy(name)(cfg).fit(backend, task, FitContext(artifact_dir=tmp_path, seed=0))


def test_truncated_prompt_keeps_instruction_demonstrations_and_answer_slot(tmp_path, short_causal):
    backend = load_backend(short_causal, "causal", "cpu")
    task = long_task()
    seen = {}
    score = backend.score

    def spy(prefix, suffixes, continuations, **kw):
        seen.update(prefix=prefix, suffixes=list(suffixes), continuations=list(continuations))
        return score(prefix, suffixes, continuations, **kw)

    backend.score = spy
    preds = fit("few-shot", backend, task, tmp_path, k=2).predict(task.test)
    assert len(preds) == len(task.test) and all(p.output in task.labels for p in preds)
    prefix, long_suffix = seen["prefix"], seen["suffixes"][-1]
    assert task.instruction in prefix and "Answer with exactly one of: delivery, refund." in prefix
    demos = [d for d in task.train if d.input in prefix]
    assert len(demos) == 2  # both demonstrations whole, in the cached prefix
    assert "where is my delivery w0 w1" in long_suffix and "LASTWORD" not in long_suffix
    assert long_suffix.rstrip().endswith("<|im_start|>assistant")  # the answer slot follows, untouched
    slot = max(backend.count_tokens(c) for c in seen["continuations"])
    assert backend.count_tokens(prefix) + backend.count_tokens(long_suffix) + slot <= backend.context_window
    assert [s["step"] for s in preds[-1].trace] == ["truncated"] and preds[-1].trace[0]["example"] == "long.csv:9"
    assert all(p.trace is None for p in preds[:-1])


def test_generation_keeps_room_for_max_new_tokens(tmp_path, short_causal):
    backend = load_backend(short_causal, "causal", "cpu")
    task = long_task()
    sample, prompts = backend.sample, []
    backend.sample = lambda ps, **kw: prompts.extend(ps) or sample(ps, **kw)
    preds = fit("chain-of-thought", backend, task, tmp_path, max_new_tokens=24).predict(task.test)
    assert len(preds) == len(task.test) and preds[-1].trace[0]["step"] == "truncated"
    long_prompt = prompts[-1]
    assert long_prompt.endswith("Let's think step by step.") and task.instruction in long_prompt
    assert backend.count_tokens(long_prompt) + 24 <= 128 and "LASTWORD" not in long_prompt


PROMPTING = [("zero-shot", {}), ("few-shot", {"k": 2}), ("chain-of-thought", {}),
             ("self-consistency", {"n": 2}), ("template", {"k": 2}), ("chain", {}), ("reflect", {}),
             ("team", {}), ("tool-agent", {})]


@pytest.mark.parametrize("name,options", PROMPTING, ids=[n for n, _ in PROMPTING])
def test_every_prompting_and_agent_strategy_cuts_only_the_long_input(name, options, tmp_path):
    task = long_task(max_input_tokens=120)
    preds = fit(name, load_backend("fake", "causal"), task, tmp_path, **options).predict(task.test)
    assert len(preds) == len(task.test)
    cut = [s for s in preds[-1].trace if s["step"] == "truncated"]
    assert len(cut) == 1 and cut[0]["prompt_tokens"] > 3000 and cut[0]["kept_tokens"] <= 120
    assert all(not any(s.get("step") == "truncated" for s in p.trace or []) for p in preds[:-1])


REFUSING = PROMPTING[:3] + PROMPTING[5:7]


@pytest.mark.parametrize("name,options", REFUSING, ids=[n for n, _ in REFUSING])
def test_refuse_names_the_example_on_every_path(name, options, tmp_path):
    task = long_task(max_input_tokens=120, long_inputs="refuse")
    with pytest.raises(InputTooLong, match=r"long.csv:9: the prompt has [\d,]+ tokens, over the limit of 120"):
        fit(name, load_backend("fake", "causal"), task, tmp_path, **options).predict(task.test)


def test_causal_training_data_cut_the_input_not_the_instruction_or_answer(short_causal):
    from tunewise.strategies.finetuning._causal import encode_examples, shared_messages

    backend = load_backend(short_causal, "causal", "cpu")
    task = long_task()
    stats: dict = {}
    rows = encode_examples(backend, task, task.test, max_length=96, stats=stats)
    assert stats["truncated_train_examples"] == 1 and all(len(r["input_ids"]) <= 96 for r in rows)
    text = backend.tokenizer.decode(rows[-1]["input_ids"])
    system = backend.render(shared_messages(task), add_generation_prompt=False)
    assert text.startswith(system) and "where is my delivery w0" in text and "LASTWORD" not in text
    answer = [t for t in rows[-1]["labels"] if t != -100]
    assert backend.tokenizer.decode(answer).startswith("delivery")
    with pytest.raises(InputTooLong, match="long.csv:9"):  # over the model's context of 128
        encode_examples(backend, long_task(long_inputs="refuse"), task.test, max_length=512)


def test_encoder_counts_a_cut_input_and_refuses_one_over_its_context(tiny_encoder):
    from tunewise.strategies.finetuning._encoder import EncoderPredictor

    backend = load_backend(tiny_encoder, "encoder", "cpu")
    task = long_task(n_words=600)
    model = backend.classifier(task.labels)
    context = backend.context_window  # the encoder's declared context (512 positions)
    preds = EncoderPredictor(model, backend.tokenizer, task.labels, 64, task=task, context=context).predict(task.test)
    assert preds[-1].trace[0]["step"] == "truncated" and preds[-1].prompt_tokens == 64
    with pytest.raises(InputTooLong, match="long.csv:9.*over the limit of 512"):
        EncoderPredictor(model, backend.tokenizer, task.labels, 64, task=long_task(n_words=600, long_inputs="refuse"),
                         context=context).predict(task.test)


def test_token_batches_split_on_the_token_budget():
    assert token_batches([2, 2, 30, 2, 2, 2], max_rows=8, max_tokens=16) == [[0, 1], [2], [3, 4, 5]]
    assert token_batches([3] * 5, max_rows=2, max_tokens=100) == [[0, 1], [2, 3], [4]]
    assert token_batches([4, 4], max_rows=8, max_tokens=16, rows_per_item=3) == [[0], [1]]


def test_generation_batches_are_bounded_by_tokens(short_causal):
    backend = load_backend(short_causal, "causal", "cpu")
    backend.max_batch_tokens = 64
    widths, generate = [], backend.model.generate

    def spy(**kw):
        widths.append(tuple(kw["input_ids"].shape))
        return generate(**kw)

    backend.model.generate = spy
    prompts = ["hi there", "hello you", "word " * 50, "ok then", "fine now"]
    outs = backend.generate(prompts, max_new_tokens=2, batch_size=8)
    assert len(outs) == 5
    assert [b for b, _ in widths] == [2, 1, 2] and widths[1][1] >= 50  # the long prompt ran alone


def test_prompt_optimiser_fits_long_failures_into_the_writers_context(tiny_causal):
    from tunewise.strategies.prompting.optimize_prompt import OptimizePromptConfig, _Optimiser

    backend = load_backend(tiny_causal, "causal", "cpu")  # context 1,024; the long input has ~6,000 tokens
    task = long_task()
    config = OptimizePromptConfig(name="optimize-prompt", candidates=1, max_proposal_tokens=8)
    optimiser = _Optimiser(backend, backend, task, config, seed=0)
    proposals = optimiser.propose("Route it.", [(task.test[-1], "refund"), (task.test[0], "refund")])
    assert len(proposals) == 1 and optimiser.tokens["prompt"] + 8 <= 1024  # meta-prompt + proposal fit
