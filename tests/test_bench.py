"""bench labels: the table, paired test and data-efficiency figures it prints, and its resume logic.

Run folders are synthetic (nothing is trained); the expected numbers are worked out by hand below.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from aplkit.runfolder import RunFolder
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


@pytest.fixture()
def bench_runs(tmp_path):
    out = tmp_path / "runs"
    for k in range(3):
        make_run(out, "random", k, RANDOM, folder=f"random/seed{k}")
        make_run(out, "certainty", k, CERTAINTY[k], folder=f"certainty/seed{k}")
    return out


def test_plan_is_seed_major_so_a_partial_benchmark_stays_balanced():
    assert labels.plan(["random", "certainty"], 2) == [("random", 0), ("certainty", 0), ("random", 1), ("certainty", 1)]


def test_report_matches_hand_computed_gain_test_and_efficiency(bench_runs, tmp_path):
    res = tmp_path / "labels.json"
    rc = labels.main(["--report-only", "--strategies", "random,certainty", "--out", str(bench_runs), "--results", str(res)])
    assert rc == 0
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


def test_rerun_trains_only_the_unfinished_folder(bench_runs, tmp_path, monkeypatch):
    RunFolder(bench_runs / "certainty" / "seed2").write_json("summary.json", {"complete": False})  # killed before its end
    calls = []

    def fake_run(cfg, run_dir, progress=True):
        calls.append((cfg.strategy, cfg.seed, run_dir))
        return SimpleNamespace(eval_rows=[SimpleNamespace(acquired=16, win_rate=0.5)])

    monkeypatch.setattr("aplkit.loop.run_experiment", fake_run)
    res = tmp_path / "labels.json"
    assert labels.main(["--strategies", "random,certainty", "--out", str(bench_runs), "--results", str(res)]) == 0
    assert calls == [("certainty", 2, bench_runs / "certainty" / "seed2")]
    assert json.loads(res.read_text())["config"]["name"] == "imdb-cpu"


def test_report_keeps_to_the_planned_seeds(bench_runs, tmp_path):
    res = tmp_path / "labels.json"
    argv = ["--report-only", "--strategies", "random,certainty", "--seeds", "2", "--out", str(bench_runs), "--results", str(res)]
    assert labels.main(argv) == 0
    doc = json.loads(res.read_text())
    assert doc["runs"] == 4
    r = next(r for r in doc["significance"] if r["acquired"] == 32)
    assert r["n"] == 2 and r["mean_diff"] == pytest.approx(0.08)  # seeds 0, 1: +0.10, +0.06


def test_quick_compute_benchmark_writes_outside_the_tracked_tree():
    """make bench-quick is a smoke run: its JSON goes under runs/ (ignored), the committed one only on request."""
    import subprocess

    from bench import compute

    quick = compute.output_path(quick=True)
    assert quick == compute.ROOT / "runs" / "bench" / "compute-quick.json"
    assert compute.output_path(quick=False) == compute.RESULTS / "compute.json"  # the full run refreshes the committed file
    committed = "bench/results/compute-quick.json"
    assert compute.output_path(quick=True, out=committed) == compute.Path(committed)
    ignored = subprocess.run(["git", "check-ignore", "-q", str(quick)], cwd=compute.ROOT, capture_output=True, timeout=30)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, f"{quick} is not ignored by git"
