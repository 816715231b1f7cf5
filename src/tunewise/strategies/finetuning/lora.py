"""lora: low-rank adapters on a causal LM (PEFT), instruction-formatted, loss on the answer only."""

from __future__ import annotations

from pydantic import Field

from tunewise.registry import register
from tunewise.strategies.base import Strategy
from tunewise.strategies.finetuning import _causal
from tunewise.strategies.finetuning._causal import CausalTrainConfig
from tunewise.strategies.finetuning._train import seed_everything, train
from tunewise.strategies.prompting._common import prompt_predictor


class LoraConfig(CausalTrainConfig):
    rank: int = Field(16, gt=0, description="LoRA rank r: capacity of each adapter.")
    alpha: int = Field(32, gt=0, description="LoRA scaling alpha (update scaled by alpha/r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or names like [q_proj, v_proj].")
    use_dora: bool = Field(False, description="DoRA: weight-decomposed low-rank adaptation.")


@register
class Lora(Strategy):
    name = "lora"
    family = "finetuning"
    needs = ("can_train",)
    summary = "LoRA adapters (PEFT) on the causal LM; answer-only loss; adapter saved in PEFT format."
    Config = LoraConfig

    def _peft_config(self):
        from peft import LoraConfig as PeftLoraConfig

        c = self.config
        return PeftLoraConfig(task_type="CAUSAL_LM", r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout,
                              target_modules=c.target_modules, use_dora=c.use_dora)

    def fit(self, backend, task, ctx):
        from peft import get_peft_model

        c = self.config
        seed_everything(ctx.seed)
        try:
            model = get_peft_model(backend.fresh_model(), self._peft_config())
        except ValueError as err:
            raise _bad_targets(c.id, err) from None
        train_rows = _causal.encode_examples(
            backend, task, _causal.training_split(task, c.max_train_examples, ctx.seed), c.max_length)
        eval_rows = _causal.encode_examples(backend, task, task.validation, c.max_length)
        train(model, train_rows, eval_rows, _causal.collator(backend), c, ctx, label=c.id)
        model.save_pretrained(ctx.artifact_dir / "adapter")
        return self._predictor(backend, task, model)

    def load(self, backend, task, ctx):
        from peft import PeftModel

        path = ctx.artifact_dir / "adapter"
        if not (path / "adapter_config.json").is_file():
            return None
        model = PeftModel.from_pretrained(backend.fresh_model(), path).eval()
        return self._predictor(backend, task, model)

    def _predictor(self, backend, task, model):
        return prompt_predictor(backend.with_model(model), task, _causal.shared_messages(task))


def _bad_targets(strategy_id: str, err: Exception):
    from tunewise.errors import UserError

    return UserError(f"strategies.{strategy_id}.target_modules: {str(err).splitlines()[0]}")
