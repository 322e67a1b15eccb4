"""bench labels: the table, paired test and data-efficiency figures it prints, and its resume logic.

Run folders are synthetic (nothing is trained) and exported to compact records as the study commits
them; the expected numbers are worked out by hand below.
"""

from __future__ import annotations

import json
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from aplkit.checks import load_config
from bench import labels
from bench.archive import read_record, write_record
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


PLAN = ["--strategies", "random,certainty", "--set", "acquisition.budget=48", "--seeds", "3"]


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
    assert labels.plan(["random"], [16, 17]) == [("random", 16), ("random", 17)]


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
    labels.record_path(bench_runs, "certainty", 2).unlink()  # never committed: the study stopped before its end
    out = tmp_path / "fresh-runs"
    calls = []

    def fake_run(cfg, run_dir, progress=True, on_step=None):
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
    # a record made with another config is not this experiment: with another lr into the same records, nothing
    # runs (it would overwrite the committed study); into records of its own, everything runs again
    calls.clear()
    with pytest.raises(SystemExit, match=r"random/seed0.json: .*training.lr: 3e-05 → 1e-05"):
        labels.main([*argv, "--set", "training.lr=1e-5"])
    assert calls == []
    argv[argv.index("--records") + 1] = str(tmp_path / "lr-records")
    assert labels.main([*argv, "--set", "training.lr=1e-5"]) == 0
    assert len(calls) == 6


def test_another_objective_never_overwrites_the_dpo_study(tmp_path, monkeypatch):
    """``--set training.objective=conditional`` on the DPO study's preset: its records go beside the study's, and a
    records folder holding another experiment's complete records stops the study in one line before any run."""
    monkeypatch.chdir(tmp_path)
    dpo = tmp_path / "bench/results/labels/imdb-cpu"
    for k in range(3):
        for s in ("random", "certainty"):
            write_record(_run(tmp_path / "runs", s, k), labels.record_path(dpo, s, k))
    before = {p: p.read_text() for p in dpo.rglob("*.json")}
    calls = []

    def fake_run(cfg, run_dir, progress=True, on_step=None):
        calls.append((cfg.strategy, cfg.seed))
        make_run(run_dir.parent.parent, cfg.strategy, cfg.seed, CERTAINTY[cfg.seed], folder=f"{cfg.strategy}/seed{cfg.seed}", cfg=cfg)
        return SimpleNamespace(eval_rows=[])

    monkeypatch.setattr("aplkit.loop.run_experiment", fake_run)
    argv = [*PLAN, "--set", "training.objective=conditional", "--out", "fresh", "--figures", str(tmp_path / "fig")]
    assert labels.main(argv) == 0
    assert len(calls) == 6
    assert {p: p.read_text() for p in dpo.rglob("*.json")} == before  # the DPO study's records are untouched
    rec = read_record(labels.record_path(tmp_path / "bench/results/labels/imdb-cpu-conditional", "certainty", 2))
    assert rec["config"]["training"]["objective"] == "conditional" and rec["summary"]["complete"]

    calls.clear()  # pointed at the DPO study's records: one line naming the record and the differing key
    with pytest.raises(SystemExit) as e:
        labels.main([*argv, "--records", str(dpo)])
    msg = str(e.value)
    assert calls == [] and "\n" not in msg
    assert str(labels.record_path(dpo, "random", 0)) in msg and "training.objective: 'dpo' → 'conditional'" in msg
    assert "--set name=" in msg and "--records" in msg
    assert {p: p.read_text() for p in dpo.rglob("*.json")} == before


def test_report_says_which_code_made_the_records(tmp_path):
    """Grouped by the package's tree: commits that leave aplkit/ alone are one code; a run resumed under another
    tree counts under both and is named; a record from before code.jsonl is counted apart."""
    from aplkit.results.load import code_notes, load_code
    from aplkit.runfolder import CODE, write_jsonl

    starts = {
        0: [{"commit": "c1", "tree": "t1", "dirty": False}, {"commit": "c2", "tree": "t2", "dirty": False}],
        1: [{"commit": "c3", "tree": "t2", "dirty": False}, {"commit": "c3", "tree": "t2", "dirty": True}],  # c3 left aplkit/ as c2
        2: [{"commit": "c2", "tree": "t2", "dirty": False, "machine": {"cpu": "AMD EPYC", "isa": "avx2", "cores": 2}}],
        3: [],
    }
    for k, code in starts.items():
        folder = _run(tmp_path / "runs", "random", k)
        if code:
            write_jsonl(folder / CODE, code)
    code = load_code(tmp_path / "runs")
    run = lambda k: f"random/seed{k}"  # noqa: E731
    assert code["code"] == {"t1": [run(0)], "t2": [run(0), run(1), run(2)], "t2+dirty": [run(1)]}
    assert code["commits"] == {"t1": ["c1"], "t2": ["c2", "c3"], "t2+dirty": ["c3"]}
    assert code["resumed_across"] == [run(0), run(1)] and code["without"] == [run(3)]
    assert code_notes(code) == [
        "code t1 (at commit c1): 1 run(s)",
        "code t2 (at commit c2, c3): 3 run(s)",
        "code t2+dirty (at commit c3): 1 run(s)",
        f"resumed under different code: {run(0)}",
        f"resumed under different code: {run(1)}",
        "1 run(s) made before code.jsonl was kept: their code is not recorded",
    ]
    assert code["machines"] == {"AMD EPYC (avx2, 2 cores)": [run(2)]}  # one machine: no note
    write_jsonl(
        _run(tmp_path / "runs", "random", 4) / CODE,
        [{"commit": "c2", "tree": "t2", "machine": {"cpu": "Xeon", "isa": "avx512f", "cores": 2}}],
    )
    assert code_notes(load_code(tmp_path / "runs"))[-2:] == [
        "ran on AMD EPYC (avx2, 2 cores): 1 run(s)",
        "ran on Xeon (avx512f, 2 cores): 1 run(s)",
    ]


def test_report_keeps_to_the_planned_seeds(bench_runs, tmp_path):
    res = tmp_path / "labels.json"
    argv = ["--report-only", *PLAN, "--seeds", "2", "--records", str(bench_runs), "--results", str(res), "--figures", str(tmp_path / "f")]
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


def test_speed_section_is_opt_in_with_its_own_file(capsys):
    """`--only speed` writes bench/results/speed.json (quick: under runs/); an unknown section is refused before loading."""
    from bench import compute

    assert compute.output_path(quick=False, only={"speed"}) == compute.RESULTS / "speed.json"
    assert compute.output_path(quick=True, only={"speed"}) == compute.ROOT / "runs" / "bench" / "speed-quick.json"
    assert compute.output_path(quick=False, only={"dpo", "speed"}) == compute.RESULTS / "compute.json"
    assert "speed" in compute.SECTIONS and "speed" in compute.OPT_IN
    assert compute.main(["--only", "speedy"]) == 2
    assert "--only: unknown section(s) ['speedy']" in capsys.readouterr().err


def test_comparison_intervals_power_and_confident_errors_by_hand():
    import pandas as pd
    from scipy import stats as st

    from aplkit.results import compare

    d = np.array([0.10, 0.06, 0.08])  # certainty − random at 32 labels in the study above
    lo, hi = compare.t_interval(d)
    half = st.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)  # t(0.975, 2 df) = 4.303: 0.08 ± 0.0497
    assert (lo, hi) == pytest.approx((0.08 - half, 0.08 + half))
    assert compare.verdict(lo, hi) == "better" and compare.verdict(-0.01, 0.02) == "undecided" and compare.verdict(-0.2, -0.1) == "worse"
    blo, bhi = compare.bootstrap_interval(d)
    assert 0.06 - 1e-12 <= blo <= 0.08 <= bhi <= 0.10 + 1e-12  # a resampled mean never leaves the range of the data
    assert compare.bootstrap_interval(np.array([0.05, 0.05, 0.05])) == (0.05, 0.05)
    assert compare.probability_of_improvement(np.array([0.1, 0.0, -0.1, 0.2])) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    # a paired t-test needs 10 seeds for 80 % power when the effect equals the spread (d = 1): the textbook value
    assert compare.seeds_for_power(0.05, effect=0.05) == 10
    # an effect 50× the spread: statsmodels' root finder returns NaN (it crashed the 2-seed study report), and so does
    # its power at 2 seeds (1 df); 3 seeds have power 1.0, so the answer is 3 (at most one seed high)
    from statsmodels.tools.sm_exceptions import ConvergenceWarning  # first: importing it sets an "always" filter

    with warnings.catch_warnings():  # handled, so not shown: the report printed statsmodels' ConvergenceWarning
        warnings.simplefilter("error", ConvergenceWarning)
        assert compare.seeds_for_power(0.001, effect=0.05) == 3
    # ±0.03 at sd 0.04: n = 9 gives t(0.975, 8) · 0.04 / 3 = 2.306 · 0.01333 = 0.0307 (too wide), n = 10 gives
    # 2.262 · 0.04 / 3.162 = 0.0286: 10 seeds; the precision table reads the half-width off the t interval
    assert compare.seeds_for_halfwidth(0.04, 0.03) == 10 and math.isnan(compare.seeds_for_halfwidth(0.0))
    cmp = pd.DataFrame(
        [
            {"task": "imdb", "acquired": 32, "strategy": "certainty", "n": 3, "mean_diff": 0.08, "sd": 0.02, "t_low": 0.0, "t_high": 0.2},
            {"task": "imdb", "acquired": 64, "strategy": "certainty", "n": 3, "mean_diff": 0.08, "sd": 0.02, "t_low": lo, "t_high": hi},
            {"task": "imdb", "acquired": 64, "strategy": "entropy", "n": 9, "mean_diff": 0.01, "sd": 0.04, "t_low": -0.02, "t_high": 0.04},
        ]
    )
    prec = compare.precision(cmp, 0.03).set_index("strategy")
    assert list(prec.index) == ["certainty", "entropy"] and set(prec["acquired"]) == {64}  # the final size only
    assert prec.loc["certainty", "half_width"] == pytest.approx(half) and not prec.loc["certainty", "within"]
    assert prec.loc["certainty", "seeds_for_target"] == compare.seeds_for_halfwidth(0.02, 0.03) == 5  # 2.776 · 0.02 / √5 = 0.0248
    assert prec.loc["entropy", "half_width"] == pytest.approx(0.03) and prec.loc["entropy", "within"]
    # Fig 3 as a number: 4 pairs with a prediction, of which 2 wrong and confident (> 0.6); the 0.5 pair is left out
    acq = pd.DataFrame(
        {
            "task": "imdb",
            "strategy": "certainty",
            "step": 2,
            "bt_prob": [0.8, 0.3, 0.55, 0.9, 0.5],
            "preferred": [0, 1, 0, 1, 1],  # wrong (0.8), wrong (0.7), wrong but unsure (0.55), right, none
        }
    )
    ce = compare.confident_errors(acq)
    assert ce[["pairs", "confident_wrong"]].values.tolist() == [[4, 2]] and ce["share"].iloc[0] == pytest.approx(0.5)


def test_study_report_has_intervals_and_efficiency_bootstrap(bench_runs, tmp_path):
    res = tmp_path / "labels.json"
    assert labels.main(["--report-only", *PLAN, "--records", str(bench_runs), "--results", str(res), "--figures", str(tmp_path / "f")]) == 0
    doc = json.loads(res.read_text())
    c = {(r["acquired"], r["strategy"]): r for r in doc["comparison"]}[(32, "certainty")]
    assert c["n"] == 3 and c["mean_diff"] == pytest.approx(0.08) and c["verdict"] == "better" and c["p_improve"] == 1.0
    e = {r["strategy"]: r for r in doc["efficiency"]}["certainty"]
    assert e["ratio"] == pytest.approx(40 / 48) and e["ratio_low"] <= e["ratio"] <= e["ratio_high"]
    assert "95 % CI (bootstrap)" in doc["markdown"] and "Seeds for 80 % power" in doc["markdown"]


def test_shards_split_the_plan_without_overlap():
    planned = labels.plan(["random", "certainty"], 3)
    a, b = labels.shard(planned, "0/2"), labels.shard(planned, "1/2")
    assert a == [("random", 0), ("certainty", 1), ("random", 2)] and b == [("certainty", 0), ("random", 1), ("certainty", 2)]
    assert labels.shard(planned, "0/1") == planned
    with pytest.raises(SystemExit, match="--shard"):
        labels.shard(planned, "2/2")


# --------------------------------------------------------------------------- a user's scorer in the study (--import)

LONGEST = '''
import json

import numpy as np

from aplkit.acquisition import Scorer, register_scorer

LOG = {log!r}


@register_scorer
class Longest(Scorer):
    """The pair with the longest completion (characters) first; every candidate's score is logged for the test."""

    name = "{name}"

    def score(self, ctx, cands):
        s = np.array([max(len(c.y0), len(c.y1)) for c in cands], dtype=float)
        with open(LOG, "a") as f:
            f.write(json.dumps({{c.prompt.id: float(v) for c, v in zip(cands, s)}}) + "\\n")
        return s
'''


@pytest.fixture()
def user_module(scorer_module, tmp_path):
    """Writes a scorer module (default: LONGEST, logging to <stem>.jsonl) to tmp_path."""

    def write(stem: str, name: str = "myscorer", text: str | None = None):
        return scorer_module(stem, name, text if text is not None else LONGEST.format(log=str(tmp_path / f"{stem}.jsonl"), name=name))

    return write


def test_unknown_strategy_and_broken_import_fail_in_one_line_before_any_run(user_module, tmp_path, monkeypatch):
    def no_run(*a, **k):
        raise AssertionError("nothing may run before the strategies are checked")

    monkeypatch.setattr("aplkit.loop.run_experiment", no_run)
    with pytest.raises(SystemExit) as e:
        labels.main(["--strategies", "random,myscorer", "--out", str(tmp_path / "o")])
    msg = str(e.value)
    assert msg.startswith("--strategies: unknown strategy 'myscorer' (registered: ") and "certainty" in msg and "--import" in msg
    assert "\n" not in msg
    bad = user_module("broken_scorers", text="import numpy\nraise RuntimeError('boom: no reward head')\n")
    with pytest.raises(SystemExit) as e:
        labels.main(["--import", str(bad), "--strategies", "random"])
    assert str(e.value) == f"--import {bad}: RuntimeError: boom: no reward head"
    with pytest.raises(SystemExit, match=r"^--import no_such_scorers: ModuleNotFoundError: No module named 'no_such_scorers'$"):
        labels.main(["--import", "no_such_scorers", "--strategies", "random"])
    with pytest.raises(SystemExit, match=r"^--import missing\.py: file not found"):
        labels.main(["--import", "missing.py", "--strategies", "random"])
    # a dotted name importable from the working folder registers as well as a path does
    user_module("dotted_scorers", name="dotted")
    monkeypatch.chdir(tmp_path)
    assert labels.check_strategies("random, dotted", ["dotted_scorers"]) == ["random", "dotted"]


def test_a_user_scorer_enters_the_study_by_import(user_module, tmp_path):
    """README recipe: --import my_scorers.py --strategies random,myscorer on the tiny model, 1 seed, 1 step."""
    from aplkit.runfolder import read_jsonl
    from tests.test_loop import TINY

    path = user_module("longest_scorers")
    records, out = tmp_path / "records", tmp_path / "runs"
    tiny = [*TINY, "acquisition.budget=4", "evaluation.waypoints=[4]", "training.epochs=1"]
    argv = ["--import", str(path), "--strategies", "random,myscorer", "--config", "imdb-cpu", "--seeds", "1"]
    argv += [a for s in tiny for a in ("--set", s)]
    argv += ["--out", str(out), "--records", str(records), "--results", str(tmp_path / "s.json"), "--figures", str(tmp_path / "f")]
    assert labels.main(argv) == 0

    rec = read_record(labels.record_path(records, "myscorer", 0))
    assert rec["config"]["strategy"] == "myscorer" and rec["summary"]["complete"]
    logged = [json.loads(line) for line in (tmp_path / "longest_scorers.jsonl").read_text().splitlines()]
    assert len(logged) == 1  # step 1 ranks too: the rule is not constant at θ0
    texts = {(r["step"], r["prompt_id"]): r for r in read_jsonl(out / "myscorer" / "seed0" / "acquired.jsonl")}
    for step, scores in enumerate(logged, 1):
        got = [r for r in rec["acquired"] if r["step"] == step]
        assert len(got) == 4 and len(scores) == 8  # M of S
        assert sorted((r["score"] for r in got), reverse=True) == sorted(scores.values(), reverse=True)[:4]
        assert all(r["score"] == scores[r["prompt_id"]] for r in got)  # the recorded ranking is the rule's
        others = [v for k, v in scores.items() if k not in {r["prompt_id"] for r in got}]
        assert min(r["score"] for r in got) >= max(others)
        for r in got:  # the rule, recomputed from the texts the oracle read
            t = texts[(step, r["prompt_id"])]
            assert r["score"] == max(len(t["y0"]), len(t["y1"]))
    assert len(set(logged[0].values())) > 1  # the test could fail: the completions differ in length
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["runs"] == 2 and {r["strategy"] for r in doc["cost"]} == {"random", "myscorer"}
    # fp32 on CPU: every step says the sampler recorded the policy's log-probs (the cost table counts no policy pass)
    assert [r["sampled_logprobs"] for r in rec["steps"]] == [True]
    cost = {r["strategy"]: r for r in doc["cost"]}
    assert cost["random"]["passes"] == 8 and cost["myscorer"]["passes"] is None  # 2M at θ0; a user's scorer declares none
    assert all(r["ratio_low"] is None for r in doc["efficiency"])  # one seed: no interval


def test_default_seeds_are_the_papers_nine():
    assert labels.parse([]).seeds == list(range(9))  # seeds 0..8


def test_report_only_without_seeds_reads_every_recorded_seed(bench_runs, tmp_path):
    """The committed report is rebuilt as committed: a study read at more seeds than 9 is not cut back to 0..8."""
    for k in range(3, 11):  # seeds 3..10 of both: 11 recorded seeds in all
        for s in ("random", "certainty"):
            cfg = load_config("imdb-cpu", ["acquisition.budget=48"], strategy=s, seed=k)
            run = make_run(tmp_path / "runs", s, k, RANDOM if s == "random" else CERTAINTY[k % 3], folder=f"{s}/seed{k}", cfg=cfg)
            write_record(run, labels.record_path(bench_runs, s, k))
    res = tmp_path / "labels.json"
    plan = ["--strategies", "random,certainty", "--set", "acquisition.budget=48"]
    assert labels.main(["--report-only", *plan, "--records", str(bench_runs), "--results", str(res), "--figures", str(tmp_path / "f")]) == 0
    assert json.loads(res.read_text())["runs"] == 22  # 2 strategies × seeds 0..10
    assert labels.main(["--report-only", *plan, "--seeds", "9", "--records", str(bench_runs), "--results", str(res)]) == 0
    assert json.loads(res.read_text())["runs"] == 18  # --seeds still chooses
    assert labels.recorded_seeds(bench_runs, ["certainty"]) == list(range(11)) and labels.recorded_seeds(bench_runs, ["bald"]) == []


def test_rebuilt_report_names_the_records_not_a_temporary_folder(bench_runs, tmp_path):
    """notes.md is committed with the figures: rebuilding from the same records must give the same bytes."""
    figs = tmp_path / "f"
    argv = ["--report-only", *PLAN, "--records", str(bench_runs), "--results", str(tmp_path / "labels.json"), "--figures", str(figs)]
    assert labels.main(argv) == 0
    first = (figs / "notes.md").read_text()
    assert f"6 run(s) with eval rows under {bench_runs}." in first
    assert labels.main(argv) == 0
    assert (figs / "notes.md").read_text() == first


def _companions(soft: float, gap: float, kl: float, lm: float) -> dict[str, float]:
    """eval.jsonl's companion fields of one waypoint (θ0's LM loss 3.0)."""
    return {"soft_win_rate": soft, "soft_stderr": 0.02, "reward_gap": gap, "reward_gap_stderr": 0.05, "kl": kl, "kl_stderr": 0.01} | {
        "lm_loss": lm,
        "lm_loss_theta0": 3.0,
    }


def test_summary_has_companions_lower_variance_comparison_and_findings(tmp_path):
    """summarise on synthetic run folders (no records, no figures): every new block's numbers by hand."""
    soft, gap, kl, lm = [0.63, 0.61, 0.62], [0.3, 0.1, 0.2], [0.3, 0.5, 0.4], [3.1, 3.3, 3.2]  # certainty, per seed
    wrong = [2, 3, 2]  # certainty's confidently wrong pairs of 4 at step 2, per seed; random's: none
    configs = {}
    for k in range(3):
        for s in ("random", "certainty"):
            cfg = load_config("imdb-cpu", ["acquisition.budget=48"], strategy=s, seed=k)
            configs[(s, k)] = cfg
            c = s == "certainty"
            m = _companions(soft[k] if c else 0.60, gap[k] if c else 0.10, kl[k] if c else 0.20, lm[k] if c else 3.05)
            w = wrong[k] if c else 0
            pairs = [(1, 0.5, 1)] * 4 + [(2, 0.8, 0)] * w + [(2, 0.8, 1)] * (4 - w)
            wr = RANDOM if s == "random" else CERTAINTY[k]
            make_run(tmp_path, s, k, wr, folder=f"{s}/seed{k}", cfg=cfg, metrics={a: m for a in wr}, acquired=pairs)
    doc = labels.summarise(tmp_path, configs)
    md = doc["markdown"]
    # beside every win-rate: soft 0.62 ± 0.01/√3, gap, KL and LM loss +0.200 ± 0.1/√3 (sd 0.1 over three seeds)
    assert "| imdb | 32 | Pref certainty | 0.66 ± 0.012 | 0.62 ± 0.006 | +0.200 ± 0.058 | 0.400 ± 0.058 | 3.200 (+0.200 ± 0.058) |" in md
    assert "| imdb | 32 | Random | 0.58 ± 0.000 | 0.60 ± 0.000 | +0.100 ± 0.000 | 0.200 ± 0.000 | 3.050 (+0.050 ± 0.000) |" in md
    row = {(r["acquired"], r["strategy"]): r for r in doc["companions"]}[(48, "certainty")]
    assert row["kl"] == pytest.approx(0.4) and row["lm_loss_delta"] == pytest.approx(0.2) and row["win_rate"] == pytest.approx(0.6)
    # the lower-variance question: soft win-rate differences 0.03, 0.01, 0.02 → 0.02 ± 4.303 · 0.01/√3 = [−0.005, +0.045]
    low = {(r["metric"], r["acquired"], r["strategy"]): r for r in doc["comparison_lower_variance"]}
    s32 = low[("soft_win_rate", 32, "certainty")]
    assert s32["mean_diff"] == pytest.approx(0.02) and s32["t_low"] == pytest.approx(0.02 - 4.302653 * 0.01 / math.sqrt(3), abs=1e-6)
    assert (
        low[("reward_gap", 32, "certainty")]["mean_diff"] == pytest.approx(0.1) and low[("reward_gap", 32, "certainty")]["seeds_80"] is None
    )
    assert "| soft win-rate | imdb | 32 | Pref certainty | 3 | +0.020 | [-0.005, +0.045] |" in md
    # the findings: step 1 identical; at 48, −0.02 ± 4.303 · 0.02/√3 → upper end +0.0297 < +0.03; no entropy;
    # confidently wrong shares 0.5, 0.75, 0.5 against 0: +0.583 ± 4.303 · 0.144/√3 = [+0.225, +0.942]
    f = {r["finding"]: r for r in doc["findings"]}
    assert [f[k]["verdict"] for k in ("i", "ii", "iii", "iv")] == ["identical by construction", "not reproduced", "undecided", "reproduced"]
    assert f["ii"]["detail"][-1]["high"] == pytest.approx(-0.02 + 4.302653 * 0.02 / math.sqrt(3), abs=1e-6)
    assert "certainty 0.583, random 0.000; difference +0.583 [+0.225, +0.942], n = 3 seeds" in f["iv"]["evidence"]
    assert "## The paper's four findings" in md and "| imdb | (iv) certainty surfaces confidently wrong pairs | **reproduced** |" in md


def _git(repo, *args):
    import subprocess

    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_commit_file_commits_the_record_alone_and_waits_for_the_index_lock(tmp_path):
    """A record lands while someone has other work staged and the index is locked for a moment."""
    import threading
    import time

    from bench.provenance import commit_file

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "mine.txt").write_text("work in progress\n")
    _git(repo, "add", "mine.txt")
    rec = repo / "records" / "random" / "seed0.json"
    rec.parent.mkdir(parents=True)
    rec.write_text('{"x": 1}\n')
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    threading.Timer(1.5, lock.unlink).start()
    t0 = time.perf_counter()
    assert commit_file(rec, "study record: random seed 0", root=repo)
    assert time.perf_counter() - t0 >= 1.0  # it waited for the lock rather than failing
    assert _git(repo, "show", "--name-only", "--format=%s", "HEAD").split() == [
        "study",
        "record:",
        "random",
        "seed",
        "0",
        "records/random/seed0.json",
    ]
    assert _git(repo, "diff", "--cached", "--name-only").split() == ["mine.txt"]  # still staged, not committed
    assert commit_file(rec, "again", root=repo)  # unchanged: nothing to commit is not a failure
    assert _git(repo, "rev-list", "--count", "HEAD").strip() == "1"


def test_commit_flag_commits_each_record_as_it_lands(bench_runs, tmp_path, monkeypatch):
    labels.record_path(bench_runs, "certainty", 2).unlink()
    out = tmp_path / "fresh-runs"

    def fake_run(cfg, run_dir, progress=True, on_step=None):
        _run(out, cfg.strategy, cfg.seed)
        return SimpleNamespace(eval_rows=[SimpleNamespace(acquired=16, win_rate=0.5)])

    committed = []
    monkeypatch.setattr("aplkit.loop.run_experiment", fake_run)
    monkeypatch.setattr(labels, "commit_file", lambda path, message: committed.append((path, message)) or True)
    argv = [*PLAN, "--out", str(out), "--records", str(bench_runs), "--results", str(tmp_path / "r.json"), "--figures", str(tmp_path / "f")]
    assert labels.main(argv) == 0 and committed == []  # without --commit nothing is committed
    labels.record_path(bench_runs, "certainty", 2).unlink()
    argv[argv.index("--out") + 1] = str(tmp_path / "fresh-runs-2")
    out = tmp_path / "fresh-runs-2"
    assert labels.main([*argv, "--commit"]) == 0
    assert [p for p, _ in committed] == [labels.record_path(bench_runs, "certainty", 2)]
    assert committed[0][1].startswith("study record imdb-cpu: certainty seed 2 (16:0.500;")


def test_phf_grid_runs_only_what_is_not_recorded_and_keeps_compact_rows(tmp_path, monkeypatch, capsys):
    """bench phf: a committed run of the same config is skipped; another config's is run again and its compact
    rows (no samples or checkpoints) replace it; the report is built from the rows alone."""
    import shutil

    import aplkit.phf.experiment as E
    from bench import phf

    records = tmp_path / "records"
    shutil.copytree(phf.RECORDS / "mle" / "seed0", records / "mle" / "seed0")
    ran = []

    def fake_run(cfg, out, progress=True):  # a finished run folder: the committed rows, the new config, samples beside
        ran.append((cfg.objective, cfg.seed, cfg.phf.lm_texts))
        shutil.copytree(phf.RECORDS / "mle" / "seed0", out, dirs_exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
        (out / "phf_samples.jsonl").write_text('{"text": "a sample"}\n')
        return {"final": {"misalignment": 0.4, "lm_loss": 4.1}}

    monkeypatch.setattr(E, "run_phf", fake_run)
    argv = [
        "--objectives",
        "mle",
        "--seeds",
        "1",
        "--records",
        str(records),
        "--out",
        str(tmp_path / "runs"),
        "--figures",
        str(tmp_path / "fig"),
    ]
    assert phf.main([*argv, "--seeds", "2", "--shard", "1/2"]) == 0 and ran == []  # seed 0 recorded; seed 1 is the other shard's
    assert "no report yet: 1 of the plan's 2 runs are recorded (not yet: mle seed 1)" in capsys.readouterr().out
    assert not (tmp_path / "fig").exists()  # the shard that ends first writes no reading of part of the grid
    with pytest.raises(SystemExit, match=r"bench phf: 1 of the plan's 2 runs are recorded \(not yet: mle seed 1\)"):
        phf.main([*argv, "--seeds", "2", "--report-only"])  # read once: not before every planned run is in
    assert not (tmp_path / "fig").exists()
    assert phf.main(argv) == 0 and ran == []  # recorded: skipped
    assert (tmp_path / "fig" / "phf_vs_mle.md").exists() and (tmp_path / "fig" / "phf_tradeoff.png").exists()
    assert phf.main([*argv, "--set", "phf.lm_texts=32"]) == 0 and ran == [("mle", 0, 32)]
    kept = records / "mle" / "seed0"
    assert yaml.safe_load((kept / "config.yaml").read_text())["phf"]["lm_texts"] == 32 and not (kept / "phf_samples.jsonl").exists()
    assert phf.recorded(kept, phf_config(lm_texts=32)) and not phf.recorded(kept, phf_config(lm_texts=64))
    with pytest.raises(SystemExit, match="--objectives: expected some of mle"):
        phf.main(["--objectives", "mle,dpo"])


def test_phf_stop_by_starts_no_run_its_objectives_rows_say_would_end_after_it(tmp_path, monkeypatch, capsys):
    """bench phf keeps a run as a folder of rows: its summary's wall time and code row's machine give the estimate."""
    from datetime import datetime, timedelta

    import aplkit.phf.experiment as E
    from bench import phf

    records = tmp_path / "records"
    for objective, secs in (("mle", 60), ("filtering", 3600)):  # an earlier seed's rows: only their wall times are read
        folder = records / objective / "seed5"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"complete": True, "wall_seconds": secs}))
        (folder / "code.jsonl").write_text(json.dumps({"commit": "0" * 40, **HERE}) + "\n")
    monkeypatch.setattr(labels, "machine", lambda: HERE)
    assert labels.expected_seconds(records, "filtering") == (3600, "1 record made on this machine")
    ran = []

    def fake_run(cfg, out, progress=True):
        ran.append((cfg.objective, cfg.seed))
        raise RuntimeError("no run needed here")

    monkeypatch.setattr(E, "run_phf", fake_run)
    stop = (datetime.now() + timedelta(minutes=30)).isoformat(timespec="minutes")
    argv = ["--objectives", "mle,filtering", "--seeds", "1", "--records", str(records), "--out", str(tmp_path / "runs")]
    phf.main([*argv, "--figures", str(tmp_path / "fig"), "--stop-by", stop])
    assert ran == [("mle", 0)]
    assert "filtering seed 0: not started: ≈ 60 min (1 record made on this machine) would end at" in capsys.readouterr().out


def test_phf_seed_count_reads_the_planned_seeds_spread_and_writes_no_report(tmp_path, capsys):
    """Step 2 of the from-scratch grid's plan: n from the planned seeds' spread alone. RWR − MLE is +0.02 and −0.04 on
    seeds 0, 1 (SD 0.06/√2 = 0.0424): t₉ · 0.0424 / √10 = 0.0303 > 0.03, t₁₀ · 0.0424 / √11 = 0.0285, so n = 11. A
    recorded seed outside the plan (5, far apart) is not read; no table of differences is written."""
    import json

    from aplkit.phf.config import load_phf_config
    from bench import phf

    row = json.loads((phf.RECORDS / "mle" / "seed0" / "phf_eval.jsonl").read_text().splitlines()[-1])
    values = {("mle", 0): 0.5, ("mle", 1): 0.5, ("rwr", 0): 0.52, ("rwr", 1): 0.46, ("mle", 5): 0.5, ("rwr", 5): 0.9}
    records = tmp_path / "records"
    for (o, k), m in values.items():
        folder = records / o / f"seed{k}"
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(load_phf_config("phf-imdb-cpu", [], objective=o, seed=k).to_dict()))
        (folder / "summary.json").write_text(json.dumps({"complete": True}))
        (folder / "phf_eval.jsonl").write_text(json.dumps({**row, "objective": o, "misalignment": m}) + "\n")
    argv = ["--objectives", "mle,rwr", "--records", str(records), "--figures", str(tmp_path / "fig"), "--report-only", "--seed-count"]
    assert phf.main([*argv, "--seeds", "2"]) == 0
    assert "largest SD of objective − MLE misalignment 0.0424 → 11 seeds" in capsys.readouterr().out
    assert not (tmp_path / "fig").exists()
    with pytest.raises(SystemExit, match=r"bench phf: 4 of the plan's 6 runs are recorded \(not yet: mle seed 2, rwr seed 2\)"):
        phf.main([*argv, "--seeds", "3"])


def phf_config(lm_texts: int):
    from aplkit.phf.config import load_phf_config

    return load_phf_config("phf-imdb-cpu", [f"phf.lm_texts={lm_texts}"], objective="mle", seed=0)


@pytest.mark.slow  # a study paused and continued: three invocations, three reports
def test_pause_stops_after_a_finished_step_and_the_same_command_continues(tmp_path, monkeypatch, tiny_runs):
    """kill -USR1: the study ends after its current run's next step (no record yet, nothing lost); run again, it
    resumes that run from the step and records it, with the same rows as a run never paused."""
    import os
    import signal

    from aplkit.runfolder import RunFolder
    from tests.test_loop import TINY

    monkeypatch.setattr(labels, "PAUSE", labels.threading.Event())
    monkeypatch.setattr(labels.signal, "signal", lambda *a: signal.getsignal(signal.SIGUSR1))  # keep pytest's handler
    sets = [x for t in TINY for x in ("--set", t)]
    argv = ["--strategies", "random", "--seeds", "1", *sets, "--out", str(tmp_path / "runs"), "--records", str(tmp_path / "rec")]
    argv += ["--results", str(tmp_path / "r.json"), "--figures", str(tmp_path / "f")]
    real = labels._pause_after_step

    def ask_at_step_one(res):  # the signal arrives while step 1 runs; the handler sets PAUSE
        if res.step == 1:
            labels.PAUSE.set()
        real(res)

    monkeypatch.setattr(labels, "_pause_after_step", ask_at_step_one)
    assert labels.main(argv) == 0
    run = RunFolder(tmp_path / "runs" / "random" / "seed0")
    assert [r["step"] for r in run.rows("steps.jsonl")] == [1] and not labels.record_path(tmp_path / "rec", "random", 0).exists()
    assert labels.main(argv) == 0  # still paused: nothing starts
    assert len(run.rows("steps.jsonl")) == 1
    labels.PAUSE.clear()
    monkeypatch.setattr(labels, "_pause_after_step", real)
    assert labels.main(argv) == 0
    assert [r["step"] for r in run.rows("steps.jsonl")] == [1, 2, 3] and labels.record_path(tmp_path / "rec", "random", 0).exists()
    # a second, unpaused run of the same cell gives the same win-rates: the pause lost nothing
    again = tiny_runs("random")[1]
    assert [r["win_rate"] for r in run.rows("eval.jsonl")] == [r.win_rate for r in again.eval_rows]
    # and the handler: SIGUSR1 sets the event
    monkeypatch.undo()
    old = signal.getsignal(signal.SIGUSR1)
    try:
        labels.pause_on_signal()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert labels.PAUSE.wait(2)
    finally:
        signal.signal(signal.SIGUSR1, old)
        labels.PAUSE.clear()


def test_a_cell_another_process_is_running_is_skipped_not_run_twice(tmp_path, capsys):
    """Overlapping shards: the cell whose folder another process holds is skipped with that reason, no record written."""
    import fcntl
    import os

    from tests.test_loop import TINY

    run = tmp_path / "runs" / "random" / "seed0"
    run.mkdir(parents=True)
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)  # a lock of its own open file: as another process's
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    try:
        cfg = load_config("imdb-cpu", TINY, strategy="random", seed=0)
        rec = labels.record_path(tmp_path / "rec", "random", 0)
        land = []
        runs = labels.study_runs({("random", 0): cfg}, tmp_path / "runs")
        s = labels.study_grid(runs, {runs[0].label}, tmp_path / "runs", lambda r: rec, labels.recorded, lambda *a: land.append(a))
        line = capsys.readouterr().out
        assert "[1/1] random seed 0: skipped: " in line and "in use by another process (pid 4242)" in line
        assert s["skipped"] == ["random/seed0"] and s["done"] == s["failed"] == [] and land == []
        assert not rec.exists() and not (run / "steps.jsonl").exists()
    finally:
        os.close(fd)


def _stamp(path, seconds: float, made_on: dict | None, complete: bool = True) -> None:
    """Give a committed record a wall time and the machine that made it."""
    raw = json.loads(path.read_text())
    raw["head"]["summary"].update(wall_seconds=seconds, complete=complete)
    raw["head"]["code"] = [{**(raw["head"].get("code") or [{}])[-1], "machine": made_on}]
    path.write_text(json.dumps(raw))


HERE = {"cpu": "EPYC", "isa": "avx512f", "cores": 2}
THERE = {"cpu": "EPYC", "isa": "avx2", "cores": 2}


def test_seeds_are_a_count_a_range_or_a_list_and_bad_ones_fail_naming_the_flag(capsys):
    """The arena pairs with random's seeds 16–24 (made on this machine and code): ``--seeds 16-24``."""
    assert labels.parse_seeds("3") == [0, 1, 2] and labels.parse_seeds("16-19") == [16, 17, 18, 19]
    assert labels.parse_seeds("4,1,7") == [4, 1, 7] and labels.parse(["--seeds", "16-24"]).seeds == list(range(16, 25))
    assert labels.parse([]).seeds == list(range(9))
    from bench import phf

    assert phf.parse(["--seeds", "6-8"]).seeds == [6, 7, 8] and phf.parse([]).seeds == list(range(6))
    for parse in (labels.parse, phf.parse):
        for bad in ("0", "5-3", "a", "1,1", "-2"):
            with pytest.raises(SystemExit):
                parse(["--seeds", bad])
            assert "argument --seeds: expected" in capsys.readouterr().err


def test_stop_by_parses_the_next_clock_time_or_a_date_time_and_refuses_the_past():
    from datetime import datetime

    now = datetime(2026, 12, 2, 18, 30)
    assert labels.parse_stop_by("21:10", now) == datetime(2026, 12, 2, 21, 10)
    assert labels.parse_stop_by("2026-12-03T01:00", now) == datetime(2026, 12, 3, 1, 0)
    assert labels.parse_stop_by(None, now) is None
    assert labels.parse_stop_by("01:05", now) == datetime(2026, 12, 3, 1, 5)  # past midnight: tomorrow
    with pytest.raises(SystemExit, match=r"^--stop-by: 2026-12-02T18:00 has passed \(now 2026-12-02 18:30\)$"):
        labels.parse_stop_by("2026-12-02T18:00", now)
    for bad in ("soon", "25:00"):
        with pytest.raises(SystemExit, match=r"^--stop-by: expected HH:MM or an ISO date-time"):
            labels.parse_stop_by(bad, now)


def test_expected_seconds_prefer_records_made_on_this_machine(bench_runs):
    for k, (secs, made_on) in enumerate([(100, HERE), (300, HERE), (5000, THERE)]):
        _stamp(labels.record_path(bench_runs, "certainty", k), secs, made_on)
    assert labels.expected_seconds(bench_runs, "certainty", HERE) == (200, "median of 2 records made on this machine")
    other = {**HERE, "cores": 16}  # no record from this one: all three count
    assert labels.expected_seconds(bench_runs, "certainty", other) == (300, "median of 3 records, none made on this machine")
    _stamp(labels.record_path(bench_runs, "certainty", 0), 100, HERE, complete=False)  # an unfinished record says nothing
    assert labels.expected_seconds(bench_runs, "certainty", HERE) == (300, "1 record made on this machine")
    assert labels.expected_seconds(bench_runs, "bald", HERE) is None


def test_stop_by_starts_only_runs_expected_to_end_before_it(bench_runs, tmp_path, monkeypatch, capsys):
    """An hour-long certainty run is not started 30 min before the stop; the minute-long random run still is."""
    from datetime import datetime, timedelta

    for s, secs in (("random", 60), ("certainty", 3600)):
        for k in range(2):
            _stamp(labels.record_path(bench_runs, s, k), secs, HERE)
        labels.record_path(bench_runs, s, 2).unlink()
    monkeypatch.setattr(labels, "machine", lambda: HERE)
    out, calls = tmp_path / "fresh-runs", []

    def fake_run(cfg, run_dir, progress=True, on_step=None):
        calls.append((cfg.strategy, cfg.seed))
        _run(out, cfg.strategy, cfg.seed)
        return SimpleNamespace(eval_rows=[SimpleNamespace(acquired=16, win_rate=0.5)])

    monkeypatch.setattr("aplkit.loop.run_experiment", fake_run)
    stop = (datetime.now() + timedelta(minutes=30)).isoformat(timespec="minutes")
    argv = [*PLAN, "--out", str(out), "--records", str(bench_runs), "--results", str(tmp_path / "r.json"), "--figures", str(tmp_path / "f")]
    argv += ["--pool-strata"]  # two seeds' records name a machine, the fresh ones none: two strata
    assert labels.main([*argv, "--stop-by", stop]) == 0
    assert calls == [("random", 2)]
    said = capsys.readouterr().out
    assert "certainty seed 2: not started: ≈ 60 min (median of 2 records made on this machine)" in said
    assert not labels.record_path(bench_runs, "certainty", 2).exists()
    assert labels.main(argv) == 0 and calls == [("random", 2), ("certainty", 2)]  # without the flag it runs


def test_a_study_without_records_of_its_own_estimates_from_the_fallback_study(bench_runs, tmp_path, monkeypatch):
    """apl-objectives' first conditional run: no conditional record yet, so the DPO study's records give its length."""
    from datetime import datetime

    for k in range(3):
        _stamp(labels.record_path(bench_runs, "random", k), 3600, HERE)
    monkeypatch.setattr(labels, "machine", lambda: HERE)
    now, stop = datetime(2026, 12, 2, 20, 0), datetime(2026, 12, 2, 20, 30)
    mine = tmp_path / "imdb-cpu-conditional"
    assert labels.too_late(mine, "random", stop, now) is None  # nothing to estimate from: it starts
    late = labels.too_late(mine, "random", stop, now, fallback=bench_runs)
    assert (
        late
        == f"not started: ≈ 60 min (median of 3 records made on this machine, in {bench_runs}) would end at 21:00, after --stop-by 20:30"
    )
    assert labels.too_late(mine, "random", datetime(2026, 12, 2, 21, 0), now, fallback=bench_runs) is None  # ends just in time


def test_a_rule_with_no_record_anywhere_is_estimated_by_the_slowest_recorded_one(bench_runs):
    """The arena's first bald run has no record of its own: it is assumed as long as certainty, the slowest recorded
    rule, so it is not started 30 min before the stop (it used to start, and run past the stop)."""
    from datetime import datetime

    for s, secs in (("random", 60), ("certainty", 3600)):
        for k in range(2):
            _stamp(labels.record_path(bench_runs, s, k), secs, HERE)
        labels.record_path(bench_runs, s, 2).unlink()
    now, stop = datetime(2026, 12, 2, 20, 0), datetime(2026, 12, 2, 20, 30)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(labels, "machine", lambda: HERE)
        late = labels.too_late(bench_runs, "bald", stop, now)
        assert late == (
            "not started: ≈ 60 min (none of its own: certainty's, the slowest recorded, median of 2 records made on this machine) "
            "would end at 21:00, after --stop-by 20:30"
        )
        assert labels.too_late(bench_runs, "bald", datetime(2026, 12, 2, 21, 0), now) is None  # ends just in time
        assert labels.too_late(bench_runs, "random", stop, now) is None  # its own records: a minute


def test_a_plan_without_random_reports_against_randoms_records_of_the_same_seeds(bench_runs, tmp_path):
    """`--strategies certainty` (or the arena's new scorers alone) crashed at its report: 'no random runs to
    compare with'. Random is the reference arm: its recorded runs of the planned seeds
    and config join the report, so the paired numbers are the full study's."""
    res = tmp_path / "s.json"
    argv = ["--report-only", *PLAN, "--strategies", "certainty", "--records", str(bench_runs), "--results", str(res)]
    assert labels.main([*argv, "--figures", str(tmp_path / "f")]) == 0
    doc = json.loads(res.read_text())
    assert doc["runs"] == 6  # 3 certainty + random's 3 as the reference
    r = next(r for r in doc["significance"] if r["acquired"] == 32 and r["strategy"] == "certainty")
    assert r["n"] == 3 and r["mean_diff"] == pytest.approx(0.08)  # as with --strategies random,certainty


def test_a_plan_without_random_and_no_random_records_reports_what_it_has(bench_runs, tmp_path):
    for k in range(3):
        labels.record_path(bench_runs, "random", k).unlink()
    res = tmp_path / "s.json"
    argv = ["--report-only", *PLAN, "--strategies", "certainty", "--records", str(bench_runs), "--results", str(res)]
    assert labels.main([*argv, "--figures", str(tmp_path / "f")]) == 0
    doc = json.loads(res.read_text())
    assert doc["runs"] == 3 and doc["efficiency"] == [] and "no random runs" in doc["markdown"]


def test_report_refuses_to_pool_code_versions_or_cpus_unless_asked(bench_runs, tmp_path):
    """Seeds 0–1 made on one code and CPU, seed 2 on another: one line and no report; with --pool-strata each
    stratum's estimate comes before the pooled one; --looks adds Pocock's interval beside the plain one."""
    new = {"commit": "c2", "tree": "t2", "dirty": False, "package_hash": "t2", "cpu": "EPYC", "isa": "avx512_bf16", "cores": 2}
    for s in ("random", "certainty"):
        for k in range(3):
            path = labels.record_path(bench_runs, s, k)
            raw = json.loads(path.read_text())
            raw["head"]["code"] = [new] if k == 2 else [{"commit": "c1", "tree": "t1", "dirty": False, "machine": HERE}]
            path.write_text(json.dumps(raw))
    res, fig = tmp_path / "labels.json", tmp_path / "fig"
    argv = ["--report-only", *PLAN, "--records", str(bench_runs), "--results", str(res), "--figures", str(fig)]
    with pytest.raises(SystemExit) as e:
        labels.main(argv)
    msg = str(e.value)
    assert "\n" not in msg and "2 strata" in msg and "t1 · EPYC (avx512f)" in msg and "t2 · EPYC (avx512_bf16)" in msg
    assert not res.exists() and not fig.exists()

    assert labels.main([*argv, "--pool-strata", "--looks", "2,3"]) == 0
    doc = json.loads(res.read_text())
    assert doc["strata"] == ["t1 · EPYC (avx512f)", "t2 · EPYC (avx512_bf16)"]
    rows = {r["stratum"]: r for r in doc["by_stratum"]}  # at 48 labels: −0.04, 0.00 | −0.02
    assert rows["t1 · EPYC (avx512f)"]["n"] == 2 and rows["t1 · EPYC (avx512f)"]["mean_diff"] == pytest.approx(-0.02)
    assert rows["t2 · EPYC (avx512_bf16)"]["seeds"] == "2" and not rows["t2 · EPYC (avx512_bf16)"]["tested"]
    assert doc["strata_tests"] == []  # no two strata of 3 seeds
    md = doc["markdown"]
    assert md.index("in each stratum") < md.index("Pooled over the 2 strata") < md.index("Pocock interval")
    looks = {r["look"]: r for r in doc["looks"]["rows"]}
    assert sorted(looks) == [2, 3] and looks[3]["mean_diff"] == pytest.approx(-0.02)
    assert (fig / "strata.md").exists()


def test_compact_record_rebuilds_the_report_without_the_run_folder(tmp_path, tiny_runs):
    """A run's committed record (no texts, ids, ledger or checkpoint) materialises into rows the results layer reads as the original."""
    import os
    import shutil

    from aplkit import results as R
    from aplkit.provenance import IMPORTED
    from aplkit.runfolder import read_jsonl
    from bench.archive import materialise

    shutil.copytree(tiny_runs("certainty")[0], tmp_path / "runs" / "certainty" / "seed0")
    rec = write_record(tmp_path / "runs" / "certainty" / "seed0", tmp_path / "records" / "certainty" / "seed0.json")
    assert rec.stat().st_size < 20_000 and "y0_ids" not in rec.read_text() and '"y0"' not in rec.read_text()
    before = (R.load_runs(tmp_path / "runs"), R.load_acquired(tmp_path / "runs"), R.load_train(tmp_path / "runs"))
    shutil.rmtree(tmp_path / "runs")
    root = materialise([rec], tmp_path / "again")
    after = (R.load_runs(root), R.load_acquired(root), R.load_train(root))
    for a, b, cols in zip(
        before,
        after,
        (["acquired", "trained", "win_rate", "stderr", "n"], ["step", "bt_prob", "preferred", "score"], ["step", "epoch", "loss"]),
        strict=True,
    ):
        assert a[cols].reset_index(drop=True).equals(b[cols].reset_index(drop=True))
    assert set(after[0]["strategy"]) == {"certainty"} and list(after[0]["seed"].unique()) == [0] and after[0]["complete"].all()
    # the code that made it travels with it: one start, the code this process imported (commits may land meanwhile)
    code = read_record(rec)["code"]
    assert len(code) == 1 and {k: code[0][k] for k in IMPORTED} == IMPORTED and IMPORTED["aplkit"] == "0.1.0"
    assert code[0]["cores"] == os.cpu_count() and code[0]["cpu"] and "isa" in code[0]  # where the run's seconds were measured
    assert list(read_jsonl(root / "imdb-cpu" / "certainty" / "seed0" / "code.jsonl")) == code


def test_every_grid_goes_through_the_one_driver(tmp_path, monkeypatch):
    """run_arena, bench labels, bench phf and bench pilot describe their runs and hand them to aplkit.sweep.run_grid
    with the in-process cell: a fake run in that cell counts each run once, and a second invocation of a study
    (its records kept) reaches it with none."""
    import shutil

    import aplkit.sweep as S
    from aplkit.phf.config import PHFConfig
    from bench import phf, pilot
    from tests.test_loop import TINY

    grids, ran = [], []
    real = S.run_grid

    def spy(sweep, cell, *args, **kwargs):
        grids.append((type(cell).__name__, len(sweep.runs)))
        return real(sweep, cell, *args, **kwargs)

    def fake_run(self, run, sweep, cwd):  # a finished run folder of the run's own config, nothing trained
        ran.append(run.label)
        if isinstance(run.config, PHFConfig):
            shutil.copytree(phf.RECORDS / "mle" / "seed0", run.out, dirs_exist_ok=True)
            (run.out / "config.yaml").write_text(yaml.safe_dump(run.config.to_dict()))
            return {"final": {"misalignment": 0.4, "lm_loss": 4.1}}
        make_run(run.out, run.strategy, run.seed, {16: 0.5, 32: 0.6}, folder=".", cfg=run.config)
        return SimpleNamespace(eval_rows=[SimpleNamespace(acquired=32, win_rate=0.6, soft_win_rate=0.55)])

    monkeypatch.setattr(S, "run_grid", spy)
    monkeypatch.setattr(S.InProcessCell, "run", fake_run)
    folders = S.run_arena("imdb-cpu", ["random", "certainty"], [0, 1], tmp_path / "arena", TINY)
    assert folders == [tmp_path / "arena" / s / f"seed{k}" for k in (0, 1) for s in ("random", "certainty")]
    assert ran == ["random/seed0", "certainty/seed0", "random/seed1", "certainty/seed1"]

    ran.clear()
    sets = [x for t in TINY for x in ("--set", t)]
    argv = ["--strategies", "random,certainty", "--seeds", "2", *sets, "--out", str(tmp_path / "runs"), "--records", str(tmp_path / "rec")]
    argv += ["--results", str(tmp_path / "r.json"), "--figures", str(tmp_path / "f")]
    assert labels.main(argv) == 0 and len(ran) == 4
    assert labels.main(argv) == 0 and len(ran) == 4  # recorded: skipped before the cell

    argv = ["--objectives", "mle", "--seeds", "1", "--records", str(tmp_path / "phf"), "--out", str(tmp_path / "phf-runs")]
    assert phf.main([*argv, "--figures", str(tmp_path / "f")]) == 0 and ran[4:] == ["mle/seed0"]

    assert pilot.main(["--seeds", "1", "--out", str(tmp_path / "pilot-runs"), "--records", str(tmp_path / "pilot")]) == 0
    assert ran[5:] == ["random/seed1000", "certainty-S64/seed1000", "certainty-S256/seed1000", "certainty-S512/seed1000"]
    assert (tmp_path / "pilot" / "certainty-S256" / "seed1000.json").exists()
    assert grids == [("InProcessCell", 4), ("InProcessCell", 4), ("InProcessCell", 4), ("InProcessCell", 1), ("InProcessCell", 4)]


def test_a_failing_run_does_not_stop_the_study(bench_runs, tmp_path, monkeypatch, capsys):
    """The driver's rule: a run that raises is one failed line (the traceback in its folder's sweep.log), the runs
    after it still run and are recorded, the exit status says something failed, and no report reads the plan without
    it (a study is read once every planned run is in)."""
    for s in ("random", "certainty"):
        labels.record_path(bench_runs, s, 2).unlink()
    out = tmp_path / "fresh-runs"

    def fake_run(cfg, run_dir, progress=True, on_step=None):
        if cfg.strategy == "random":
            raise RuntimeError("the oracle went away")
        _run(out, cfg.strategy, cfg.seed)
        return SimpleNamespace(eval_rows=[SimpleNamespace(acquired=16, win_rate=0.5)])

    monkeypatch.setattr("aplkit.loop.run_experiment", fake_run)
    res = tmp_path / "r.json"
    argv = [*PLAN, "--out", str(out), "--records", str(bench_runs), "--results", str(res), "--figures", str(tmp_path / "f")]
    assert labels.main(argv) == 1
    said = capsys.readouterr().out
    assert "[5/6] random seed 2: FAILED after 0s: RuntimeError: the oracle went away" in said
    assert "[6/6] certainty seed 2: 16:0.500" in said and labels.record_path(bench_runs, "certainty", 2).exists()
    assert not labels.record_path(bench_runs, "random", 2).exists() and not res.exists()
    assert "no report yet: 5 of the plan's 6 runs are recorded (not yet: random seed 2)" in said
    assert "Traceback" in (out / "random" / "seed2" / "sweep.log").read_text()


def test_a_plan_is_read_only_once_its_runs_are_recorded_or_at_a_declared_look(bench_runs, tmp_path):
    """--report-only --seeds names a plan: with a planned run unrecorded it is refused in one line, unless --interim
    (then marked as not the plan's reading) or the seeds with every strategy recorded are a declared look."""
    labels.record_path(bench_runs, "certainty", 2).unlink()  # seeds 0, 1 complete; random seed 2 alone
    res = tmp_path / "r.json"
    argv = ["--report-only", *PLAN, "--records", str(bench_runs), "--results", str(res), "--figures", str(tmp_path / "f")]
    with pytest.raises(SystemExit, match=r"5 of the plan's 6 runs are recorded \(not yet: certainty seed 2\).*--interim"):
        labels.main(argv)
    assert not res.exists()
    assert labels.main([*argv, "--interim"]) == 0
    doc = json.loads(res.read_text())
    assert doc["markdown"].startswith("**Interim, not the plan's reading**: 5 of the plan's 6 runs") and doc["interim"]
    assert labels.main([*argv, "--looks", "2,3"]) == 0  # two complete seeds: the first declared look
    assert "interim" not in json.loads(res.read_text())
    with pytest.raises(SystemExit, match="not yet: certainty seed 2"):
        labels.main([*argv, "--looks", "3"])  # not a look: refused
    # without --seeds it rebuilds the committed report over every recorded seed, unmarked (rules read at fewer seeds)
    bare = [a for a in argv if a not in ("--seeds", "3")]
    assert labels.main(bare) == 0 and "interim" not in json.loads(res.read_text())


def _pilot_record(folder, size, curve, steps, samples, real, budget=100_000):
    import json

    folder.mkdir(parents=True)
    ev = [{"step": s, "tokens": t, "lm_loss": loss, "misalignment": 0.5} for s, t, loss in curve]
    (folder / "phf_eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ev))
    (folder / "summary.json").write_text(json.dumps({"steps": steps, "tokens": curve[-1][1]}))
    rows = [{"step": steps, "kind": "unconditional", "prompt": "", "text": f"t{i}", "p_negative": q} for i, q in enumerate(samples)]
    (folder / "samples_final.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cal = {"parameters": 3_000_000, "embedding_parameters": 1_000_000, "token_budget": budget, "tokens_per_core_second": 100.0}
    run = {"size": size, "calibration": {**cal, "real_openings_p_negative": real}, "core_seconds": 880.0, "wall_seconds": 2000.0}
    (folder / "pilot_run.json").write_text(json.dumps({**run, "loadavg_start": [4.0], "loadavg_end": [5.0], "machine": {"cpu": "x"}}))


def test_phf_pilot_reads_the_sizing_rule_by_hand(tmp_path):
    """L(θ0) 9, L(T/2) 5, L(T) 4.6: the last doubling gains 0.4 of 4.4 (0.091 < 0.1, flattened); 4.8 at T/2 would be
    0.2/4.4 = 0.045. Judge confidence |p − ½|: samples 0.1 and 0.3 → 0.2, real 0.5 → ratio 0.4 < 0.5 (not reviews)."""
    from bench.phf_pilot import read_size, report

    real = [0.0, 1.0]  # confidence 0.5
    _pilot_record(tmp_path / "a", "a", [(0, 0, 9.0), (5, 50, 6.0), (10, 100, 5.0), (20, 200, 4.6)], 20, [0.6, 0.8], real, budget=200)
    _pilot_record(tmp_path / "b", "b", [(0, 0, 9.0), (5, 50, 6.0), (10, 100, 4.8), (20, 200, 4.6)], 20, [0.4, 0.8], real, budget=300)
    a = read_size(tmp_path / "a")
    assert a["last_doubling_share"] == pytest.approx(0.4 / 4.4) and a["flattened"]
    assert a["confidence_samples"] == pytest.approx(0.2) and a["confidence_ratio"] == pytest.approx(0.4) and not a["reads_as_reviews"]
    out = report(tmp_path)
    assert out["chosen"] is None and "fallback is fully fine-tuning" in out["reading"]  # neither size reads as reviews
    _pilot_record(tmp_path / "c", "c", [(0, 0, 9.0), (10, 100, 5.5), (20, 200, 4.7)], 20, [0.0, 0.9], real)
    out = report(tmp_path)  # c: 0.8/4.3 = 0.19 not flattened but read as reviews; a and b flattened but not: none qualifies
    assert out["chosen"] is None
    _pilot_record(tmp_path / "d", "d", [(0, 0, 9.0), (10, 100, 4.9), (20, 200, 4.7)], 20, [0.0, 1.0], real)
    _pilot_record(tmp_path / "e", "e", [(0, 0, 9.0), (10, 100, 4.85), (20, 200, 4.65)], 20, [0.1, 0.9], real)
    out = report(tmp_path)  # d (0.2/4.3) and e (0.2/4.35) both qualify; e has the lower final LM loss
    assert out["chosen"] == "e"
    md = (tmp_path / "pilot.md").read_text()
    assert "| scratch:e |" in md and "200 of 300 (all the data)" in md and "**Reading.** scratch:e" in md


def test_phf_seed_count_reads_the_largest_paired_sd_by_hand():
    """Conditional − MLE differs by 0, 0.04, −0.04, 0.02, −0.02 (SD 0.0316); RWR by a constant (SD 0): n is the first
    count with t₀.₉₇₅,ₙ₋₁ · 0.0316 / √n ≤ 0.03, i.e. 7 (t₆ = 2.447: 0.0292; at 6, t₅ = 2.571: 0.0332)."""
    import pandas as pd

    from bench.phf import seed_count

    d = [0.0, 0.04, -0.04, 0.02, -0.02]
    rows = []
    for seed, x in enumerate(d):
        rows.append({"objective": "mle", "seed": seed, "step": 0, "misalignment": 0.9})
        rows.append({"objective": "mle", "seed": seed, "step": 8, "misalignment": 0.5})
        rows.append({"objective": "conditional", "seed": seed, "step": 8, "misalignment": 0.5 + x})
        rows.append({"objective": "rwr", "seed": seed, "step": 8, "misalignment": 0.45})
    s, n = seed_count(pd.DataFrame(rows))
    assert s == pytest.approx(float(np.std(d, ddof=1))) and n == 7
    wide = pd.DataFrame(rows).assign(misalignment=lambda f: 0.5 + (f["misalignment"] - 0.5) * 3)  # SD 0.095: more than 12 needed
    assert seed_count(wide)[1] == 12
    calm = pd.DataFrame(rows).assign(misalignment=lambda f: 0.5 + (f["misalignment"] - 0.5) / 4)  # SD 0.008: the minimum
    assert seed_count(calm)[1] == 5


HELD = {"random": [0.60, 0.62, 0.58], "certainty": [0.70, 0.66, 0.71]}  # held-out accuracy at 48 labels, per seed
POOL_SETS = ["acquisition.budget=48", "evaluation.waypoints=[16,32,48]"]


def _pool_record(out, records, strategy, seed, judged: bool) -> None:
    """The record of a pool-based run (imdb-cpu-pool) with the study's config; with ``judged`` a win-rate too."""
    sets = POOL_SETS + ([] if judged else ["evaluation.oracle=null"])
    cfg = load_config("imdb-cpu-pool", sets, strategy=strategy, seed=seed)
    wr = (RANDOM if strategy == "random" else CERTAINTY[seed]) if judged else {}
    held = {16: (0.5, 0.0), 32: (0.55, 0.1), 48: (HELD[strategy][seed], 0.2 + 0.1 * seed)}
    run = make_run(out, strategy, seed, wr, folder=f"{strategy}/seed{seed}", cfg=cfg, heldout=held)
    write_record(run, labels.record_path(records, strategy, seed))


def test_a_compact_record_keeps_a_pool_runs_held_out_rows_and_an_on_policy_one_has_none(tmp_path):
    from aplkit import results as R
    from aplkit.runfolder import read_jsonl
    from bench.archive import materialise

    _pool_record(tmp_path / "runs", tmp_path / "rec", "certainty", 1, judged=False)
    rec = labels.record_path(tmp_path / "rec", "certainty", 1)
    held = list(read_jsonl(tmp_path / "runs" / "certainty" / "seed1" / "heldout.jsonl"))
    assert read_record(rec)["heldout"] == held and [h["accuracy"] for h in held] == [0.5, 0.55, 0.66]
    root = materialise([rec], tmp_path / "again")
    assert list(read_jsonl(root / "imdb-cpu-pool" / "certainty" / "seed1" / "heldout.jsonl")) == held
    cols = ["acquired", "trained", "win_rate", "heldout_accuracy", "heldout_stderr", "heldout_n", "heldout_margin"]
    assert R.load_runs(tmp_path / "runs")[cols].equals(R.load_runs(root)[cols])
    # an on-policy record has no held-out list (its bytes as before it was kept) and reads as an empty one
    on = write_record(_run(tmp_path / "on", "random", 0), tmp_path / "on.json")
    assert '"heldout"' not in on.read_text() and read_record(on)["heldout"] == []
    assert json.loads(on.read_text()).keys() == {"head", "eval", "train", "steps", "acquired", "eval_pairs", "eval_epochs"}
    assert not (materialise([on], tmp_path / "on-again") / "imdb-cpu" / "random" / "seed0" / "heldout.jsonl").exists()


def test_endpoint_reads_a_pool_study_on_its_held_out_accuracy_by_hand(tmp_path):
    """A pool study without a judge of its generations, read on its planned endpoint: the headline comparison, the
    decision and power lines, the paired tests and the ranking's Holm family are the held-out accuracy's."""
    from aplkit.results.compare import seeds_for_power

    records = tmp_path / "rec"
    for k in range(3):
        for s in ("random", "certainty"):
            _pool_record(tmp_path / "runs", records, s, k, judged=False)
    plan = ["--config", "imdb-cpu-pool", "--strategies", "random,certainty", "--seeds", "3", "--records", str(records)]
    plan += sum((["--set", a] for a in [*POOL_SETS, "evaluation.oracle=null"]), [])
    assert labels.main([*plan, "--report-only", "--endpoint", "heldout_accuracy"]) == 0
    doc = json.loads((records / "summary.json").read_text())
    # differences at 48: 0.10, 0.04, 0.13 → mean 0.09, sd √(0.0042/2), t(0.975, 2) = 4.302653
    sd, half = math.sqrt(0.0042 / 2), 4.302653 * math.sqrt(0.0042 / 2) / math.sqrt(3)
    cmp = {r["acquired"]: r for r in doc["comparison"]}
    assert {r["metric"] for r in doc["comparison"]} == {"heldout_accuracy"} and cmp[48]["mean_diff"] == pytest.approx(0.09)
    assert cmp[48]["t_high"] == pytest.approx(0.09 + half, abs=1e-6) and cmp[48]["seeds_80"] == seeds_for_power(sd, 0.05)
    (prec,) = doc["precision"]
    assert prec["half_width"] == pytest.approx(half, abs=1e-6) and not prec["within"]
    sig = {r["acquired"]: r for r in doc["significance"]}
    p = t2_p(0.09 / (sd / math.sqrt(3)))
    assert sig[48]["t_p"] == pytest.approx(p, rel=1e-6) and sig[48]["t_p_holm"] == pytest.approx(p, rel=1e-6)  # 16, 32: no spread
    (rank,) = doc["ranking"]
    assert (rank["acquired"], rank["metric"], rank["p_holm"]) == (48, "heldout_accuracy", pytest.approx(p, rel=1e-6))
    md = doc["markdown"]
    assert "Is it decided? The 95 % interval in held-out accuracy (the study's endpoint) at the final budget" in md
    assert "| held-out accuracy | preferences | 48 | Pref certainty | 3 | +0.090 |" in md
    assert "Δ held-out accuracy vs random" in md and "ranked in held-out accuracy (the study's endpoint), one Holm family" in md
    assert (
        "The same question on the other metrics (win-rate; soft win-rate; reward gap in the oracle's units; held-out margin in β-scaled nats)"
        in md
    )
    # the margin: 0.2 + 0.1k on both arms → no difference on any seed
    low = {(r["metric"], r["acquired"]): r for r in doc["comparison_lower_variance"]}
    assert low[("heldout_margin", 48)]["mean_diff"] == 0.0 and low[("heldout_margin", 48)]["seeds_80"] is None
    assert "Δ held-out accuracy vs random" in (records / "figures" / "significance.md").read_text()
    assert "no Fig 2" in (records / "figures" / "notes.md").read_text() and (records / "figures" / "ranking.png").exists()


def test_a_judged_pool_study_reads_its_held_out_accuracy_beside_the_win_rate(tmp_path):
    """The default endpoint is the win-rate; a pool study's held-out accuracy joins the lower-variance question."""
    configs = {}
    for k in range(3):
        for s in ("random", "certainty"):
            configs[(s, k)] = load_config("imdb-cpu-pool", POOL_SETS, strategy=s, seed=k)
            _pool_record(tmp_path / "runs", tmp_path / "rec", s, k, judged=True)
    doc = labels.summarise(tmp_path / "runs", configs)
    assert {r["metric"] for r in doc["comparison"]} == {"win_rate"} and doc["precision"][0]["mean_diff"] == pytest.approx(-0.02)
    low = {(r["metric"], r["acquired"]): r for r in doc["comparison_lower_variance"]}
    assert low[("heldout_accuracy", 48)]["mean_diff"] == pytest.approx(0.09) and low[("heldout_accuracy", 48)]["n"] == 3
    assert "(soft win-rate; reward gap in the oracle's units; held-out accuracy; held-out margin in β-scaled nats)" in doc["markdown"]


def test_an_endpoint_not_on_the_win_rates_scale_is_refused_in_one_line_before_any_run(tmp_path, monkeypatch):
    def no_run(*a, **k):
        raise AssertionError("nothing may run before the endpoint is checked")

    monkeypatch.setattr("aplkit.loop.run_experiment", no_run)
    for field in ("accuracy", "kl", "heldout_margin"):
        with pytest.raises(SystemExit) as e:
            labels.main(["--endpoint", field, "--out", str(tmp_path / "o")])
        msg = str(e.value)
        assert (
            msg
            == f"--endpoint: expected one of win_rate, soft_win_rate, heldout_accuracy (a metric on the win-rate's 0–1 scale), got {field!r}"
        )


@pytest.mark.slow  # two tiny steps
def test_phases_count_evaluations_after_earlier_epochs_as_evaluate(tmp_path):
    """With evaluation.epoch_points the profiled step's evaluations after its earlier epochs are booked to evaluate, as
    the step books them, not to train (the DPO step's FLOP/s would read them as training)."""
    from bench.phases import lines, profile_step
    from tests.test_loop import TINY

    sets = [*TINY, "training.epochs=3", "evaluation.epoch_points=[8]", "evaluation.kl_samples=1"]  # step 2: 8 labels
    res = profile_step("imdb-cpu", "random", "float32", 2, sets)
    ev, train = res["phases"]["evaluate"], res["phases"]["train"]
    assert ev["after_epochs"] == 2 and "after_epochs" not in train
    assert ev["parts"]["KL at T = 1"] > 0 and ev["parts"]["generation (decode)"] > 0
    assert any(x.startswith("  evaluate") and x.endswith("(with 2 evaluations after earlier epochs)") for x in lines(res))
