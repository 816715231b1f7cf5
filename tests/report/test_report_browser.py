"""The report as a person sees it: a real run on the tiny models, opened in headless Chromium.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in
NUL on file descriptors 3 and 4), so the test needs nothing beyond the standard library and Debian's
`chromium` (`sh tests/browser_setup.sh` installs it). Without Chromium the browser test skips with the
reason; the run, the curve and the report are still checked.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT, make_rows, write_csv
from tunewise.cli import app

ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--remote-debugging-pipe"]


class Chromium:
    """A minimal DevTools client: one browser, one page session, events collected as they arrive."""

    def __init__(self, binary: str, profile: str):
        cmd_r, self._cmd_w = os.pipe()  # we write commands; Chromium reads them on fd 3
        self._res_r, res_w = os.pipe()  # Chromium writes replies and events on fd 4

        def child_fds():  # runs in the child before exec: put the pipe ends on 3 and 4
            a, b = os.dup(cmd_r), os.dup(res_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self._log = open(Path(profile) / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     close_fds=False, preexec_fn=child_fds)  # noqa: PLW1509
        os.close(cmd_r)
        os.close(res_w)
        self._buf, self._id, self.events = b"", 0, []
        self.session: str | None = None

    def call(self, method: str, params: dict | None = None, session: bool = True, timeout: float = 30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._next(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._next(timeout)
            if e.get("method") == method:
                return e
            self.events.append(e)

    def _next(self, timeout: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._res_r], [], [], timeout)
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str, width: int = 1280, height: int = 900) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False})
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str):
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression[:60]}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, as a person would make it."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                      "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                      "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def screenshot(self, path: Path) -> None:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
            "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                details = p["exceptionDetails"]
                out.append(details.get("exception", {}).get("description") or details["text"])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"]["text"])
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", session=False, timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._cmd_w)
        os.close(self._res_r)
        self._log.close()


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, tiny_causal, tiny_encoder) -> Path:
    """`tunewise run`, `curve` and `report` through the CLI on the tiny models: prompting and fine-tuning."""
    import yaml

    root = tmp_path_factory.mktemp("report-run")
    data = write_csv(root / "sentiment.csv", make_rows())
    cfg = {"task": {"source": str(data), "test_size": 0.25}, "model": tiny_causal, "encoder": tiny_encoder,
           "strategies": ["zero-shot", {"name": "few-shot", "k": 2}, {"name": "head-only", "epochs": 2}],
           "output_dir": str(root / "runs"), "seed": 1}
    (root / "exp.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(root / "exp.yaml")])
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1].split("run folder: ")[1])
    result = runner.invoke(app, ["curve", str(run_dir), "--sizes", "6"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.mark.slow
def test_curve_and_report_of_a_real_run(real_run):
    curve = json.loads((real_run / "curve.json").read_text())
    sizes = sorted(p["train_examples"] for p in curve["points"] if p["strategy"] == "head-only")
    assert sizes[0] == 6 and sizes[-1] > 6 and len(sizes) == 2  # the curve point and the run's own full size
    assert {b["strategy"] for b in curve["baselines"] if b["family"] == "prompting"} == {"zero-shot", "few-shot"}
    assert {b["strategy"] for b in curve["baselines"] if b["family"] == "baseline"} == {"majority-baseline",
                                                                                        "random-baseline"}
    cells = _curve_cells(real_run)
    assert {c: (status, size) for c, (status, size, _) in cells.items()} == {"head-only@n=6": ("done", 6)}
    html = (real_run / "report.html").read_text(encoding="utf-8")
    assert 'id="chart-curve"' in html and (real_run / "results.csv").is_file()
    again = CliRunner().invoke(app, ["curve", str(real_run), "--sizes", "6,1000"])  # nothing to rerun:
    assert again.exit_code == 0 and _curve_cells(real_run) == cells  # 6 done, 1000 >= full size


def _curve_cells(run_dir: Path) -> dict[str, tuple[str, int, float]]:
    """The run's cells at a capped training size (one per fine-tuning strategy and size): status, size and
    when each finished (a rerun would change it)."""
    from tunewise.store import open_run

    store, run = open_run(run_dir)
    try:
        return {r["strategy"]: (r["status"], r["train_size"], r["finished_at"]) for r in store.results(run["id"])
                if r["train_size"] is not None}
    finally:
        store.close()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_report_in_headless_chromium(real_run):
    binary = _chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (run `sh tests/browser_setup.sh` as root to install it)")
    profile = tempfile.mkdtemp(prefix="tunewise-chromium-")
    browser = Chromium(binary, profile)
    try:
        browser.open((real_run / "report.html").as_uri())
        _check_page(browser)
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "report.png")
        assert browser.errors() == [], browser.errors()  # nothing failed while sorting either
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def _check_page(b: Chromium) -> None:
    assert b.errors() == [], b.errors()
    assert all(u.startswith(("file:", "data:", "about:")) for u in b.requests()), b.requests()
    headline = b.js("document.querySelector('#verdict .headline').innerText")
    assert headline.startswith(("Use ", "No strategy")), headline
    top = b.js("[document.querySelector('#verdict').getBoundingClientRect().top, "
               "document.querySelector('#leaderboard').getBoundingClientRect().top, innerHeight]")
    assert top[0] < top[1] and top[0] < top[2]  # the verdict comes first, on the first screen
    visible = ("(sel) => Array.from(document.querySelectorAll(sel)).map(e => { const r = e.getBoundingClientRect(),"
               " s = getComputedStyle(e); return r.width > 100 && r.height > 60 && s.visibility !== 'hidden' && "
               "s.display !== 'none' && e.querySelectorAll('circle, polyline').length > 0; })")
    for sel in ("#chart-pareto svg", "#chart-breakeven svg", "#chart-curve svg", ".chart-loss svg"):
        shown = b.js(f"({visible})({json.dumps(sel)})")
        assert shown and all(shown), f"{sel} not visible: {shown}"
    assert b.js("document.querySelectorAll('#leaderboard-table tbody tr').length") == 5  # and two baselines
    order = "Array.from(document.querySelectorAll('#leaderboard-table tbody tr')).map(r => r.dataset.strategy)"
    b.click("#leaderboard-table th:nth-child(1)")
    names = ["few-shot", "head-only", "majority-baseline", "random-baseline", "zero-shot"]
    assert b.js(order) == names
    assert b.js("document.querySelector('#leaderboard-table th').getAttribute('aria-sort')") == "ascending"
    b.click("#leaderboard-table th:nth-child(1)")
    assert b.js(order) == names[::-1]
    col = b.js("Array.from(document.querySelectorAll('#leaderboard-table th')).findIndex("
               "h => h.innerText.startsWith('latency')) + 1")
    b.click(f"#leaderboard-table th:nth-child({col})")
    values = b.js(f"Array.from(document.querySelectorAll('#leaderboard-table tbody td:nth-child({col})'))"
                  ".map(td => parseFloat(td.dataset.sort))")
    assert values == sorted(values)
