"""bench labels: the table, paired test and data-efficiency figures it prints, and its resume logic.

Run folders are synthetic (nothing is trained) and exported to compact records as the study commits
them; the expected numbers are worked out by hand below.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from aplkit.config import load_config
from aplkit.results.archive import read_record, write_record
from bench import labels
from tests.synthetic_runs import make_run

RANDOM = {16: 0.50, 32: 0.58, 48: 0.62}  # the same on every seed
CERTAINTY = [  # per seed
    {16: 0.50, 32: 0.68, 48: 0.58},
    {16: 0.50, 32: 0.64, 48: 0.62},
    {16: 0.50, 32: 0.66, 48: 0.60},
]


def t2_p(t: float) -> float:
    """Two-sided p of Student's t with 2 degrees of freedom (closed form: 1 - |t| / sqrt(2 + t²))."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


PLAN = ["--strategies", "random,certainty", "--set", "acquisition.budget=48"]


def _run(out, strategy, seed):
    """A finished synthetic run with exactly the config the study plans for (strategy, seed)."""
    wr = RANDOM if strategy == "random" else CERTAINTY[seed]
    cfg = load_config("imdb-cpu", ["acquisition.budget=48"], strategy=strategy, seed=seed)
    return make_run(out, strategy, seed, wr, folder=f"{strategy}/seed{seed}", cfg=cfg)


@pytest.fixture()
def bench_runs(tmp_path):
    """The committed records of a finished 2 strategies × 3 seeds study; returns the records folder."""
    out, records = tmp_path / "runs", tmp_path / "records"
    for k in range(3):
        for s in ("random", "certainty"):
            write_record(_run(out, s, k), labels.record_path(records, s, k))
    return records


def test_plan_is_seed_major_so_a_partial_benchmark_stays_balanced():
    assert labels.plan(["random", "certainty"], 2) == [("random", 0), ("certainty", 0), ("random", 1), ("certainty", 1)]


def test_report_matches_hand_computed_gain_test_and_efficiency(bench_runs, tmp_path):
    res = tmp_path / "labels.json"
    rc = labels.main(["--report-only", *PLAN, "--records", str(bench_runs), "--results", str(res), "--figures", str(tmp_path / "fig")])
    assert rc == 0
    assert (tmp_path / "fig" / "fig2_winrate.png").exists() and (tmp_path / "fig" / "table2.md").exists()
    doc = json.loads(res.read_text())
    assert doc["runs"] == 6
    sig = {(r["acquired"], r["strategy"]): r for r in doc["significance"]}

    # 32 labels: differences +0.10, +0.06, +0.08 → mean 0.08, sd 0.02, SE 0.02/√3, t = 4√3
    r = sig[(32, "certainty")]
    assert r["n"] == 3
    assert r["mean_diff"] == pytest.approx(0.08)
    assert r["se"] == pytest.approx(0.02 / math.sqrt(3))
    assert r["t_p"] == pytest.approx(t2_p(0.08 / (0.02 / math.sqrt(3))), rel=1e-6)  # 0.0202
    # 48 labels: differences -0.04, 0, -0.02 → mean -0.02, t = -√3, p = 1 - √3/√5
    r = sig[(48, "certainty")]
    assert r["mean_diff"] == pytest.approx(-0.02)
    assert r["t_p"] == pytest.approx(1 - math.sqrt(3) / math.sqrt(5), rel=1e-6)
    # 16 labels: identical on every seed, nothing to test
    assert sig[(16, "certainty")]["t_p"] is None

    # certainty's mean at 48 is 0.60; random's curve 0.50, 0.58, 0.62 reaches it halfway from 32 to 48
    eff = {r["strategy"]: r for r in doc["efficiency"]}
    assert eff["certainty"]["win_rate"] == pytest.approx(0.60)
    assert eff["certainty"]["labels_random"] == pytest.approx(40)
    assert eff["certainty"]["ratio"] == pytest.approx(40 / 48)
    assert "| 32 | 0.58 ± 0.000 | **0.66 ± 0.012** |" in doc["markdown"]


def test_a_fresh_clone_trains_only_what_is_not_recorded(bench_runs, tmp_path, monkeypatch):
    """No run folders at all (a fresh clone), one record missing: only that run trains, and its record is written."""
    labels.record_path(bench_runs, "certainty", 2).unlink()  # never committed: the session stopped before its end
    out = tmp_path / "fresh-runs"
    calls = []

    def fake_run(cfg, run_dir, progress=True):
        calls.append((cfg.strategy, cfg.seed, run_dir))
        _run(out, cfg.strategy, cfg.seed)
        return SimpleNamespace(eval_rows=[SimpleNamespace(acquired=16, win_rate=0.5)])

    monkeypatch.setattr("aplkit.loop.run_experiment", fake_run)
    res = tmp_path / "labels.json"
    argv = [*PLAN, "--out", str(out), "--records", str(bench_runs), "--results", str(res), "--figures", str(tmp_path / "fig")]
    assert labels.main(argv) == 0
    assert calls == [("certainty", 2, out / "certainty" / "seed2")]
    doc = json.loads(res.read_text())
    assert doc["config"]["name"] == "imdb-cpu" and doc["runs"] == 6
    assert read_record(labels.record_path(bench_runs, "certainty", 2))["summary"]["complete"]
    # a record made with another config is not this experiment: with another lr, everything runs again
    calls.clear()
    assert labels.main([*argv, "--set", "training.lr=1e-5"]) == 0
    assert len(calls) == 6


def test_report_keeps_to_the_planned_seeds(bench_runs, tmp_path):
    res = tmp_path / "labels.json"
    argv = ["--report-only", *PLAN, "--seeds", "2", "--records", str(bench_runs), "--results", str(res), "--figures", str(tmp_path / "f")]
    assert labels.main(argv) == 0
    doc = json.loads(res.read_text())
    assert doc["runs"] == 4
    r = next(r for r in doc["significance"] if r["acquired"] == 32)
    assert r["n"] == 2 and r["mean_diff"] == pytest.approx(0.08)  # seeds 0, 1: +0.10, +0.06
