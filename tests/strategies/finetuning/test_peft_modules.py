"""Module names in PEFT (and bottleneck adapter) settings are checked against the model before training, as peft
matches them: a name that matches nothing is a one-line UserError (exit 2) naming it and listing the model's
module names, in `tunewise validate` (the model built on the meta device from its config) and before `run`
trains. The shared case `peft_target_modules/` with the tiny model, and with the embedded one (slow)."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import CASES
from tunewise.backends.skeleton import meta_model
from tunewise.cli import app
from tunewise.errors import UserError
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.finetuning._modules import layer_count, leaf_names

LLAMA_LINEARS = ["down_proj", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.fixture(scope="module")
def meta(tiny_causal):
    return meta_model(tiny_causal)


def strategy(options: dict):
    return strategies()[options["name"]](strategy_config(options))


def refused(model, options: dict) -> str:
    with pytest.raises(UserError) as info:
        strategy(options).check_model(model)
    assert "\n" not in str(info.value)
    return str(info.value)


def case_config(tmp_path, model: str | None) -> str:
    """The shared case's config and data, with `model` set (None: the case as shipped, default model)."""
    shutil.copy(CASES / "peft_target_modules" / "desk.csv", tmp_path / "desk.csv")
    config = yaml.safe_load((CASES / "peft_target_modules" / "config.yaml").read_text(encoding="utf-8"))
    if model:
        config.update(model=model, output_dir=str(tmp_path / "runs"))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def exits_2(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    return line


def test_the_meta_model_has_the_architecture_and_no_weights(meta):
    assert all(p.device.type == "meta" for p in meta.parameters())
    assert layer_count(meta) == 2
    assert set(LLAMA_LINEARS) == set(leaf_names(meta, (torch.nn.Linear,)))
    assert meta_model("fake") is None and meta_model("openai:gpt-4o-mini") is None


def test_validate_names_the_bad_module_and_lists_the_real_ones(tmp_path, tiny_causal):
    line = exits_2(["validate", case_config(tmp_path, tiny_causal)])
    assert "strategies.lora.target_modules: 'not_a_real_layer' is not a module of LlamaForCausalLM" in line
    assert "its module names: down_proj, embed_tokens, gate_proj, k_proj, lm_head, o_proj, q_proj" in line


def test_run_stops_before_training(tmp_path, tiny_causal, monkeypatch):
    from tunewise.strategies.finetuning import _lm_fit

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(_lm_fit, "fit_causal", no_training)
    line = exits_2(["run", case_config(tmp_path, tiny_causal)])
    assert "'not_a_real_layer' is not a module" in line and "q_proj" in line
    assert not list((tmp_path / "runs").glob("*/strategies/lora/adapter"))


@pytest.mark.slow
def test_the_shared_case_as_shipped_fails_validate_on_the_embedded_model(tmp_path):
    line = exits_2(["validate", case_config(tmp_path, None)])
    assert "'not_a_real_layer' is not a module of LlamaForCausalLM" in line and "q_proj, up_proj, v_proj" in line


@pytest.mark.parametrize("options", [
    {"name": "lora", "target_modules": ["q_proj", "self_attn.v_proj"]},  # suffixes after a '.', as peft matches
    {"name": "lora", "target_modules": "all-linear", "modules_to_save": ["lm_head"], "layers_to_transform": [0, 1]},
    {"name": "lora", "target_modules": r".*\.layers\.0\.self_attn\.(q|v)_proj"},  # a regex over full names
    {"name": "lora", "use_dora": True, "target_modules": ["embed_tokens", "q_proj"]},
    {"name": "ia3", "target_modules": ["k_proj", "down_proj"], "feedforward_modules": ["down_proj"]},
    {"name": "ia3"},
    {"name": "sft", "target_modules": ["o_proj"]},
    {"name": "sft", "method": "full", "target_modules": ["anything"]},  # full fine-tuning adds no adapters
    {"name": "adapters", "target_modules": ["mlp.down_proj"]},
    {"name": "adapters", "placement": "houlsby"},
    {"name": "prefix-tuning"},
])
def test_settings_that_match_the_model_pass(meta, options):
    strategy(options).check_model(meta)


@pytest.mark.parametrize("options, says", [
    ({"name": "lora", "target_modules": ["q_proj", "qproj", "attn"]},
     "strategies.lora.target_modules: 'qproj', 'attn' are not modules of LlamaForCausalLM"),
    ({"name": "lora", "target_modules": ["mlp"]}, "target_modules: mlp (LlamaMLP) cannot be adapted by this method"),
    ({"name": "lora", "target_modules": ["input_layernorm"]}, "input_layernorm (LlamaRMSNorm) cannot be adapted"),
    ({"name": "lora", "target_modules": "q_proj"}, "the pattern 'q_proj' matches no full module name"),
    ({"name": "lora", "target_modules": "(unclosed"}, "'(unclosed' is not a valid regular expression"),
    ({"name": "lora", "modules_to_save": ["classifier"]}, "modules_to_save: 'classifier' is not a module"),
    ({"name": "lora", "layers_to_transform": [1, 2, 5]}, "layers_to_transform: [2, 5] outside the model's layers: "
                                                         "LlamaForCausalLM has 2 (0 to 1)"),
    ({"name": "ia3", "target_modules": ["k_proj", "ffn"], "feedforward_modules": ["ffn"]},
     "strategies.ia3.target_modules: 'ffn' is not a module"),
    ({"name": "ia3", "modules_to_save": ["score"]}, "strategies.ia3.modules_to_save: 'score' is not a module"),
    ({"name": "sft", "target_modules": ["c_attn"]}, "strategies.sft.target_modules: 'c_attn' is not a module"),
    ({"name": "adapters", "target_modules": ["mlp.down_proj", "mlp.c_proj"]},
     "strategies.adapters.target_modules: 'mlp.c_proj' is not a module"),
])
def test_a_name_the_model_lacks_is_refused_with_the_valid_names(meta, options, says):
    message = refused(meta, options)
    assert says in message, message
    assert "layers_to_transform" in says or "q_proj" in message  # the names it has are listed


def test_modules_to_save_and_layers_to_transform_reach_peft(tiny_causal, small_task, recwarn):
    from tunewise.backends import load_backend
    from tunewise.strategies.finetuning._peft import create_peft_model

    backend = load_backend(tiny_causal, "causal", "cpu")
    lora = strategy({"name": "lora", "target_modules": ["q_proj"], "modules_to_save": ["lm_head"],
                     "layers_to_transform": [1]})
    model = create_peft_model(backend.fresh_model(), lambda: lora.peft_config(backend, small_task), "lora",
                              lora.options)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    saved = [n for n in trained if "modules_to_save" in n]  # lm_head, tied to the input embeddings here
    assert saved and all("lm_head" in n or "embed_tokens" in n for n in saved)
    assert {n for n in trained if n not in saved} == {
        f"base_model.model.model.layers.1.self_attn.q_proj.lora_{ab}.default.weight" for ab in "AB"}
    assert not [w for w in recwarn if "peft" in w.filename]  # the tied lm_head is tied on purpose: no warning
