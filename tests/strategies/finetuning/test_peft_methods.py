"""PEFT methods (lora, ia3, prefix-tuning, prompt-tuning, p-tuning): the cached label scorer agrees with a
plain full forward of each PEFT model, generation honours the virtual tokens, bad options are one-line
errors naming the option, and a merged export reloads with plain transformers and predicts as the adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunewise.backends import load_backend
from tunewise.config import parse_config
from tunewise.errors import UserError
from tunewise.registry import strategies, strategy_config
from tunewise.runs.measure import measure_after_fit
from tunewise.strategies.base import FitContext
from tunewise.strategies.finetuning._causal import shared_messages
from tunewise.strategies.finetuning._peft import create_peft_model, peft_predictor

FAST = {"epochs": 1, "batch_size": 4, "learning_rate": 5e-3, "early_stopping_patience": None}
# Options that make each method's effect large enough to show in the comparison (tiny model, few tokens).
METHODS = {
    "lora": {"rank": 4},
    "dora": {"name": "lora", "rank": 4, "use_dora": True},
    "ia3": {},
    "prefix-tuning": {"num_virtual_tokens": 5},
    "prefix-projection": {"name": "prefix-tuning", "num_virtual_tokens": 5, "prefix_projection": True,
                          "encoder_hidden_size": 16},
    "prompt-tuning": {"num_virtual_tokens": 7},
    "p-tuning": {"num_virtual_tokens": 6, "encoder_hidden_size": 16},
    "p-tuning-lstm": {"name": "p-tuning", "num_virtual_tokens": 4, "encoder": "lstm", "encoder_hidden_size": 16},
}


@pytest.fixture(scope="module")
def causal(tiny_causal):
    return load_backend(tiny_causal, "causal", "cpu")


def _peft_model(causal, task, key: str):
    options = {"name": key, **METHODS[key]}
    strategy = strategies()[options["name"]](strategy_config(options))
    torch.manual_seed(0)
    model = create_peft_model(causal.fresh_model(), lambda: strategy.peft_config(causal, task), key,
                              strategy.options)
    strategy.initialise(model, causal, task)
    with torch.no_grad():  # stand-in for training: move every trainable weight well away from its init
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


@torch.no_grad()
def _full_forward_logp(model, ids: list[int], n_answer: int) -> float:
    """log P(last n_answer tokens | the rest) from one plain forward of the PEFT model over the whole sequence."""
    logits = model(input_ids=torch.tensor([ids])).logits[0, -len(ids):]  # drop prompt-tuning's virtual rows
    logp = torch.log_softmax(logits.float(), dim=-1)
    start = len(ids) - n_answer
    return sum(float(logp[start + k - 1, ids[start + k]]) for k in range(n_answer))


@pytest.mark.slow
@pytest.mark.parametrize("key", list(METHODS))
def test_cached_scorer_matches_full_forward(key, causal, small_task):
    model = _peft_model(causal, small_task, key)
    predictor = peft_predictor(causal, small_task, model)
    examples = small_task.test[:5]
    shared = shared_messages(small_task)
    pairs = [causal.split_prompt(shared, [{"role": "user", "content": e.input}]) for e in examples]
    assert len({p for p, _ in pairs}) == 1 and pairs[0][0], "the instruction is a shared, cached prefix"
    prefix = pairs[0][0]
    conts = predictor.continuations
    fast = predictor.backend.score(prefix, [s for _, s in pairs], conts, batch_size=2)
    expected = [[_full_forward_logp(model, causal.encode(prefix) + causal.encode(s) + causal.encode(c),
                                    len(causal.encode(c))) for c in conts] for _, s in pairs]
    assert fast == pytest.approx(np.array(expected), abs=1e-4)
    # and the adapter really changes the scores (otherwise the comparison proves nothing)
    base = causal.score(prefix, [s for _, s in pairs], conts)
    assert abs(base - fast).max() > 1e-3
    preds = predictor.predict(examples)
    assert [p.output for p in preds] == [small_task.labels[int(row.argmax())] for row in fast]


@pytest.mark.slow
@pytest.mark.parametrize("key", ["prefix-tuning", "prompt-tuning", "p-tuning"])
def test_generation_uses_the_virtual_tokens(key, causal, small_task):
    """Greedy generation equals a token-by-token argmax over full forwards of the PEFT model
    (PeftModel.generate ignores a prefix-tuning prefix under transformers 5)."""
    model = _peft_model(causal, small_task, key)
    with torch.no_grad():  # make the virtual tokens dominate so a lost prefix changes the output
        for p in model.parameters():
            if p.requires_grad:
                p.mul_(8)
    predictor = peft_predictor(causal, small_task, model)
    prompts = [causal.render(shared_messages(small_task) + [{"role": "user", "content": e.input}], True)
               for e in small_task.test[:3]]
    generated = _generated_ids(predictor.backend, prompts)
    for prompt, ids in zip(prompts, generated, strict=True):
        seq = causal.encode(prompt)
        with torch.no_grad():
            for _ in range(len(ids)):
                seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
        assert ids == seq[-len(ids):]
    # the server asks for dict outputs with logits; sampling asks for several sequences per prompt
    assert _generated_ids(predictor.backend, prompts, return_dict_in_generate=True, output_logits=True) == generated
    samples = predictor.backend.sample(prompts, n=3, temperature=0.8, max_new_tokens=3)
    assert [len(s) for s in samples] == [3, 3, 3]


def _generated_ids(backend, prompts, n_new: int = 4, **kwargs) -> list[list[int]]:
    tok = backend.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = backend.model.generate(**enc, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                                 pad_token_id=tok.pad_token_id, **kwargs)
    out = out if isinstance(out, torch.Tensor) else out.sequences
    return [row.tolist() for row in out[:, enc["input_ids"].shape[1]:]]


def test_prompt_tuning_starts_from_the_instruction(causal, small_task):
    strategy = strategies()["prompt-tuning"](strategy_config({"name": "prompt-tuning", "num_virtual_tokens": 5}))
    model = create_peft_model(causal.fresh_model(), lambda: strategy.peft_config(causal, small_task),
                              "prompt-tuning", strategy.options)
    strategy.initialise(model, causal, small_task)
    ids = causal.encode(shared_messages(small_task)[0]["content"])[:5]
    expected = model.word_embeddings(torch.tensor(ids))
    assert torch.equal(model.prompt_encoder["default"].embedding.weight.detach(), expected.detach())
    assert model.peft_config["default"].prompt_tuning_init_text == small_task.instruction


@pytest.mark.parametrize(("options", "key"), [
    ({"name": "lora", "learning_rate": -1e-3}, "strategies[0].learning_rate"),
    ({"name": "ia3", "learning_rate": float("nan")}, "learning_rate"),
    ({"name": "lora", "rank": 0}, "strategies[0].rank"),
    ({"name": "lora", "target_modules": []}, "strategies[0].target_modules"),
    ({"name": "prefix-tuning", "num_virtual_tokens": 0}, "strategies[0].num_virtual_tokens"),
    ({"name": "prompt-tuning", "num_virtual_tokens": 0}, "strategies[0].num_virtual_tokens"),
    ({"name": "p-tuning", "num_virtual_tokens": 0}, "strategies[0].num_virtual_tokens"),
    ({"name": "p-tuning", "encoder": "gru"}, "strategies[0].encoder"),
    ({"name": "prompt-tuning", "init_text": ""}, "strategies[0].init_text"),
    ({"name": "ia3", "target_modules": ["k_proj"], "feedforward_modules": ["down_proj"]}, "feedforward_modules"),
    ({"name": "prefix-tuning", "encoder_hidden_size": 8}, "prefix_projection"),
])
def test_bad_options_are_one_line_errors_naming_the_option(options, key):
    with pytest.raises(UserError) as info:
        parse_config({"strategies": [options]}, "exp.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert key in message


@pytest.mark.parametrize("name", ["lora", "ia3"])
def test_unknown_target_module_is_a_user_error(name, causal, small_task, tmp_path):
    strategy = strategies()[name](strategy_config({"name": name, **FAST, "target_modules": ["nope"]}))
    with pytest.raises(UserError, match=rf"strategies\.{name}\.target_modules: .*nope") as info:
        strategy.fit(causal, small_task, FitContext(artifact_dir=tmp_path, seed=0))
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lora", "ia3"])
def test_merged_export_loads_with_plain_transformers(name, causal, small_task, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunewise.backends.hf_local import CausalLMBackend
    from tunewise.strategies.prompting._common import prompt_predictor

    ctx = FitContext(artifact_dir=tmp_path, seed=0)
    strategy = strategies()[name](strategy_config({"name": name, **FAST, "learning_rate": 3e-2, "merge": True}))
    predictor = strategy.fit(causal, small_task, ctx)
    adapter_preds = predictor.predict(small_task.test)
    measure_after_fit(strategy, causal, predictor, ctx)  # what the run API does after every fit
    merged_dir = tmp_path / "merged"
    model = AutoModelForCausalLM.from_pretrained(merged_dir)  # plain transformers, no peft
    assert not any("lora" in n or "ia3" in n for n, _ in model.named_parameters())
    backend = CausalLMBackend(str(merged_dir), device="cpu", model=model,
                              tokenizer=AutoTokenizer.from_pretrained(merged_dir))
    merged_preds = prompt_predictor(backend, small_task, shared_messages(small_task)).predict(small_task.test)
    for a, b in zip(adapter_preds, merged_preds, strict=True):
        assert a.output == b.output
        for label in small_task.labels:
            assert a.scores[label] == pytest.approx(b.scores[label], abs=1e-4)
    assert 0 < ctx.stats["adapter_mb"] < ctx.stats["merged_mb"]
    assert ctx.stats["forgetting"]["ppl_after"] > 0  # forgetting is measured for every causal fine-tune
    # the merge did not disturb the adapter the predictor and --resume use
    again = strategy.load(causal, small_task, ctx).predict(small_task.test)
    assert [p.output for p in again] == [p.output for p in adapter_preds]
