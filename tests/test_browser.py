"""The human-labelling panel in a real JupyterLab, driven by headless Chromium (Playwright on the system browser).

JupyterLab is started from this environment on a free port with a token; the notebooks live
in a temp folder below the project root (the kernel starts there, as a user's would). Skipped
when Debian's ``chromium`` or the ``playwright`` package is missing, unless
APLKIT_REQUIRE_BROWSER=1 (then it fails). APLKIT_SCREENSHOTS=DIR writes the docs'
screenshots there (``make screenshots``); by default they go to the temp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from aplkit.oracles.human import AwaitingHumanLabels, HumanOracle, read_queue
from aplkit.oracles.ledger import Ledger
from aplkit.records import Comparison
from aplkit.runfolder import RunFolder
from tests.processes import stop
from tests.test_loop import TINY

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("APLKIT_REQUIRE_BROWSER") == "1"
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

_missing = (
    ""
    if CHROMIUM and sync_playwright
    else ("the chromium package (apt-get install chromium)" if not CHROMIUM else "playwright (pip install -e '.[browser]')")
)
if _missing and REQUIRED:
    raise RuntimeError(f"APLKIT_REQUIRE_BROWSER=1 but {_missing} is missing")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(bool(_missing), reason=f"needs {_missing}")]

TIMEOUT_MS = 120_000  # a kernel importing torch on 2 busy cores
if not _missing:
    expect.set_options(timeout=TIMEOUT_MS)
PANEL = ".aplkit-label-panel"


def _notebook(path: Path, *cells: str) -> None:
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c} for c in cells],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base url, token, project root): JupyterLab serving a temp project folder, with its own config and settings."""
    root = tmp_path_factory.mktemp("project")
    (root / "runs").mkdir()
    home = root.parent / (root.name + "-jupyter")
    port, token = _free_port(), "aplkit-test-token"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: Run All through JupyterLab's own command
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = open(home.with_suffix(".log"), "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited: {home.with_suffix('.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield base, token, root
    finally:
        stop(proc, 20)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _open(browser, lab, notebook: str):
    base, token, _ = lab
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    # a workspace of its own, so JupyterLab does not reopen the notebooks of earlier pages beside it
    page.goto(f"{base}/lab/workspaces/{Path(notebook).stem}/tree/{notebook}?reset&token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    _wait_for_kernel(page)
    return page


def _wait_for_kernel(page) -> None:
    """Until the notebook on show has a connected, idle kernel: Run All before that runs nothing."""
    page.wait_for_function(
        "() => { const k = window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel;"
        " return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }"
    )


def _run_all(page) -> float:
    """Run All through JupyterLab's command, as the menu does; returns when it was sent (perf_counter)."""
    t0 = time.perf_counter()
    # not awaited: the command's promise settles only when every cell has finished (never, while one waits for labels)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    return t0


def _screenshot(locator, name: str, tmp_dir: Path) -> Path:
    out = Path(os.environ.get("APLKIT_SCREENSHOTS") or tmp_dir) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(out))
    assert out.stat().st_size <= 150_000, f"{out} is {out.stat().st_size} bytes"
    return out


def _human_run(root: Path, name: str, extra: list[str]):
    """A tiny run with oracle.kind=human, stopped at its first questions (as `aplkit run` would be)."""
    from aplkit.checks import load_config
    from aplkit.loop import run_experiment

    cfg = load_config("imdb-cpu", [*TINY, "oracle.kind=human", *extra], strategy="random")
    run = root / "runs" / name
    with pytest.raises(AwaitingHumanLabels):
        run_experiment(cfg, run, progress=False)
    return cfg, run


def _labelled(page, n: int) -> None:
    expect(page.locator(PANEL).last).to_contain_text(f"{n} labelled here")


def test_label_panel_in_jupyterlab(lab, browser, tmp_path):
    """Buttons, a key and Skip write exactly the answers given; b/a never reach JupyterLab; the resumed loop trains on them."""
    _, _, root = lab
    cfg, run = _human_run(root, "h", ["evaluation.waypoints=[12]"])  # step 1 ends without an evaluation
    queue = read_queue(run / "human_queue.jsonl")
    assert len(queue) == 4
    # a long pair in a second run folder: the buttons must not move down with the text
    long_a = "The film opens with a slow, patient shot of the harbour at dawn. " * 6
    long_b = "I wanted to like it. The cast is strong, but the script <i>wanders</i> & never lands. " * 5
    demo = root / "runs" / "demo"
    with pytest.raises(AwaitingHumanLabels):
        list(HumanOracle("human", demo / "human_queue.jsonl").judge_iter([Comparison("This movie was", long_a, long_b)]))
    # the notebook sits below the project root: the kernel starts in analysis/, the run path is the project's
    _notebook(root / "analysis" / "label.ipynb", 'from aplkit.oracles.human import LabelPanel\n\nLabelPanel("runs/h")')
    _notebook(root / "analysis" / "long.ipynb", 'from aplkit.oracles.human import LabelPanel\n\nLabelPanel("runs/demo")')

    page = _open(browser, lab, "analysis/long.ipynb")
    _run_all(page)
    long_panel = page.locator(PANEL)
    expect(long_panel).to_contain_text("Item 1 of 1")
    expect(long_panel).to_contain_text("<i>wanders</i> &")  # HTML in a text is shown, not interpreted
    box, button = long_panel.bounding_box(), page.locator(f"{PANEL} button", has_text="Skip").bounding_box()
    long_offset = button["y"] - box["y"]
    _screenshot(long_panel, "label_panel.png", tmp_path)
    page.close()

    page = _open(browser, lab, "analysis/label.ipynb")
    cells = page.locator(".jp-Notebook .jp-Cell").count()
    t0 = _run_all(page)
    panel = page.locator(PANEL)
    expect(panel).to_contain_text("Item 1 of 4 left")
    render_s = time.perf_counter() - t0
    offset = page.locator(f"{PANEL} button", has_text="Skip").bounding_box()["y"] - panel.bounding_box()["y"]
    assert abs(offset - long_offset) < 2 and offset < 600, (offset, long_offset)  # fixed-height boxes: the buttons stay put
    a_box, b_box = (page.locator(f"{PANEL} .widget-html", has_text=t).first.bounding_box() for t in ("A:", "B:"))
    assert abs(a_box["y"] - b_box["y"]) < 2 and b_box["x"] > a_box["x"] + a_box["width"] - 1  # side by side

    def click(text: str) -> None:
        page.locator(f"{PANEL} button", has_text=text).click()

    click("A is better")  # queue[0]
    _labelled(page, 1)
    click("Tie")  # queue[1]
    _labelled(page, 2)
    click("Skip")  # queue[2] stays queued; queue[3] is shown
    expect(panel).to_contain_text("Skipped; it stays queued")
    expect(panel).to_contain_text(queue[3]["prompt"].strip())
    panel.hover()
    page.keyboard.press("b")  # queue[3], after a click: the key must reach the panel, not JupyterLab
    _labelled(page, 3)
    click("Skip")  # the last item: feedback, and it stays
    expect(panel).to_contain_text("only item left")
    _screenshot(panel, "label_panel_skip.png", tmp_path)
    page.keyboard.press("a")  # queue[2]
    _labelled(page, 4)
    expect(panel).to_contain_text("Queue empty")
    assert page.locator(".jp-Notebook .jp-Cell").count() == cells  # b and a inserted no cell

    given = {queue[0]["key"]: "A", queue[1]["key"]: "tie", queue[3]["key"]: "B", queue[2]["key"]: "A"}
    with Ledger(RunFolder(run).ledger_path()) as ledger:
        rows = ledger.rows()
    assert {r["key"]: r["choice"] for r in rows} == given  # exactly the answers given, nothing else
    assert read_queue(run / "human_queue.jsonl") == []

    # (e) a reload: the live panel is gone with the unsaved output, the labels are not; running the cell again goes on
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    _wait_for_kernel(page)
    assert page.locator(PANEL).count() == 0
    _run_all(page)
    expect(page.locator(PANEL)).to_contain_text("Queue empty: 0 labelled here")
    page.close()

    # the resumed loop trains on exactly these answers, then stops at step 2's questions
    from aplkit.loop import run_experiment

    with pytest.raises(AwaitingHumanLabels):
        run_experiment(cfg, run, progress=False)
    acquired = RunFolder(run).rows("acquired.jsonl")
    by_prompt = {r["prompt"]: given[r["key"]] for r in queue}
    assert sorted((r["prompt"], r["choice"]) for r in acquired) == sorted(by_prompt.items())
    steps = RunFolder(run).rows("steps.jsonl")
    assert steps[0]["step"] == 1 and steps[0]["labels"] == 3  # the tie is not trained on
    assert [(r["step"], r["n_pairs"]) for r in RunFolder(run).rows("train.jsonl")] == [(1, 3), (1, 3)]  # training.epochs=2
    assert not {r["key"] for r in queue} & {r["key"] for r in read_queue(run / "human_queue.jsonl")}  # none asked again
    print(f"\npanel rendered {render_s:.2f}s after Run All (kernel start included)")
