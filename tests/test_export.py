"""`tunewise export RUN` (export.py): a run's LoRA fine-tune, merged, written as GGUF and read back by transformers'
own GGUF loader gives the strategy's greedy output; what cannot be merged or exported is refused in one line."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from _serving import tiny_run
from tunewise.backends.embedded import SMOLLM2, embedded_gguf
from tunewise.cli import app

PROMPT = "<|im_start|>user\nThe film was wonderful.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_causal, tiny_encoder):
    return tiny_run(tmp_path_factory.mktemp("export"), tiny_causal, tiny_encoder)


def _greedy(model, tokenizer):
    ids = tokenizer(PROMPT, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return out[0, ids["input_ids"].shape[1]:].tolist(), model(**ids).logits


def test_a_lora_strategy_exports_merged_and_reads_back_with_its_output(run_dir, tmp_path, smollm2_tokenizer):
    from transformers import AutoModelForCausalLM

    from tunewise.runs import Run

    out = tmp_path / "lora.gguf"
    result = CliRunner().invoke(app, ["export", str(run_dir), "--strategy", "lora", "--gguf", str(out), "--type",
                                      "f32", "--tokenizer-gguf", str(embedded_gguf(SMOLLM2)),
                                      "--merged", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert "as GGUF (f32" in result.output and str(out) in result.output
    run = Run.open(run_dir, device="cpu", announce=False)
    try:
        lora = run.predictor(run.cell("lora")).model  # the PeftModel the run scored with
        expected, logits = _greedy(lora, smollm2_tokenizer)
    finally:
        run.close()
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=out.name).eval()
    got, got_logits = _greedy(back, smollm2_tokenizer)
    assert got == expected
    torch.testing.assert_close(got_logits, logits, rtol=1e-4, atol=1e-4)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert _greedy(merged, smollm2_tokenizer)[0] == expected
    base = AutoModelForCausalLM.from_pretrained(run.config.model).eval()  # the adapter really changed the model
    assert not torch.allclose(_greedy(base, smollm2_tokenizer)[1], logits, atol=1e-4)


@pytest.mark.parametrize(("args", "words"), [
    (["--strategy", "head-only"], "runs on the encoder"),
    (["--strategy", "zero-shot"], "prompting strategy: it has no weights of its own"),
    (["--strategy", "nope"], "has no such strategy"),
    ([], "give one with --tokenizer-gguf FILE"),  # the tiny model is not embedded: no known tokenizer GGUF
])
def test_what_cannot_be_exported_is_refused_in_one_line(run_dir, tmp_path, args, words):
    result = CliRunner().invoke(app, ["export", str(run_dir), *args, "--gguf", str(tmp_path / "x.gguf")])
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.gguf").exists()


def test_prompt_learning_adapters_have_no_merged_form():
    from peft import PromptTuningConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunewise.errors import UserError
    from tunewise.export import merged_model

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2))
    peft = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    with pytest.raises(UserError, match="prompt-tuning adapter: its virtual tokens have no merged form"):
        merged_model(peft, "strategy p")
