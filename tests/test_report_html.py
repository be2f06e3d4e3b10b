"""`mlxprof report`: one self-contained HTML page, checked in headless Chromium."""
from __future__ import annotations

import threading
from pathlib import Path

import mlx.core as mx
import pytest

import mlxprof
from mlxprof.cli import main

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FIGURES = ("tokens", "split", "timeline", "ops")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Two threads, ops counted, call sites on: every part of the page has data."""
    def worker():
        y = mx.ones((16, 16))
        for _ in range(3):
            mx.eval(y @ y)

    with mlxprof.Profiler(count_ops=True, meta={"command": "python demo.py"}) as prof:
        t = threading.Thread(target=worker, name="side")
        t.start()
        x = mx.ones((32,))
        for _ in prof.track(range(5)):
            x = mx.exp(x * 0.5) + 1
            mx.async_eval(x)
            x.sum().item()
        t.join(timeout=30)
    return prof.save(tmp_path_factory.mktemp("rec") / "demo.mlxprof.json.gz")


def _external_sources(page: str) -> list[str]:
    """src/href attributes of the page's tags (script bodies are not parsed as tags)."""
    from html.parser import HTMLParser

    found = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(v for k, v in attrs if k in ("src", "href") and v)

    Tags().feed(page)
    return found


def test_report_is_one_offline_page(recording, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", recording]) == 0
    page = (tmp_path / "demo.html").read_text()
    assert _external_sources(page) == []
    assert "Plotly" in page and len(page) > 1_000_000  # plotly.js inlined
    for part in ("Per-token timeline", "Time split", "Ops by primitive",
                 "Sync call sites", "Threads", "Provenance", "python demo.py"):
        assert part in page
    assert main(["report", recording]) == 0
    assert (tmp_path / "demo.1.html").exists()  # the default name never overwrites


def test_report_renders_in_chromium_without_console_errors(recording, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (CI installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    assert main(["report", recording, "-o", str(out)]) == 0
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("http*://**", lambda route: route.abort())  # offline: no fetches
            page.goto(out.as_uri(), timeout=60_000)
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot').length >= {len(FIGURES)}",
                timeout=60_000)
            drawn = {fid: page.evaluate(
                f"document.querySelectorAll('#{fid} .main-svg .trace').length")
                for fid in FIGURES}
        finally:
            browser.close()
    assert not errors, errors
    assert all(n > 0 for n in drawn.values()), drawn
