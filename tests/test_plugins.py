"""A researcher's scorer module, imported the same way by every entry point (aplkit.plugins):
``aplkit run --import``, a sweep file's ``imports`` (and the experiment notebook it runs), ``run_arena`` and
``bench labels --import`` (tests/test_bench.py). Nothing here loads a model."""

from __future__ import annotations

import sys

import nbformat
import pytest
import yaml

from aplkit import cli
from aplkit.acquisition import SCORERS
from aplkit.config import ConfigError
from aplkit.plugins import import_modules

SCORER = """
import numpy as np

from aplkit.acquisition import Scorer, register_scorer


@register_scorer
class Shortest(Scorer):
    name = "{name}"

    def score(self, ctx, cands):
        return -np.array([len(c.y0) + len(c.y1) for c in cands], dtype=float)
"""


@pytest.fixture()
def module(scorer_module):
    def write(stem: str, name: str, text: str | None = None):
        return scorer_module(stem, name, text if text is not None else SCORER.format(name=name))

    return write


def test_a_path_or_a_dotted_name_registers_once(module, tmp_path, monkeypatch):
    p = module("plug_a", "shortest-a")
    (m,) = import_modules([str(p)])
    assert "shortest-a" in SCORERS and m.__name__ == "plug_a" and sys.modules["plug_a"] is m
    assert import_modules([str(p)]) == [m]  # the same file again: the module already imported, not run twice
    module("plug_b", "shortest-b")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [x for x in sys.path if x not in ("", str(tmp_path))])  # as the `aplkit` console script sees it
    import_modules(["plug_b"])
    assert "shortest-b" in SCORERS
    with pytest.raises(ConfigError, match=r"^imports json\.py: module name 'json' is already taken by .*; rename the file$"):
        (tmp_path / "json.py").write_text("x = 1\n")
        import_modules(["json.py"], "imports")
    with pytest.raises(ConfigError, match=r"^--import plug_c\.py: SyntaxError: "):
        module("plug_c", "never", text="def broken(:\n")
        import_modules(["plug_c.py"])
    assert "plug_c" not in sys.modules


def test_aplkit_run_takes_import_and_says_what_failed_in_one_line(module, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("aplkit.loop.run_experiment", lambda *a, **k: pytest.fail("nothing may run"))
    assert cli.main(["run", "imdb-cpu", "--strategy", "shortest-run", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aplkit: error: strategy: unknown 'shortest-run' (registered: ") and "\n" not in err
    bad = module("plug_bad", "x", text="raise ImportError('needs the reward-model extra')\n")
    assert cli.main(["run", "imdb-cpu", "--import", str(bad), "--strategy", "random"]) == 2
    assert capsys.readouterr().err.strip() == f"aplkit: error: --import {bad}: ImportError: needs the reward-model extra"
    # with the module imported, the strategy passes validation and the run is handed to the loop
    p = module("plug_run", "shortest-run")
    seen = []
    monkeypatch.setattr("aplkit.loop.run_experiment", lambda cfg, out, progress: seen.append(cfg.strategy) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["run", "imdb-cpu", "--import", str(p), "--strategy", "shortest-run", "--out", str(tmp_path / "r"), "--quiet"])
    assert seen == ["shortest-run"]


def test_sweep_imports_validate_here_and_reach_the_notebook_kernel(module, tmp_path, monkeypatch):
    from aplkit.sweep import DEFAULT_NOTEBOOK, execute, load_sweep

    monkeypatch.chdir(tmp_path)
    spec = {"config": "imdb-cpu", "strategies": ["random", "shortest-sweep"], "seeds": [0], "out": str(tmp_path / "runs")}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=r"strategies: unknown strategy 'shortest-sweep'"):
        load_sweep(path)
    path.write_text(yaml.safe_dump({**spec, "imports": ["plug_missing.py"]}))
    with pytest.raises(ConfigError, match=r"^.*s\.yaml: imports plug_missing\.py: file not found"):
        load_sweep(path)
    module("plug_sweep", "shortest-sweep")
    path.write_text(yaml.safe_dump({**spec, "imports": ["plug_sweep.py"]}))
    sw = load_sweep(path)
    assert sw.imports == [str(tmp_path / "plug_sweep.py")]  # absolute: a worker's kernel reads it from anywhere
    assert [r.strategy for r in sw.runs] == ["random", "shortest-sweep"]

    sent = {}
    monkeypatch.setattr("papermill.execute_notebook", lambda src, dest, parameters, **kw: sent.update(parameters))
    execute(sw.runs[1], sw)
    assert sent["imports"] == sw.imports and sent["strategy"] == "shortest-sweep"

    # the experiment notebook's own setup cell, with those parameters, in a fresh registry: the import comes before the config
    SCORERS.pop("shortest-sweep")
    sys.modules.pop("plug_sweep")
    cells = [c.source for c in nbformat.read(DEFAULT_NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    ns: dict = {}
    exec(cells[0], ns)
    ns.update(sent)
    exec(cells[1], ns)
    assert ns["cfg"].strategy == "shortest-sweep" and "shortest-sweep" in SCORERS


def test_run_arena_imports_before_it_checks_the_strategies(module, tmp_path, monkeypatch):
    from aplkit.sweep import run_arena

    ran = []
    monkeypatch.setattr("aplkit.loop.run_experiment", lambda cfg, folder, progress: ran.append((cfg.strategy, cfg.seed)))
    with pytest.raises(ConfigError, match="strategy: unknown 'shortest-arena'"):
        run_arena("imdb-cpu", ["random", "shortest-arena"], [0], tmp_path / "runs")
    p = module("plug_arena", "shortest-arena")
    run_arena("imdb-cpu", ["random", "shortest-arena"], [0, 1], tmp_path / "runs", imports=[str(p)])
    assert ran == [("random", 0), ("shortest-arena", 0), ("random", 1), ("shortest-arena", 1)]
