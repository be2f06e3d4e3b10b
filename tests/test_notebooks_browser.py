"""In a real browser: JupyterLab runs every notebook, and moving a slider redraws its view.

JupyterLab is started on 127.0.0.1 (a free port, a token, no browser) over copies of
the notebooks whose parameters are shrunk for CI; headless Chromium from the system
(/usr/bin/chromium, never a downloaded one) is driven by Playwright. For each
notebook: Run All Cells, wait until every cell ran, check no error output, then move
each slider one step with the keyboard and check that the view under it changed (the
plotly figure's title, or the text of 00's token view and 01's op explorer). 04, 05
and 06 have no sliders. JupyterLab is stopped at the end.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# notebook -> smaller parameters (plain assignments replaced in the parameters cell)
SHRINK = {"00_quickstart.ipynb": {"TOKENS": 6},
          "01_dense_vs_moe.ipynb": {"scale": "tiny", "tokens": 4, "timed": 1},
          "02_the_eval_lock.ipynb": {"TOKENS": 8, "REPS": 1},
          "03_sync_points.ipynb": {"TOKENS": 8, "REPS": 1},
          "04_pipelined_moe_generator.ipynb": {"scale": "tiny", "tokens": 4},
          "05_the_report_revisited.ipynb": {"scale": "tiny", "tokens": 4},
          "06_sharded_decode.ipynb": {"tokens": 4, "reps": 3}}
SLIDERS = {"00_quickstart.ipynb", "01_dense_vs_moe.ipynb", "02_the_eval_lock.ipynb",
           "03_sync_points.ipynb"}
# every cell rendered (no windowing), so every prompt can be read; no news pop-up
SETTINGS = {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}
RUN_S = 300          # per notebook: Run All Cells until every prompt has a number

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shrunk_copy(name: str, dest: Path) -> None:
    nb = json.loads((ROOT / "notebooks" / name).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    src = "".join(cell["source"])
    for key, value in SHRINK[name].items():
        src, n = re.subn(rf"^{key} = .*$", f"{key} = {value!r}", src, flags=re.M)
        assert n == 1, f"{name}: no parameter {key}"
    cell["source"] = src.splitlines(keepends=True)
    for c in nb["cells"]:                 # start blank: a run must fill every prompt
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    (dest / name).write_text(json.dumps(nb))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base url, token) of a JupyterLab serving shrunk copies of the notebooks."""
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    for name in SHRINK:
        shrunk_copy(name, root / "notebooks")
    port, token = free_port(), secrets.token_hex(16)
    settings = root / ".lab-settings"
    for plugin, values in SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.token={token}",
         f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start within 90 s")
                time.sleep(0.5)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"     # the notebook on show


def run_all(page) -> None:
    page.locator(f"{PANEL} .jp-Notebook").wait_for(timeout=60_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)
    page.get_by_text("Run", exact=True).first.click()
    page.get_by_text("Run All Cells", exact=True).first.click()
    # done when every code cell shows an execution count (no "[*]" and no "[ ]")
    page.wait_for_function(
        """(panel) => {
            const ps = [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputPrompt')];
            return ps.length > 0 && ps.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""", arg=PANEL, timeout=RUN_S * 1000, polling=1000)


def errors(page) -> list[str]:
    texts = page.locator(f"{PANEL} .jp-OutputArea-output[data-mime-type="
                         "'application/vnd.jupyter.stderr']").all_inner_texts()
    return [t[:300] for t in texts if "Traceback" in t or re.search(r"^\w*Error\b", t, re.M)]


def view_text(widget) -> str:
    """What the slider's output shows: a plotly title (+ trace names), else its text."""
    out = widget.locator(".jupyter-widgets-output-area, .widget-output").first
    titles = out.locator(".js-plotly-plot .gtitle").all_text_contents()
    if titles:
        return " | ".join(titles + out.locator(".js-plotly-plot .legendtext").all_text_contents())
    return out.inner_text()


@pytest.mark.parametrize("name", list(SHRINK))
def test_runs_and_sliders_redraw_in_jupyterlab(lab, browser, name, tmp_path):
    base, token = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.set_default_timeout(30_000)
        # a workspace of its own, reset: only this notebook is open
        page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/notebooks/{name}"
                  f"?reset&token={token}", timeout=120_000)
        try:
            run_all(page)
        except Exception:   # keep what the page showed (MLXPROF_SHOTS: a folder to keep it in)
            shots = Path(os.environ.get("MLXPROF_SHOTS", tmp_path))
            page.screenshot(path=str(shots / f"{Path(name).stem}.png"))
            raise
        assert errors(page) == []
        boxes = page.locator(f"{PANEL} .widget-vbox:has(.widget-slider)")
        assert (boxes.count() > 0) == (name in SLIDERS)
        for i in range(boxes.count()):
            box = boxes.nth(i)
            box.scroll_into_view_if_needed()
            handles = box.locator(".noUi-handle")
            for j in range(handles.count()):
                before = view_text(box)
                assert before.strip(), "the slider's view is empty"
                handles.nth(j).focus()
                handles.nth(j).press("ArrowLeft")
                page.wait_for_function(
                    "([el, old]) => { const o = el.querySelector('.js-plotly-plot .gtitle') ||"
                    " el.querySelector('.jupyter-widgets-output-area, .widget-output');"
                    " return o && !o.textContent.includes(old.split(' | ')[0]); }",
                    arg=[box.element_handle(), before], timeout=60_000, polling=500)
                assert view_text(box) != before
        assert errors(page) == []
    finally:
        page.close()
