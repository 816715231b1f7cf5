"""End to end: `tunewise run` on tiny models, the run folder, `show`, and `--resume` after an interrupt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.runs import cell as cell_module
from tunewise.store import Store

STRATEGIES = [
    "zero-shot",
    {"name": "few-shot", "k": 4},
    {"name": "lora", "epochs": 1, "batch_size": 8, "rank": 4},
    {"name": "full-finetune", "epochs": 1},
    {"name": "head-only", "epochs": 1},
]


def _config(tmp_path: Path, data: Path, model: str, encoder: str) -> Path:
    import yaml

    cfg = {"task": {"source": str(data), "test_size": 0.25}, "model": model, "encoder": encoder,
           "strategies": STRATEGIES, "output_dir": str(tmp_path / "runs"), "seed": 1}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_run_end_to_end_and_show(tmp_path, sentiment_csv, tiny_causal, tiny_encoder):
    config = _config(tmp_path, sentiment_csv, tiny_causal, tiny_encoder)
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1].split("run folder: ")[1])
    assert (run_dir / "config.yaml").is_file()
    results = json.loads((run_dir / "results.json").read_text())
    assert {r["strategy"] for r in results if r["family"] == "baseline"} == {"majority-baseline", "random-baseline"}
    results = [r for r in results if r["family"] != "baseline"]
    assert {r["strategy"] for r in results} == {"zero-shot", "few-shot", "lora", "full-finetune", "head-only"}
    assert all(r["status"] == "done" for r in results)
    splits = json.loads((run_dir / "splits.json").read_text())
    assert len(splits["test"]) == 10 and not set(splits["test"]) & set(splits["train"])
    for r in results:
        lines = (run_dir / "predictions" / f"{r['strategy']}.jsonl").read_text().splitlines()
        assert len(lines) == 10
        acc = r["metrics"]["accuracy"]
        assert acc["low"] <= acc["value"] <= acc["high"]
        cost = r["cost"]
        assert cost["peak_rss_mb"] > 0 and cost["seconds_per_example"] > 0 and cost["prompt_tokens_per_example"] > 0
        if r["family"] == "finetuning":
            assert cost["trainable_params"] > 0 and cost["train_seconds"] > 0 and cost["train_tokens"] > 0
        else:
            assert cost["trainable_params"] == 0
    assert (run_dir / "strategies" / "lora" / "adapter" / "adapter_config.json").is_file()
    assert (run_dir / "strategies" / "full-finetune" / "model" / "config.json").is_file()
    for word in ("lora", "head-only", "accuracy", "latency (ms/example)",
                 "peak RSS (MiB)", "prompt tokens/example", "trainable params"):
        assert word in result.output
    shown = CliRunner().invoke(app, ["show", str(run_dir)])
    assert shown.exit_code == 0 and "full-finetune" in shown.output and "%" in shown.output


def test_resume_finishes_only_what_was_not_finished(tmp_path, sentiment_csv, tiny_causal, tiny_encoder,
                                                    monkeypatch):
    config = _config(tmp_path, sentiment_csv, tiny_causal, tiny_encoder)
    real_predict = cell_module._predict
    calls: list[str] = []

    def interrupted(predictor, task, cell_id, done, progress):
        calls.append(cell_id)
        if cell_id == "lora":  # Ctrl-C while the third strategy is being scored
            raise KeyboardInterrupt
        return real_predict(predictor, task, cell_id, done, progress)

    monkeypatch.setattr(cell_module, "_predict", interrupted)
    first = CliRunner().invoke(app, ["run", str(config)])
    assert first.exit_code == 130
    run_dir = next((tmp_path / "runs").iterdir())
    store = Store(run_dir / "tunewise.db")
    run_id = store.run()["id"]
    assert store.run()["status"] == "interrupted"
    assert {r["strategy"]: r["status"] for r in store.results(run_id) if r["family"] != "baseline"} == {
        "zero-shot": "done", "few-shot": "done", "lora": "interrupted"}
    done_before = {r["strategy"]: r["finished_at"] for r in store.results(run_id) if r["status"] == "done"}
    # The LoRA adapter was trained and saved before the interrupt: resume must reuse it, not retrain.
    assert (run_dir / "strategies" / "lora" / "adapter" / "adapter_config.json").is_file()
    fitted = []
    from tunewise.registry import strategies

    lora_cls = strategies()["lora"]
    real_fit = lora_cls.fit
    monkeypatch.setattr(lora_cls, "fit", lambda self, *a, **k: fitted.append(1) or real_fit(self, *a, **k))
    monkeypatch.setattr(cell_module, "_predict", real_predict)
    second = CliRunner().invoke(app, ["run", "--resume", str(run_dir)])
    assert second.exit_code == 0, second.output
    results = {r["strategy"]: r for r in store.results(run_id)}
    assert all(r["status"] == "done" for r in results.values()) and len(results) == 5 + 2  # and two baselines
    assert {s: results[s]["finished_at"] for s in done_before} == done_before  # not redone
    assert not fitted, "resume retrained LoRA although its adapter was saved"
    assert store.run()["status"] == "done"


def test_resume_rejects_other_options(tmp_path):
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path), "--limit", "3"])
    assert result.exit_code == 2
    assert "--resume" in result.output


@pytest.mark.parametrize("bad", ["lora", "full-finetune"])
def test_training_on_fake_backend_fails_before_anything_runs(tmp_path, sentiment_csv, bad, tiny_encoder):
    result = CliRunner().invoke(app, ["run", "--task", str(sentiment_csv), "--model", "fake",
                                      "--encoder", "fake", "--strategies", f"zero-shot,{bad}",
                                      "--output", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
    run_dir = next((tmp_path / "runs").iterdir())
    store = Store(run_dir / "tunewise.db")
    assert [r for r in store.results(store.run()["id"]) if r["family"] != "baseline"] == []  # no strategy started
