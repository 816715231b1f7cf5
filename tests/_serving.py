"""Shared by the serving and API tests: one small run built once per test session (zero-shot, few-shot,
LoRA and head-only on the tiny models), a `tunewise serve` subprocess over it, and a scriptable stub
OpenAI server (http.server in a thread) for retries, caching and label-scoring arithmetic."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from tunewise.cli import app

STRATEGIES = ["zero-shot", {"name": "few-shot", "k": 2},
              {"name": "lora", "epochs": 1, "rank": 4, "batch_size": 8, "forgetting": False,
               "early_stopping_patience": None},
              {"name": "head-only", "epochs": 1, "early_stopping_patience": None}]
# Tiny models gain nothing from several threads, and on a busy shared CPU they lose a lot.
THREADS = ["--threads", "1"]
_RUNS: dict[tuple[str, str], Path] = {}


def tiny_run(root: Path, tiny_causal: str, tiny_encoder: str) -> Path:
    """A finished run folder on the tiny models (built on first use, then reused by every test file)."""
    from conftest import make_rows, write_csv

    key = (tiny_causal, tiny_encoder)
    if key not in _RUNS:
        data = write_csv(root / "sentiment.csv", make_rows(10))
        cfg = {"task": {"source": str(data), "test_size": 0.3, "validation_size": 0.1}, "model": tiny_causal,
               "encoder": tiny_encoder, "strategies": STRATEGIES, "output_dir": str(root / "runs"), "seed": 1}
        path = root / "exp.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        result = CliRunner().invoke(app, ["run", str(path)])
        assert result.exit_code == 0, result.output
        _RUNS[key] = Path(result.output.strip().splitlines()[-1].split("run folder: ")[1])
    return _RUNS[key]


def stored(run_dir: Path, strategy: str) -> list[dict[str, Any]]:
    lines = (run_dir / "predictions" / f"{strategy}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def write_config(path: Path, **cfg: Any) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def run_folder(output: str) -> Path:
    return Path(output.strip().splitlines()[-1].split("run folder: ")[1])


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) for a test's fake or proxy; `url` ends in /v1."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stub(LoopbackServer):
    """A fake OpenAI server: `replies` is a list of (status, body, headers, delay) served in order; after
    it runs out, `default(path, request_body)` answers. Every request is counted and kept."""

    def __init__(self, default=None):
        self.replies: list[tuple[int, dict, dict, float]] = []
        self.requests: list[tuple[str, dict]] = []
        self.default = default or (lambda path, body: chat_reply("positive"))
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                stub.requests.append((self.path, body))
                status, reply, headers, delay = stub.replies.pop(0) if stub.replies else \
                    (200, stub.default(self.path, body), {}, 0.0)
                time.sleep(delay)
                data = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    for k, v in {"content-type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client timed out and hung up
                    pass

            def log_message(self, *args):
                pass

        self.serve(Handler)


def chat_reply(text: str, top: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    logprobs = None
    if top is not None:
        logprobs = {"content": [{"token": top[0][0], "logprob": top[0][1], "bytes": None,
                                 "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top]}]}
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}}


def error_reply(status: int) -> dict[str, Any]:
    return {"error": {"message": f"stub error {status}", "type": "server_error", "param": None, "code": None}}
