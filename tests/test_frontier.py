"""The frontier: a run's best value reachable up to each KL from θ0, compared between strategies on a KL grid, by hand;
the per-epoch points the loop records for it, on the tiny model."""

from __future__ import annotations

import json
import math
import subprocess
import time

import numpy as np
import pytest

from aplkit.results import frontier as F
from tests.synthetic_runs import make_run


def run(root, strategy, seed, points: dict[int, list[tuple[float, float]]], field: str = "kl_t1", folder: str | None = None):
    """A run folder whose budget b has the (KL, win-rate) ``points[b]`` in epoch order: the last is the waypoint's row."""
    return make_run(
        root,
        strategy,
        seed,
        {b: pts[-1][1] for b, pts in points.items()},
        metrics={b: {field: pts[-1][0]} for b, pts in points.items()},
        epoch_points={b: [{"win_rate": w, field: k} for k, w in pts[:-1]] for b, pts in points.items()},
        folder=folder,
    )


# --------------------------------------------------------------------------- one run's frontier, by hand

# a strategy's points (KL, win-rate) and random's: with θ0's (0, 0.5) they make these frontiers
STRATEGY = [(1.0, 0.7), (2.0, 0.8), (3.0, 0.75)]  # 0 → 0.5, 1 → 0.7, 2 → 0.8, 3 → 0.8 (the dip is not reachable-best)
RANDOM = [(0.5, 0.6), (2.0, 0.65), (4.0, 0.7)]  # 0 → 0.5, 0.5 → 0.6, 2 → 0.65, 4 → 0.7


def test_a_frontier_is_the_running_best_over_kl_from_theta0_and_stops_at_its_last_point():
    x, v = F.monotone([3.0, 1.0, 2.0, 2.0], [0.75, 0.7, 0.6, 0.8], at_theta0=0.5)
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0] and v.tolist() == [0.5, 0.7, 0.8, 0.8]  # of two points at KL 2 the best
    assert F.frontier_at(x, v, [0.5, 2.5]).tolist() == pytest.approx([0.6, 0.8])
    assert math.isnan(F.frontier_at(x, v, 3.01))  # no extrapolation
    x, v = F.monotone([0.5], [0.4], at_theta0=0.5)  # a run worse than θ0: θ0's own point is reachable
    assert v.tolist() == [0.5, 0.5]


def test_mean_height_is_the_exact_area_over_the_grid_by_hand():
    xs, vs = F.monotone(*zip(*STRATEGY, strict=True), at_theta0=0.5)
    xr, vr = F.monotone(*zip(*RANDOM, strict=True), at_theta0=0.5)
    # strategy on [1, 3]: (0.7 + 0.8)/2 + 0.8 = 1.55 → ÷ 2
    assert F.mean_height(xs, vs, 1.0, 3.0) == pytest.approx(0.775)
    # random: F(1) = 0.6 + 0.05·(0.5/1.5) = 0.61667, F(2) = 0.65, F(3) = 0.675; its point at 2 is a knot
    assert F.mean_height(xr, vr, 1.0, 3.0) == pytest.approx(((0.6 + 0.05 / 3 + 0.65) / 2 + (0.65 + 0.675) / 2) / 2)
    assert F.mean_height(xr, vr, 1.0, 4.5) != F.mean_height(xr, vr, 1.0, 4.5)  # NaN: random stops at 4
    assert F.mean_height(xs, vs, 2.0, 2.0) == pytest.approx(0.8)


def _points(rows: list[tuple[str, int, float, float, int]]):
    import pandas as pd

    return pd.DataFrame(rows, columns=["strategy", "seed", "kl_t1", "win_rate", "n"]).assign(acquired=64)


def test_a_point_against_a_reference_frontier_is_on_above_below_or_beyond_its_reach(tmp_path):
    """The β check's reading: the reference RANDOM's frontier is 0 → 0.5, 0.5 → 0.6, 2 → 0.65, 4 → 0.7 (linear
    between); a point within ± 0.03 of it is on it, and past KL 4 nothing is read."""
    run(tmp_path / "ref", "random", 0, {64: RANDOM})
    run(tmp_path / "other", "random", 0, {64: [(0.25, 0.59), (1.25, 0.60), (3.0, 0.675), (5.0, 0.9)]})
    ref, pts = F.frontier_points(tmp_path / "ref"), F.frontier_points(tmp_path / "other")
    got = F.against_frontier(pts, ref, band=0.03)
    # the reference at 0.25: 0.55 (+0.04 above); at 1.25: 0.625 (−0.025 on); at 3: 0.675 (0 on); at 5: beyond
    assert got["kl"].tolist() == [0.25, 1.25, 3.0, 5.0] and got["reading"].tolist() == ["above", "on", "on", "beyond"]
    assert got["frontier"].tolist()[:3] == pytest.approx([0.55, 0.625, 0.675]) and math.isnan(got["frontier"].iloc[3])
    assert got["difference"].tolist()[:3] == pytest.approx([0.04, -0.025, 0.0])
    assert F.against_frontier(pts, ref, band=0.02)["reading"].tolist()[:2] == ["above", "below"]


def test_the_running_maxs_lift_under_a_shared_frontier_matches_exact_enumeration():
    """n = 1, so each point is 1 with probability p = 0.75 and 0 otherwise; θ0 is (0, ½), the grid [0.5, 1].
    Random has one point at KL 1: height ½ + (m − ½)·¾ with m = 1 w.p. p else ½ (the max with θ0's ½), mean
    ½ + ⅜p = 0.78125. The other has points at 0.5 and 1: height (m₁ + m₂)/2 with m₁ = 1 w.p. p, m₂ = 1 w.p.
    1 − (1 − p)², mean ½ + ¼(p + 1 − (1 − p)²) = 0.921875. So the lift is 0.140625 for the one with more points."""
    pts = _points([("random", 0, 1.0, 0.0, 1), ("other", 0, 0.5, 0.0, 1), ("other", 0, 1.0, 0.0, 1)])
    bias, se = F.null_bias(pts, [0.5, 1.0], 64, "other", curve=lambda k: np.full(np.shape(k), 0.75), sims=20000)
    assert se < 0.003 and abs(bias - 0.140625) < 4 * se
    # the same KL positions for both: no lift either way; a seed whose run stops before the grid's end is left out
    same = _points([(s, 0, x, 0.0, 256) for s in ("random", "other") for x in (0.3, 0.6, 1.0)] + [("other", 1, 0.4, 0.0, 256)])
    bias, se = F.null_bias(same, [0.5, 1.0], 64, "other", curve=lambda k: 0.5 + 0.2 * np.asarray(k), sims=4000)
    assert abs(bias) < 4 * se and se < 0.002
    assert math.isnan(F.null_bias(same[same["seed"] == 1], [0.5, 1.0], 64, "other")[0])


def test_the_shared_curve_is_the_weighted_isotonic_fit_held_at_theta0():
    """Values 0.7 (n 100) at KL 1 and 0.6 (n 300) at KL 2 pool to 0.625 at both (a decrease is not a frontier);
    θ0 keeps ½ with the weight of every point."""
    g = F.shared_curve([1.0, 2.0], [0.7, 0.6], [100, 300], 0.5)
    assert np.allclose(g([0.0, 0.5, 1.0, 2.0, 3.0]), [0.5, 0.5625, 0.625, 0.625, 0.625])


def test_frontier_comparison_by_hand_with_a_seed_left_out_for_not_covering_the_grid(tmp_path):
    run(tmp_path, "certainty", 0, {64: STRATEGY})
    run(tmp_path, "random", 0, {64: RANDOM})
    run(tmp_path, "certainty", 1, {64: [(k, w + 0.05) for k, w in STRATEGY]})
    run(tmp_path, "random", 1, {64: RANDOM})
    run(tmp_path, "certainty", 2, {64: STRATEGY})
    run(tmp_path, "random", 2, {64: [(0.5, 0.6), (2.5, 0.7)]})  # stops before the grid's end at 3: left out, counted
    pts = F.frontier_points(tmp_path)
    assert F.kl_axis(pts) == "kl_t1" and F.has_frontier(pts)
    cmp = F.frontier_comparison(pts, [1.0, 2.0, 3.0])
    assert len(cmp) == 1  # the win-rate only: no run recorded a soft win-rate or a reward gap
    r = cmp.iloc[0]
    d0 = 0.775 - ((0.6 + 0.05 / 3 + 0.65) / 2 + (0.65 + 0.675) / 2) / 2
    assert (r.task, r.acquired, r.strategy, r.metric, r.kl_low, r.kl_high) == ("imdb", 64, "certainty", "win_rate", 1.0, 3.0)
    # seed 1: the strategy's frontier 0.05 higher where it has its own points, but θ0's point is the same: by hand
    d1 = ((0.75 + 0.85) / 2 + 0.85) / 2 - (0.775 - d0)
    assert (r.n, r.left_out) == (2, 1) and r.mean_diff == pytest.approx((d0 + d1) / 2)
    assert r.boot_low <= r.mean_diff <= r.boot_high and r.t_low < r.mean_diff < r.t_high
    per = F.frontier_comparison(pts, [1.0, 2.0, 3.0], per_point=True)
    assert per["kl"].tolist() == [1.0, 2.0, 3.0] and per["left_out"].tolist() == [0, 0, 1]  # seed 2 reaches 1 and 2
    # at κ = 2: 0.8 − 0.65 and 0.85 − 0.65 on seeds 0, 1; seed 2's random there is 0.6 + 0.1·(1.5/2) = 0.675
    assert per.loc[per["kl"] == 2.0, "mean_diff"].item() == pytest.approx((0.15 + 0.2 + (0.8 - 0.675)) / 3)


def test_the_area_is_the_mean_of_the_differences_when_both_frontiers_are_linear_on_the_grid(tmp_path):
    """Two straight frontiers on [0, 2]: the area between them ÷ 2 is the difference at the middle, as on paper."""
    run(tmp_path, "certainty", 0, {32: [(2.0, 0.9)]})
    run(tmp_path, "random", 0, {32: [(2.0, 0.7)]})
    cmp = F.frontier_comparison(F.frontier_points(tmp_path), np.linspace(0, 2, 5))
    assert cmp["mean_diff"].item() == pytest.approx(0.1) and cmp["n"].item() == 1


def test_label_saving_interpolates_random_between_budgets_by_hand(tmp_path):
    # every run's frontier at budget b has one point at KL 2 (the grid [1, 3]'s middle): its height there is its value
    for seed, heights in ((0, (0.6, 0.7, 0.9)), (1, (0.6, 0.8, 0.9))):
        run(tmp_path, "random", seed, {b: [(2.0, h)] for b, h in zip((16, 32, 64), heights, strict=True)})
        run(tmp_path, "certainty", seed, {16: [(2.0, 0.6)], 32: [(2.0, 0.7)], 64: [(2.0, 0.8)]})
        run(tmp_path, "entropy", seed, {16: [(2.0, 0.6)], 32: [(2.0, 0.7)], 64: [(2.0, 0.95)]})
    ls = F.label_saving(F.frontier_points(tmp_path), [1.0, 3.0], budget=64).set_index("strategy")
    c = ls.loc["certainty"]
    # random's mean heights 0.6, 0.75, 0.9 at 16, 32, 64; certainty's 0.8: 32 + (0.05 / 0.15)·32 labels
    assert (c.kl, c.seeds, c.height) == (2.0, 2, pytest.approx(0.8))
    assert c.labels_random == pytest.approx(32 + 32 / 3) and c.ratio == pytest.approx((32 + 32 / 3) / 64)
    # a resample of seed 0 alone: 32 + 0.1/0.2·32 = 48; of seed 1 alone: 32 (reached there); mixed: 32 + 32/3
    assert (c.labels_low, c.labels_high) == (pytest.approx(32.0), pytest.approx(48.0))
    e = ls.loc["entropy"]
    assert math.isinf(e.labels_random) and e.largest == 64 and "never reaches" in e.note  # no extrapolation beyond 64
    from aplkit.results.tables import label_saving_markdown

    md = label_saving_markdown(ls.reset_index())
    assert (
        "| imdb | Entropy | 64 | 2 | 2 | 0.950 | > 64 |" in md
        and "| imdb | Pref certainty | 64 | 2 | 2 | 0.800 | 42.7 | [32.0, 48.0] |" in md
    )


def test_the_axis_falls_back_to_the_along_path_kl_and_says_so(tmp_path):
    run(tmp_path, "certainty", 0, {32: [(1.0, 0.6), (2.0, 0.7)]}, field="kl")
    run(tmp_path, "random", 0, {32: [(1.0, 0.55), (2.0, 0.6)]}, field="kl")
    pts = F.frontier_points(tmp_path)
    assert F.kl_axis(pts) == "kl"
    from aplkit.results.tables import frontier_markdown

    md = frontier_markdown(F.frontier_comparison(pts, [0.0, 2.0]), F.kl_axis(pts))
    assert "x-axis: KL along test completions" in md and "| Win-rate | imdb | 32 | Pref certainty | 0–2 | 1 | 0 | +0.050 |" in md


def test_report_draws_the_frontier_only_when_runs_have_more_than_one_point(tmp_path):
    from aplkit.results.report import report

    for seed in range(2):
        run(tmp_path / "epochs", "certainty", seed, {32: [(0.5, 0.6), (1.0, 0.65 + 0.01 * seed)]})
        run(tmp_path / "epochs", "random", seed, {32: [(0.4, 0.55), (0.9, 0.6)]})
        make_run(tmp_path / "one", "random", seed, {32: 0.6}, metrics={32: {"kl": 0.5}})
    assert {"frontier.png", "frontier.pdf"} <= set(report(tmp_path / "epochs", tmp_path / "fig"))
    assert "frontier.png" not in report(tmp_path / "one", tmp_path / "fig1")
    curves = F.mean_frontiers(F.frontier_points(tmp_path / "epochs"))
    top = curves[curves["strategy"] == "certainty"]
    assert top["kl"].max() == pytest.approx(1.0) and top["n"].eq(2).all()  # up to the KL both seeds reach
    assert top.loc[top["kl"] == 1.0, "mean"].item() == pytest.approx(0.655)


# --------------------------------------------------------------------------- the points a run records (tiny model)

EPOCHS = ["training.epochs=3"]
POINTS = ["evaluation.epoch_points=[4,12]", "evaluation.kl_samples=2"]
T1 = ("kl_t1", "kl_t1_stderr")


def _without(rows: list[dict], keys=("cached", "seconds", *T1)) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in keys} for r in rows]


@pytest.mark.slow  # tiny runs with and without the epoch points
def test_epoch_points_and_the_t1_kl_leave_every_other_row_as_it_was(tmp_path):
    """Turned on, they add rows and fields; the acquisitions, the training and the waypoints' numbers stay the same, and an
    earlier epoch's point is what a run trained for that many epochs measures at its waypoint."""
    from aplkit.checks import load_config
    from aplkit.loop import run_experiment
    from aplkit.runfolder import read_jsonl
    from tests.test_loop import TINY

    out = {}
    full = [*EPOCHS, *POINTS, "evaluation.epoch_companions=true"]
    for name, sets in (("plain", EPOCHS), ("points", [*EPOCHS, *POINTS]), ("two", ["training.epochs=2"]), ("full", full)):
        res = run_experiment(load_config("imdb-cpu", [*TINY, *sets], strategy="certainty"), tmp_path / name, progress=False)
        out[name] = {
            f: list(read_jsonl(tmp_path / name / f"{f}.jsonl")) for f in ("acquired", "train", "eval", "eval_pairs", "eval_epochs")
        }
        out[name]["result"] = res
    plain, points = out["plain"], out["points"]
    for f in ("acquired", "train", "eval", "eval_pairs"):
        assert _without(points[f]) == _without(plain[f]), f
    assert plain["eval_epochs"] == [] and all(r["kl_t1"] is None for r in plain["eval"])
    ep = points["eval_epochs"]
    assert [(r["step"], r["epoch"], r["acquired"]) for r in ep] == [(1, 1, 4), (1, 2, 4), (3, 1, 12), (3, 2, 12)]
    assert [len(s.epoch_evals) for s in points["result"].steps] == [2, 0, 2]
    waypoint = {r["step"]: r for r in points["eval"]}
    assert all(r["trained"] == waypoint[r["step"]]["trained"] for r in ep)
    pairs = list(read_jsonl(tmp_path / "points" / "eval_epoch_pairs.jsonl"))
    for r in [*ep, *points["eval"]]:
        mine = [p for p in (pairs if "epoch" in r else points["eval_pairs"]) if p["step"] == r["step"] and p.get("epoch") == r.get("epoch")]
        assert len(mine) == 8 and r["kl_t1"] == pytest.approx(sum(p["kl_t1"] for p in mine) / 8) and r["kl_t1"] > 0
    # an earlier epoch's point leaves out what the frontier does not read (the LM loss, and the KL along the test
    # completions beside the KL at T = 1); with evaluation.epoch_companions it measures them, and nothing else changes
    companions = ("kl", "kl_stderr", "lm_loss")
    assert all(r[k] is None for r in ep for k in companions) and all(p["kl"] is None for p in pairs)
    assert all(r["kl"] is not None and r["lm_loss"] is not None for r in points["eval"])
    every = out["full"]
    for f in ("acquired", "train", "eval", "eval_pairs"):
        assert _without(every[f], ("cached", "seconds")) == _without(points[f], ("cached", "seconds")), f
    assert _without(every["eval_epochs"], ("seconds", *companions)) == _without(ep, ("seconds", *companions))
    assert all(r[k] is not None for r in every["eval_epochs"] for k in companions)
    # the step-1 policy after 2 of 3 epochs is the policy a 2-epoch run ends step 1 with: the same evaluation
    two = out["two"]["eval"][0]
    assert _without([every["eval_epochs"][1]], ("epoch", *T1)) == _without([two], T1)


def test_evaluation_at_theta0_has_no_kl_at_t1_either(tmp_path):
    from aplkit.checks import load_config
    from aplkit.loop import Experiment
    from tests.test_loop import TINY

    exp = Experiment(load_config("imdb-cpu", [*TINY, "evaluation.kl_samples=3"], strategy="random"), tmp_path / "r", progress=False)
    try:
        row = exp.evaluator.evaluate(0, 0)
    finally:
        exp.close()
    assert row.kl_t1 == pytest.approx(0.0, abs=1e-5) and row.kl_t1_stderr == pytest.approx(0.0, abs=1e-5)


@pytest.mark.slow  # a subprocess or several tiny runs
def test_kill_mid_step_and_resume_redoes_its_epoch_points_exactly(tmp_path):
    """SIGKILL after step 3's first per-epoch evaluation: the resumed run drops that half-done step's points and makes
    them again, ending with every row of an uninterrupted run."""
    import signal

    from aplkit.runfolder import read_jsonl
    from tests.test_loop import _cli, _env, _rows

    ref, cut = tmp_path / "ref", tmp_path / "cut"
    extra = [*EPOCHS, *POINTS]
    subprocess.run(_cli(ref, extra=extra), env=_env(), check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(_cli(cut, extra=extra), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not any(r["step"] == 3 for r in read_jsonl(cut / "eval_epochs.jsonl")):
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 not in [r["step"] for r in read_jsonl(cut / "steps.jsonl")]
    subprocess.run(_cli(cut, extra=extra), env=_env(), check=True, capture_output=True, timeout=600)
    for f in ("acquired", "eval", "eval_pairs", "eval_epochs", "eval_epoch_pairs"):
        assert _rows(cut / f"{f}.jsonl") == _rows(ref / f"{f}.jsonl"), f
    assert [r["epoch"] for r in read_jsonl(cut / "eval_epochs.jsonl")] == [1, 2, 1, 2]
    assert json.loads((cut / "summary.json").read_text())["complete"]


def test_epoch_points_must_be_waypoints():
    from aplkit.checks import load_config
    from aplkit.config import ConfigError
    from tests.test_loop import TINY

    with pytest.raises(ConfigError, match=r"evaluation\.epoch_points: 8 is not an evaluation waypoint \(waypoints: \[4, 12\]\)"):
        load_config("imdb-cpu", [*TINY, "evaluation.epoch_points=[8]"])
    with pytest.raises(ConfigError, match=r"evaluation\.epoch_points: 6 is not a multiple of M=4"):
        load_config("imdb-cpu", [*TINY, "evaluation.epoch_points=[6]"])
    with pytest.raises(ConfigError, match=r"evaluation\.kl_samples: must be >= 0, got -1"):
        load_config("imdb-cpu", [*TINY, "evaluation.kl_samples=-1"])
    cfg = load_config("imdb-cpu")
    assert cfg.evaluation.kl_samples == 0 and cfg.evaluation.epoch_points == []  # off unless asked: runs cost what they did


def test_trackers_log_each_epochs_frontier_point_the_last_being_the_waypoints():
    from aplkit.loop import StepResult
    from aplkit.records import EpochEvalRow, EpochStats, EvalRow
    from aplkit.tracking.metrics import epoch_scalars

    train = [EpochStats(e, 0.7 - 0.1 * e, 0.5, 0.1, 8, 1.0) for e in (1, 2, 3)]
    early = [EpochEvalRow(2, 8, 0.5 + 0.1 * e, 0.1, 8, 0, 0, "initial", 8, kl=0.1 * e, kl_t1=0.2 * e, epoch=e) for e in (1, 2)]
    last = EvalRow(2, 8, 0.9, 0.1, 8, 0, 0, "initial", 8, kl=0.5, kl_t1=0.7)
    logged = epoch_scalars(StepResult(2, [], [], train, last, epoch_evals=early))
    assert [e for e, _ in logged] == [4, 5, 6]  # step 2's epochs on the running-epoch axis
    assert [v["frontier/win_rate"] for _, v in logged] == pytest.approx([0.6, 0.7, 0.9])
    assert [v["frontier/kl_t1"] for _, v in logged] == pytest.approx([0.2, 0.4, 0.7])
    assert [v["frontier/acquired"] for _, v in logged] == [8, 8, 8] and "frontier/soft_win_rate" not in logged[0][1]
    plain = epoch_scalars(StepResult(2, [], [], train, last))
    assert not any(k.startswith("frontier/") for _, v in plain for k in v)  # a step without epoch points logs none


def test_declared_groups_of_strategies_are_holm_families_of_their_own(tmp_path):
    """A primary comparison alone and a secondary family of two (``groups``): Holm runs within each, by hand. Each
    strategy's frontier is random's raised by d at its points, so its height over [0.5, 1] differs by 0.75·d."""
    from scipy import stats

    d = {"certainty": (0.02, 0.04, 0.05), "bald": (0.01, 0.03, 0.02), "d-optimal": (-0.01, 0.02, 0.04)}
    for k in range(3):
        run(tmp_path, "random", k, {64: [(1.0, 0.6), (2.0, 0.7)]})
        for s, shift in d.items():
            run(tmp_path, s, k, {64: [(1.0, 0.6 + shift[k]), (2.0, 0.7 + shift[k])]})
    pts = F.frontier_points(tmp_path)
    p = {s: stats.ttest_1samp([0.75 * x for x in shift], 0.0).pvalue for s, shift in d.items()}
    groups = {"certainty": "primary", "bald": "secondary", "d-optimal": "secondary"}
    got = F.frontier_comparison(pts, [0.5, 1.0], metrics=("win_rate",), groups=groups).set_index("strategy")
    assert got.loc["certainty", "mean_diff"] == pytest.approx(0.75 * sum(d["certainty"]) / 3)
    assert got.loc["certainty", "t_p_holm"] == pytest.approx(p["certainty"])  # alone in its family: unadjusted
    low, high = sorted(["bald", "d-optimal"], key=p.get)
    assert got.loc[low, "t_p_holm"] == pytest.approx(min(1.0, 2 * p[low]))
    assert got.loc[high, "t_p_holm"] == pytest.approx(max(min(1.0, 2 * p[low]), p[high]))
    one = F.frontier_comparison(pts, [0.5, 1.0], metrics=("win_rate",)).set_index("strategy")  # no groups: one family of 3
    first = min(p, key=p.get)
    assert one.loc[first, "t_p_holm"] == pytest.approx(3 * p[first])
