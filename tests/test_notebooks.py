"""The notebooks: helpers in aplkit.notebook (hand-computed), clean committed files, papermill runs.

The experiment notebook runs a tiny-random experiment judged by a fake OpenAI-compatible server,
with a fake key in the environment: the key must reach the server and never any file.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from aplkit.notebook import project_dir, step_table
from aplkit.results import batch_stats
from aplkit.runfolder import RunFolder
from tests.synthetic_runs import make_run, write_consistency

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TINY = [
    "model.spec=tiny-random",
    "model.device=cpu",
    "acquisition.budget=8",
    "acquisition.acquire_batch=4",
    "acquisition.prompt_batch=8",
    "acquisition.max_new_tokens=6",
    "acquisition.batch_size=8",
    "evaluation.test_prompts=4",
    "evaluation.waypoints=[4,8]",
    "evaluation.lm_tokens=16",  # as tests.test_loop.TINY
    "training.epochs=1",
    "training.batch_size=4",
    "data.train_size=200",
    "data.test_size=50",
]
FAKE_KEY = "sk-test-aplkit-9f3c1e7d5b2a4c6e8d0f"


def _row(step, score, r0, r1, bt, pref):
    return {"step": step, "score": score, "reward0": r0, "reward1": r1, "bt_prob": bt, "preferred": pref}


def test_batch_stats_by_hand():
    rows = [
        _row(1, 0.9, 0.0, 1.0, 0.8, 1),  # BT says y1 (0.8), oracle y1: right; gap 1.0
        _row(1, 0.5, 0.5, -0.5, 0.3, 1),  # BT says y0, oracle y1: wrong; gap 1.0
        _row(1, 0.1, 0.2, 0.4, 0.5, 0),  # 0.5 → no prediction (θ = θ0 gives exactly this): not counted right or wrong; gap 0.2
        _row(1, 0.3, 0.0, 0.6, 0.6, None),  # tie/invalid: no label; gap 0.6
    ]
    s = batch_stats(rows)
    assert s["n"] == 4 and s["unlabelled"] == 1
    assert s["mean_score"] == pytest.approx((0.9 + 0.5 + 0.1 + 0.3) / 4)
    assert s["mean_abs_gap"] == pytest.approx((1.0 + 1.0 + 0.2 + 0.6) / 4)
    assert s["bt_correct"] == pytest.approx(1 / 2) and s["no_prediction"] == 1
    assert s["pref_y1"] == pytest.approx(2 / 3)
    empty = batch_stats([])
    assert empty["n"] == 0 and math.isnan(empty["bt_correct"]) and math.isnan(empty["mean_score"])


def test_step_table_reads_the_run_folder(tmp_path):
    rf = RunFolder(tmp_path / "run").ensure()
    for r in [_row(1, 1.0, 0.0, 2.0, 0.9, 1), _row(1, 3.0, 0.0, -1.0, 0.2, 1), _row(2, 2.0, 1.0, 1.5, 0.7, 0)]:
        rf.append("acquired.jsonl", r)
    for step, epoch, loss in [(1, 2, 0.61), (1, 1, 0.69), (2, 1, 0.66), (2, 2, 0.5)]:
        rf.append("train.jsonl", {"step": step, "epoch": epoch, "loss": loss})
    rf.append("eval.jsonl", {"step": 2, "acquired": 4, "win_rate": 0.75, "stderr": 0.2})
    rf.append("steps.jsonl", {"step": 1, "acquired": 2, "labels": 2, "seconds": 1.5})
    rf.append("steps.jsonl", {"step": 2, "acquired": 4, "labels": 1, "seconds": 2.0})
    t = step_table(rf.path)
    assert t["step"].tolist() == [1, 2] and t["labels"].tolist() == [2, 4]
    assert t["mean_score"].tolist() == pytest.approx([2.0, 2.0])
    assert t["mean_abs_gap"].tolist() == pytest.approx([1.5, 0.5])
    assert t["bt_correct"].tolist() == pytest.approx([0.5, 0.0])
    assert t["pref_y1"].tolist() == pytest.approx([1.0, 0.0])
    assert t["loss"].tolist() == ["0.690 → 0.610", "0.660 → 0.500"]  # sorted by epoch
    assert math.isnan(t["win_rate"][0]) and t["win_rate"][1] == 0.75
    assert step_table(tmp_path / "nothing").empty


def test_project_dir(tmp_path):
    (tmp_path / "notebooks").mkdir()
    assert project_dir(tmp_path / "notebooks") == tmp_path.resolve()
    assert project_dir(tmp_path) == tmp_path.resolve()
    deep = tmp_path / "proj" / "analysis" / "2026"  # a notebook anywhere below the project root
    deep.mkdir(parents=True)
    (tmp_path / "proj" / "runs").mkdir()
    assert project_dir(deep) == (tmp_path / "proj").resolve()
    (tmp_path / "proj" / "analysis" / "pyproject.toml").write_text("")  # the nearest marker wins
    assert project_dir(deep) == (tmp_path / "proj" / "analysis").resolve()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_are_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged parameters"
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert all(c.outputs == [] and c.execution_count is None for c in code), "commit notebooks without outputs"
    assert nb.metadata.kernelspec.name == "python3"


def _execute(name: str, dest: Path, cwd: Path, **params) -> nbformat.NotebookNode:
    pm.execute_notebook(
        str(ROOT / "notebooks" / name), str(dest), parameters=params, kernel_name="python3", cwd=str(cwd), progress_bar=False
    )
    return nbformat.read(dest, as_version=4)


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", ""))
            parts += [v for k, v in o.get("data", {}).items() if k in ("text/plain", "text/markdown", "text/html")]
    return "\n".join(parts)


class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible /chat/completions that prefers A or B by a hash of the prompt."""

    auths: list[str] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).auths.append(self.headers.get("Authorization", ""))
        choice = "AB"[sum(map(ord, body["messages"][-1]["content"])) % 2]
        msg = {"role": "assistant", "content": json.dumps({"comparison": "ok", "preferred": choice})}
        resp = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "m"),
            "choices": [{"index": 0, "message": msg, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        data = json.dumps(resp).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def judge_url():
    _Judge.auths = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


@pytest.mark.notebook
def test_experiment_notebook_under_papermill_never_writes_the_key(tmp_path, monkeypatch, judge_url):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    run = tmp_path / "run"
    llm = ["oracle.kind=llm", f"oracle.base_url={judge_url}", "oracle.logprobs=false", "oracle.template=sentiment", "oracle.concurrency=2"]
    nb = _execute(
        "apl_experiment.ipynb",
        tmp_path / "executed.ipynb",
        tmp_path,
        config="imdb-cpu",
        strategy="certainty",
        seed=1,
        out=str(run),
        overrides=TINY + llm,
        progress=True,
    )
    text = _text(nb)
    assert f"kernel: {sys.executable}" in text  # the python3 kernel is this interpreter (the venv)
    assert RunFolder(run).complete
    assert len(RunFolder(run).rows("acquired.jsonl")) == 8 and len(RunFolder(run).rows("eval.jsonl")) == 2
    assert "bt_correct" in text and "complete: 8 labels" in text  # the step table and the summary line
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))  # the progress figure
    # the key went to the judge with every request the ledger counted (8 training + 2×4 eval pairs, less cache hits) ...
    calls = RunFolder(run).read_json("summary.json")["oracle"]["calls"]
    assert 8 <= calls <= 16 and len(_Judge.auths) == calls and set(_Judge.auths) == {f"Bearer {FAKE_KEY}"}
    # ... and into no file: every file of the run folder and the executed notebook, bytes included
    files = [p for p in run.rglob("*") if p.is_file()] + [tmp_path / "executed.ipynb"]
    assert len(files) > 8
    leaked = [str(p) for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert leaked == []


def _synthetic(root: Path, full: bool = True) -> None:
    acq = [(1, 0.8, 1), (1, 0.3, 1), (1, 0.6, None)] if full else ()
    losses = {1: [0.69, 0.6], 2: [0.68, 0.5]} if full else None
    kl = {16: {"kl": 0.2}, 32: {"kl": 0.4}} if full else None  # two budgets with a KL: a frontier figure
    for seed, (r, c) in enumerate([(0.5, 0.6), (0.6, 0.8)]):
        make_run(root, "random", seed, {16: r, 32: r + 0.05}, acquired=acq, losses=losses, epochs=2, metrics=kl)
        make_run(root, "certainty", seed, {16: c, 32: c + 0.05}, acquired=acq, losses=losses, epochs=2, metrics=kl)
    if full:
        make_run(root, "certainty", 0, {16: 0.55, 32: 0.6}, mode="online", epochs=2)
        write_consistency(root, [{"oracle": "gpt-4", "temperature": 0.05, "agreement": 0.9, "ci_low": 0.85, "ci_high": 0.95, "n": 100}])


@pytest.mark.notebook
def test_analysis_notebooks_write_every_figure(tmp_path):
    runs, figs = tmp_path / "runs", tmp_path / "figures"
    _synthetic(runs)
    nb2 = _execute("fig2_table2.ipynb", tmp_path / "f2.ipynb", tmp_path, runs_dir=str(runs), figures_dir=str(figs))
    # Table 2 cell, random at 16: seeds 0.5 and 0.6 → mean 0.55, SE = std([.5, .6], ddof=1)/√2 = 0.05
    t2 = _text(nb2)
    assert "0.55 ± 0.050" in t2 and "0.70 ± 0.100" in t2 and "Significance vs random" in t2 and "Data efficiency" in t2
    _execute("fig3_bt_histograms.ipynb", tmp_path / "f3.ipynb", tmp_path, runs_dir=str(runs), figures_dir=str(figs))
    nb156 = _execute("fig1_5_6_oracle_online_epochs.ipynb", tmp_path / "f156.ipynb", tmp_path, runs_dir=str(runs), figures_dir=str(figs))
    assert "no data" not in _text(nb156)
    for stem in ("fig1_consistency", "fig2_winrate", "fig3_bt_hist", "fig5_online_vs_reset", "fig6_epochs", "frontier"):
        for ext in ("png", "pdf"):
            assert (figs / f"{stem}.{ext}").stat().st_size > 1000, f"{stem}.{ext}"


@pytest.mark.notebook
def test_figure_notebook_without_data_says_so(tmp_path):
    runs, figs = tmp_path / "runs", tmp_path / "figures"
    _synthetic(runs, full=False)  # eval rows only: no consistency.json, no online runs, no train.jsonl
    nb = _execute("fig1_5_6_oracle_online_epochs.ipynb", tmp_path / "f156.ipynb", tmp_path, runs_dir=str(runs), figures_dir=str(figs))
    text = _text(nb)
    assert "no data for Fig 1" in text and "no data for Fig 5" in text and "no data for Fig 6" in text
    assert not figs.exists() or list(figs.iterdir()) == []


def _pool_runs(root: Path, judged: bool) -> None:
    """Pool-based runs (imdb-cpu-pool) of random and certainty, 3 seeds, held-out accuracy at 48 labels by hand."""
    from aplkit.checks import load_config

    held = {"random": [0.60, 0.62, 0.58], "certainty": [0.70, 0.66, 0.71]}  # differences 0.10, 0.04, 0.13
    sets = ["acquisition.budget=48", "evaluation.waypoints=[16,32,48]"] + ([] if judged else ["evaluation.oracle=null"])
    for k in range(3):
        for s, acc in held.items():
            cfg = load_config("imdb-cpu-pool", sets, strategy=s, seed=k)
            wr = {16: 0.5, 32: 0.55, 48: 0.6 + 0.01 * k + (0.02 if s == "certainty" else 0.0)} if judged else {}
            make_run(root, s, k, wr, folder=f"{s}/seed{k}", cfg=cfg, heldout={16: (0.5, 0.0), 32: (0.55, 0.1), 48: (acc[k], 0.2)})


def test_arena_reading_of_pool_runs_compares_their_held_out_accuracy(tmp_path, capsys):
    """Without a judge of the generations the arena ranks pool-based runs on their held-out accuracy (by hand: mean
    difference 0.09, t interval 0.09 ± t₀.₉₇₅,₂ · sd/√3); with one, the win-rate leads and the accuracy is beside it."""
    from aplkit.notebook import arena_comparison

    _pool_runs(tmp_path / "bare", judged=False)
    r = arena_comparison(tmp_path / "bare", tmp_path / "figs")
    said = capsys.readouterr().out
    half = 4.302653 * math.sqrt(0.0042 / 2) / math.sqrt(3)
    row = r["comparison"].set_index("acquired").loc[48]
    assert (
        row["metric"] == "heldout_accuracy"
        and row["mean_diff"] == pytest.approx(0.09)
        and row["t_high"] == pytest.approx(0.09 + half, abs=1e-6)
    )
    assert r["ranking"]["metric"].tolist() == ["heldout_accuracy"] and "ranked in held-out accuracy, one Holm family" in said
    assert "efficiency" not in r and "kl_matched" not in r and "name evaluation.oracle to measure it" in said
    _pool_runs(tmp_path / "judged", judged=True)
    r = arena_comparison(tmp_path / "judged", tmp_path / "figs2")
    assert set(r["comparison"]["metric"]) == {"win_rate"} and r["comparison"].set_index("acquired").loc[48, "mean_diff"] == pytest.approx(
        0.02
    )
    assert r["heldout"].set_index("acquired").loc[48, "mean_diff"] == pytest.approx(0.09) and "efficiency" in r
    assert "the pool setting's own metric" in capsys.readouterr().out


@pytest.mark.notebook
def test_arena_notebook_runs_the_strategies_and_ranks_them(tmp_path):
    runs, figs = tmp_path / "runs", tmp_path / "figures"
    strategies = ["random", "low-certainty", "d-optimal"]
    nb = _execute(
        "arena.ipynb",
        tmp_path / "arena.ipynb",
        tmp_path,
        config="imdb-cpu",
        strategies=strategies,
        seeds=[0, 1],
        overrides=TINY,
        runs_dir=str(runs),
        figures_dir=str(figs),
    )
    text = _text(nb)
    assert "6 runs finished" in text
    for s in strategies:
        for k in (0, 1):
            assert RunFolder(runs / s / f"seed{k}").complete and len(RunFolder(runs / s / f"seed{k}").rows("eval.jsonl")) == 2
    assert "Each strategy against random" in text and "Acquisition cost per step" in text and "Labels random needs" in text
    assert "Win-rate at matched KL" in text
    for stem in ("ranking", "fig2_winrate", "frontier"):
        assert (figs / f"{stem}.png").stat().st_size > 1000
    # the returned ranking: both challengers, at the final size (8 labels), each paired on 2 seeds
    assert "low-certainty" in text and "d-optimal" in text


@pytest.mark.notebook
def test_arena_notebook_runs_pool_based_on_a_preference_file(tmp_path):
    """The second way to run the arena: a preference data set's stored pairs, labelled by their stored preference, no
    judge of the generations: the strategies are compared on their held-out accuracy."""
    from tests.test_pool import POOL

    runs, figs = tmp_path / "runs", tmp_path / "figures"
    nb = _execute(
        "arena.ipynb", tmp_path / "arena.ipynb", tmp_path, config="imdb-cpu", strategies=["random", "certainty"], seeds=[0, 1],
        overrides=POOL, runs_dir=str(runs), figures_dir=str(figs),
    )  # fmt: skip
    text = _text(nb)
    assert "4 runs finished" in text and "no data for Fig 2" in text
    assert "ranked in held-out accuracy, one Holm family" in text and "Pref certainty" in text
    assert (figs / "ranking.png").stat().st_size > 1000
    for s in ("random", "certainty"):
        assert len(RunFolder(runs / s / "seed1").rows("heldout.jsonl")) == 2  # waypoints 4 and 12


@pytest.mark.notebook
def test_phf_notebook_under_papermill(tmp_path):
    from tests.test_phf import TINY as PHF_TINY

    run = tmp_path / "run"
    nb = _execute(
        "phf_experiment.ipynb",
        tmp_path / "executed.ipynb",
        tmp_path,
        objective="conditional",
        seed=2,
        out=str(run),
        overrides=PHF_TINY,
        progress=False,
    )
    text = _text(nb)
    assert f"kernel: {sys.executable}" in text and "conditional, seed 2" in text and "complete:" in text
    assert RunFolder(run).complete
    n = RunFolder(run).read_json("summary.json")["steps"]
    assert [r["step"] for r in RunFolder(run).rows("phf_eval.jsonl")] == [0, (n + 1) // 2, n]
    assert "prompted_misalignment" in text  # the measurements table


@pytest.mark.notebook
def test_phf_tradeoff_notebook_reads_the_committed_rows(tmp_path):
    """The analysis notebook draws PHF's trade-off from bench/results/phf alone; its vs-MLE table is the report's.

    That grid's seeds ran under several code versions, so it reads only pooled, each stratum shown first."""
    from aplkit.results.phf import load_phf, vs_mle

    rows, figs = ROOT / "bench" / "results" / "phf", tmp_path / "figures"
    kw = {"runs_dir": str(rows), "figures_dir": str(figs)}
    with pytest.raises(pm.PapermillExecutionError, match="StrataError"):
        _execute("phf_tradeoff.ipynb", tmp_path / "refused.ipynb", tmp_path, **kw)
    nb = _execute("phf_tradeoff.ipynb", tmp_path / "phf.ipynb", tmp_path, pool_strata=True, **kw)
    text = _text(nb)
    assert "Each objective − MLE, paired by seed" in text and "Holm-adjusted interval" in text
    assert text.index("Each stratum's misalignment − MLE") < text.index("Each objective − MLE, paired by seed")
    v = vs_mle(load_phf(rows)).set_index(["objective", "metric"])
    lo, hi = v.loc[("conditional", "lm_loss"), ["holm_lo", "holm_hi"]]
    assert f"[{lo:+.3f}, {hi:+.3f}]" in text
    assert "The paper's findings, each read by its rule" in text and "| … at little LM-loss cost |" in text
    for ext in ("png", "pdf"):
        assert (figs / f"phf_tradeoff.{ext}").stat().st_size > 1000
