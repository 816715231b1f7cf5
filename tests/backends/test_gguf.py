"""GGUF export (backends/gguf.py): a merged LoRA model written as GGUF reads back through transformers' own GGUF
loader (an independent reader of the format) with the same logits and the same greedy output."""

from __future__ import annotations

import pytest
import torch

from tunewise.backends.embedded import SMOLLM2, embedded_gguf
from tunewise.backends.gguf import write_gguf
from tunewise.errors import UserError

PROMPT = "<|im_start|>user\nIs this review positive? Great film.<|im_end|>\n<|im_start|>assistant\n"


def _merged_lora(tiny_causal):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_causal)
    # init_lora_weights=False: B is random, so the merged weights differ from the base's (a no-op LoRA proves nothing)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
                                           init_lora_weights=False))
    return peft.merge_and_unload().eval()


def _read_back(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()


def _greedy(model, tokenizer, n=8):
    ids = tokenizer(PROMPT, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        logits = model(**ids).logits
    return out[0, ids["input_ids"].shape[1]:].tolist(), logits


def test_merged_lora_round_trips_exactly_in_f32(tiny_causal, smollm2_tokenizer, tmp_path):
    model = _merged_lora(tiny_causal)
    path = write_gguf(model, smollm2_tokenizer, tmp_path / "lora.gguf", embedded_gguf(SMOLLM2), "f32")
    back = _read_back(path)
    tokens, logits = _greedy(model, smollm2_tokenizer)
    tokens_back, logits_back = _greedy(back, smollm2_tokenizer)
    assert tokens_back == tokens
    torch.testing.assert_close(logits_back, logits, rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "lora.gguf.partial").exists()


def test_q8_0_is_a_quarter_of_f32_and_close(tiny_causal, smollm2_tokenizer, tmp_path):
    model = _merged_lora(tiny_causal)
    exact = write_gguf(model, smollm2_tokenizer, tmp_path / "f32.gguf", embedded_gguf(SMOLLM2), "f32")
    small = write_gguf(model, smollm2_tokenizer, tmp_path / "q8.gguf", embedded_gguf(SMOLLM2), "q8_0")
    # the tokenizer keys (~2 MB, equal in both) dominate a tiny model: compare the tensor bytes
    import gguf

    def tensor_bytes(p):
        return sum(int(t.n_bytes) for t in gguf.GGUFReader(p).tensors)

    assert tensor_bytes(small) < 0.3 * tensor_bytes(exact)
    # each matrix within 1% of its own size (8-bit blocks with one scale per 32 values); norms exact
    theirs = _read_back(small).state_dict()
    for key, weight in model.state_dict().items():
        error = (theirs[key] - weight).norm() / weight.norm()
        assert error < (0.01 if weight.ndim == 2 else 1e-7), key


def test_qwen2_round_trips_without_the_rotary_permutation(smollm2_tokenizer, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(2)
    config = Qwen2Config(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, pad_token_id=smollm2_tokenizer.pad_token_id)
    model = Qwen2ForCausalLM(config).eval()
    path = write_gguf(model, smollm2_tokenizer, tmp_path / "qwen.gguf", embedded_gguf(SMOLLM2), "f32")
    tokens, logits = _greedy(model, smollm2_tokenizer)
    tokens_back, logits_back = _greedy(_read_back(path), smollm2_tokenizer)
    assert tokens_back == tokens
    torch.testing.assert_close(logits_back, logits, rtol=1e-5, atol=1e-5)


def test_a_gguf_of_another_tokenizer_is_refused(tiny_causal, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunewise.backends.embedded import MINILM, resolve

    other = AutoTokenizer.from_pretrained(resolve(MINILM))  # BERT's 30,522 word pieces, not SmolLM2's 49,152
    with pytest.raises(UserError, match="tokenizer has 49152 tokens, the model's 30522"):
        write_gguf(AutoModelForCausalLM.from_pretrained(tiny_causal), other, tmp_path / "x.gguf",
                   embedded_gguf(SMOLLM2))
    assert not list(tmp_path.iterdir())


def test_an_unsupported_architecture_is_refused_in_one_line(smollm2_tokenizer, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(smollm2_tokenizer), n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(UserError, match="not gpt2.*convert_hf_to_gguf.py"):
        write_gguf(model, smollm2_tokenizer, tmp_path / "x.gguf", embedded_gguf(SMOLLM2))
