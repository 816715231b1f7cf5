"""openai-finetune: fine-tuning through an OpenAI-compatible fine-tuning jobs API, then evaluation of the
resulting model like any other strategy.

The training split is written as chat-format JSONL (the instruction as system message, the input as
user message, the target as assistant answer: the prompt the fine-tuned model is scored with) and
checked like OpenAI's data-preparation cookbook (format errors, tokens per example). Training tokens
and cost are estimated before anything is sent (price: `prices.api[MODEL].training` of the run's
config, or `training_price`); a remote job starts only after a yes at the prompt, or with `yes: true`
(or `tunewise run --yes`) in a non-interactive run; consent and prices come through the fit context.
Then the file is uploaded, the job created and polled with a progress bar; its metrics go to the run's
training curves and cost details. The job id is kept in `job.json`, so an interrupted run polls the same
job on `--resume` instead of paying again.

With an `openai:` model the job runs at that provider (OpenAI, Azure, `tunewise serve`, ...); with a
local model it runs in-process on tunewise's own job service (LoRA, as `tunewise serve` does it). With `job`,
no job is started: the model of an existing one (e.g. what the user's unchanged openai SDK code trained on
`tunewise serve`, or at OpenAI with `provider`) is scored with the same prompt as the other strategies.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

from pydantic import Field

from tunewise.errors import CapabilityError, UserError
from tunewise.foundation import write_atomic
from tunewise.prices import training_price
from tunewise.registry import register
from tunewise.strategies.base import FitContext, Strategy
from tunewise.strategies.finetuning import _causal, _chat_data
from tunewise.strategies.finetuning._ft_providers import LocalProvider, SdkProvider
from tunewise.strategies.finetuning._train import TrainConfig

TERMINAL = {"succeeded", "failed", "cancelled"}


class OpenAIFinetuneConfig(TrainConfig):
    model: str | None = Field(None, description="Model to fine-tune at the provider (default: the run's model "
                              "without the 'openai:' prefix, e.g. gpt-4o-mini-2024-07-18).")
    epochs: float = Field(3.0, gt=0, le=50, description="n_epochs of the job (rounded up: jobs train whole "
                          "epochs).")
    batch_size: int | None = Field(None, gt=0, le=256, description="batch_size of the job; empty: 'auto'.")
    learning_rate_multiplier: float | None = Field(None, gt=0, le=10, description="learning_rate_multiplier "
                                                   "of the job; empty: 'auto'.")
    learning_rate: float = Field(1e-3, gt=0, description="Local model only: the base learning rate the job's "
                                 "multiplier scales (the provider picks its own).")
    early_stopping_patience: int | None = Field(None, ge=1, description="Not used: fine-tuning jobs train "
                                                "every epoch, as providers do.")
    suffix: str = Field("tunewise", pattern=r"^[A-Za-z0-9_-]{1,40}$", description="Suffix in the fine-tuned "
                        "model's name (ft:MODEL:ORG:SUFFIX:ID).")
    validation: bool = Field(True, description="Upload the validation split as the job's validation_file "
                             "(the provider reports validation loss).")
    yes: bool = Field(False, description="Start the (paid) job without asking; needed in non-interactive runs "
                      "(or run with --yes).")
    max_cost: float | None = Field(None, ge=0, description="Refuse to start when the estimated training cost "
                                   "exceeds this many USD.")
    training_price: float | None = Field(None, ge=0, description="USD per million training tokens (default: "
                                         "prices.api[MODEL].training of the run's config).")
    max_tokens_per_example: int = Field(65_536, gt=0, description="Longest example (tokens) the provider "
                                        "trains on (at most the model's context): the data check refuses a longer "
                                        "one, naming its line.")
    poll_seconds: float = Field(10.0, ge=0.05, le=600, description="Seconds between two status polls.")
    job: str | None = Field(None, pattern=r"^ftjob-[A-Za-z0-9_-]{1,64}$", description="Score the model of this "
                            "existing job (one your own openai SDK code started, e.g. against tunewise serve) "
                            "instead of starting a new one; it is polled until it ends.")
    provider: str | None = Field(None, pattern=r"^openai:", description="An openai: model whose endpoint (and key) "
                                 "holds the job, e.g. 'openai:gpt-4o-mini-2024-07-18' for a job at OpenAI next to a "
                                 "run on a local model; default: the run's model.")


def conversations(task, examples) -> list[list[dict[str, str]]]:
    """The chat-format training data: the prompt `_causal` scores fine-tuned models with, plus the answer."""
    system = _causal.shared_messages(task)
    return [system + [{"role": "user", "content": e.input}, {"role": "assistant", "content": e.target}]
            for e in examples]


@register
class OpenAIFinetune(Strategy):
    name = "openai-finetune"
    choose_on_validation = False  # each candidate would be another (paid) provider job
    family = "finetuning"
    summary = "Fine-tuning job through an OpenAI-compatible API (or tunewise's local job service); then scored."
    Config = OpenAIFinetuneConfig

    def _provider(self, backend, ctx: FitContext):
        caps = backend.capabilities
        if caps.finetune_api:
            return SdkProvider(backend)
        if caps.can_train and caps.local_weights:
            c = self.config
            options = {k: getattr(c, k) for k in ("warmup_ratio", "weight_decay", "gradient_accumulation",
                                                  "max_length", "bf16")}
            return LocalProvider(backend, ctx.artifact_dir / "local-jobs", c.learning_rate, options)
        raise CapabilityError(f"strategy '{self.config.id}' needs an openai: model (fine-tuned at the provider) "
                              f"or a local Hugging Face model; '{backend.name}' is neither")

    def _endpoint(self, backend, ctx: FitContext):
        """The backend the job lives at: `provider` (from the run's backends) when set, else the run's."""
        return backend if self.config.provider is None else ctx.backends(self.config.provider, "causal")

    def fit(self, backend, task, ctx):
        backend = self._endpoint(backend, ctx)
        provider = self._provider(backend, ctx)
        state_file = ctx.artifact_dir / "job.json"  # the paid job's id: written atomically, never torn by a crash
        state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
        previous = (state.get("job") or {}).get("status")
        if state.get("job_id") and state.get("provider") == provider.kind and previous not in ("failed", "cancelled"):
            ctx.stats.update(state.get("estimate", {}))  # resume: poll the job already paid for
        elif self.config.job:  # a job started elsewhere (the user's own SDK code): score its model
            if not provider.remote:
                raise UserError(f"strategies.{self.config.id}.job: an existing job lives at an API; use an openai: "
                                "model (the run's, or set provider)")
            state = {"provider": provider.kind, "job_id": self.config.job, "adopted": True,
                     "base_url": provider.base_url}
            write_atomic(state_file, json.dumps(state, indent=1))
        else:
            state = self._start(provider, backend, task, ctx)
            write_atomic(state_file, json.dumps(state, indent=1))
        job = self._poll(provider, state["job_id"], ctx)
        state["job"] = job
        write_atomic(state_file, json.dumps(state, indent=1))
        if job["status"] != "succeeded":
            error = (job.get("error") or {}).get("message") or "no reason given"
            raise RuntimeError(f"fine-tuning job {job['id']} {job['status']}: {error}")
        self._record(provider, job, ctx)
        return self._predictor(backend, task, ctx, state)

    def load(self, backend, task, ctx):
        state_file = ctx.artifact_dir / "job.json"
        if not state_file.is_file():
            return None
        state = json.loads(state_file.read_text(encoding="utf-8"))
        if (state.get("job") or {}).get("status") != "succeeded":
            return None  # still running or failed: fit() resumes polling the stored job id
        return self._predictor(self._endpoint(backend, ctx), task, ctx, state)

    def _predictor(self, backend, task, ctx, state):
        from tunewise.strategies.prompting._common import prompt_predictor

        if state["provider"] == "api":
            return prompt_predictor(backend.with_model(state["job"]["fine_tuned_model"]), task,
                                    _causal.shared_messages(task))
        from tunewise.strategies.finetuning._peft import load_adapter, peft_predictor

        path = ctx.artifact_dir / "local-jobs" / "models" / state["job_id"] / "adapter"
        model = load_adapter(backend, path)
        if model is None:
            raise UserError(f"{path}: the local job's adapter is missing; delete {ctx.artifact_dir} to train again")
        return peft_predictor(backend, task, model)

    def _start(self, provider, backend, task, ctx) -> dict[str, Any]:
        c = self.config
        base = self.config.model or provider.base_model
        files = {"train": _causal.training_split(task, c.max_train_examples, ctx.seed),
                 "validation": task.validation if c.validation else []}
        checks, paths = {}, {}
        for split, examples in files.items():
            if not examples:
                continue
            paths[split] = ctx.artifact_dir / f"{split}.jsonl"
            _chat_data.write_jsonl(paths[split], conversations(task, examples))
            limit = min(c.max_tokens_per_example, backend.context_window or c.max_tokens_per_example)
            report = _chat_data.check_file(paths[split], backend.count_tokens, limit)
            if not report.ok:
                raise UserError(report.describe(str(paths[split])))
            _warn(c.id, paths[split], report.warnings)
            checks[split] = report
        epochs = math.ceil(c.epochs)
        tokens = checks["train"].billed_tokens(epochs, c.max_tokens_per_example)
        price = self._price(ctx, base)
        cost = None if price is None else tokens / 1e6 * price
        estimate = {"estimated_training_tokens": tokens, "estimated_training_cost_usd": cost,
                    "token_counter": provider.token_counter}
        ctx.stats.update(estimate)
        (ctx.artifact_dir / "data_check.json").write_text(json.dumps(
            {split: r.summary() for split, r in checks.items()} | {"estimate": estimate}, indent=1), encoding="utf-8")
        if c.max_cost is not None and cost is not None and cost > c.max_cost:
            raise UserError(f"strategies.{c.id}: estimated training cost ${cost:.2f} exceeds max_cost "
                            f"${c.max_cost:.2f}; raise max_cost or train on fewer examples (max_train_examples)")
        if provider.remote:
            self._confirm(ctx, base, tokens, cost)
        body = {"model": base, "training_file": provider.upload(paths["train"]), "suffix": c.suffix,
                "seed": ctx.seed, "hyperparameters": {
                    "n_epochs": epochs, "batch_size": c.batch_size or "auto",
                    "learning_rate_multiplier": c.learning_rate_multiplier or "auto"}}
        if "validation" in paths:
            body["validation_file"] = provider.upload(paths["validation"])
        job = provider.create(body, ctx.on_train_start)
        return {"provider": provider.kind, "job_id": job["id"], "base_model": base, "request": body,
                "base_url": provider.base_url, "estimate": estimate, "job": job}

    def _price(self, ctx, base: str) -> float | None:
        """USD per million training tokens: the option, else the run's `prices:` (handed in the context)."""
        if self.config.training_price is not None:
            return self.config.training_price
        return training_price(base, ctx.prices)

    def _confirm(self, ctx, base: str, tokens: int, cost: float | None) -> None:
        c = self.config
        priced = f"about ${cost:.2f}" if cost is not None else "cost unknown (no training price for it)"
        what = f"fine-tune {base}: ~{tokens:,} training tokens, {priced}"
        if c.yes or ctx.yes:
            return
        if not sys.stdin.isatty():
            raise UserError(f"strategies.{c.id}: will {what}; pass yes: true in its options (or run with --yes) "
                            "to start it in a non-interactive run")
        from rich.prompt import Confirm

        from tunewise.progress import console

        if ctx.progress is not None:
            ctx.progress.stop()
        try:
            ok = Confirm.ask(f"{c.id}: {what}. Start the job?", console=console, default=False)
        finally:
            if ctx.progress is not None:
                ctx.progress.start()
        if not ok:
            raise UserError(f"strategies.{c.id}: not started (answered no at the cost prompt)")

    def _poll(self, provider, job_id: str, ctx) -> dict[str, Any]:
        bar = ctx.progress.add_task(f"job {job_id}", total=None) if ctx.progress is not None else None
        while True:
            job = provider.retrieve(job_id)
            if bar is not None:
                steps = [e["data"] for e in provider.events(job_id) if isinstance(e.get("data"), dict)
                         and "step" in e["data"]]
                if steps:
                    ctx.progress.update(bar, completed=steps[0]["step"], total=steps[0].get("total_steps"),
                                        description=f"job {job_id} ({job['status']})")
            if job["status"] in TERMINAL:
                break
            time.sleep(self.config.poll_seconds)
        if bar is not None:
            ctx.progress.update(bar, visible=False)
        return job

    def _record(self, provider, job: dict[str, Any], ctx) -> None:
        """The job's metrics: training curve to the store, totals to the cost details."""
        metrics = [e["data"] for e in reversed(provider.events(job["id"], every=True))
                   if isinstance(e.get("data"), dict) and "step" in e["data"]]
        for m in metrics:
            ctx.log({"step": m["step"], **({"loss": m["train_loss"]} if "train_loss" in m else {}),
                     **({"eval_loss": m["valid_loss"]} if m.get("valid_loss") is not None else {})})
        stats = {"provider": provider.kind, "job_id": job["id"], "fine_tuned_model": job["fine_tuned_model"],
                 "base_model": job.get("model"), "hyperparameters": job.get("hyperparameters"),
                 "train_tokens": int(job.get("trained_tokens") or 0),
                 "train_steps": metrics[-1]["step"] if metrics else None,
                 "final_train_loss": metrics[-1].get("train_loss") if metrics else None}
        # tunewise's own job service also reports what a provider does not (trainable parameters, ...).
        stats.update({k: v for k, v in (job.get("tunewise") or {}).items() if v is not None})
        ctx.stats.update(stats)


def _warn(strategy_id: str, path, warnings: list) -> None:
    """Warnings of the data check (repeated examples): shown, not refused, as OpenAI's cookbook reports them."""
    if not warnings:
        return
    from rich.markup import escape

    from tunewise.progress import console

    more = f" (and {len(warnings) - 3} more)" if len(warnings) > 3 else ""
    console.print(f"[yellow]warning:[/] {strategy_id}: {escape(str(path))}: "
                  f"{escape('; '.join(map(str, warnings[:3])))}{more}", highlight=False, soft_wrap=True)
