"""The paper's four findings read from synthetic frames: every verdict branch, with the intervals worked out by hand.

Random's win-rate is 0.5 on every seed and size, so a strategy's win-rate is 0.5 + its paired difference.
Student-t quantiles come from scipy; everything else below is arithmetic on the differences.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from aplkit.results import compare
from aplkit.results.stats import holm
from bench.findings import confident_error_shares, findings, findings_markdown

UP = [0.10, 0.06, 0.08]  # mean 0.08, sd 0.02: t = 4√3, two-sided p (2 df) = 1 − t/√(2 + t²) ≈ 0.0202
UP2 = [0.11, 0.07, 0.09]  # mean 0.09, sd 0.02: p ≈ 0.0163
FLAT = [0.05, -0.01, 0.02]  # mean 0.02, sd 0.03: p ≈ 0.368
NULL = [0.02, -0.02, 0.01]  # mean +0.0033, contains 0
DOWN = [-0.01, -0.03, -0.02]  # mean −0.02


def t2_p(mean: float, sd: float, n: int = 3) -> float:
    return float(2 * st.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def frame(diffs: dict[str, dict[int, list[float]]], sizes=(16, 32, 48)) -> pd.DataFrame:
    """Random at 0.5 everywhere; each strategy at 0.5 + its per-seed difference (0 where none is given)."""
    seeds = max((len(v) for d in diffs.values() for v in d.values()), default=3)
    rows = [{"task": "imdb", "strategy": "random", "seed": k, "acquired": a, "win_rate": 0.5} for k in range(seeds) for a in sizes]
    for s, by_size in diffs.items():
        for a in sizes:
            for k, d in enumerate(by_size.get(a, [0.0] * seeds)):
                rows.append({"task": "imdb", "strategy": s, "seed": k, "acquired": a, "win_rate": 0.5 + d})
    return pd.DataFrame(rows)


def pairs(shares: dict[str, list[tuple[int, int]]]) -> pd.DataFrame:
    """Acquired pairs at step 2: per strategy and seed, (confidently wrong, right) counts; plus step-1 noise that must not count."""
    rows = []
    for s, per_seed in shares.items():
        for k, (wrong, right) in enumerate(per_seed):
            rows += [{"task": "imdb", "strategy": s, "seed": k, "step": 2, "bt_prob": 0.8, "preferred": 0}] * wrong
            rows += [{"task": "imdb", "strategy": s, "seed": k, "step": 2, "bt_prob": 0.8, "preferred": 1}] * right
            rows += [{"task": "imdb", "strategy": s, "seed": k, "step": 1, "bt_prob": 0.9, "preferred": 0}] * 5  # step 1: left out
    return pd.DataFrame(rows, columns=["task", "strategy", "seed", "step", "bt_prob", "preferred"])


def verdicts(df: pd.DataFrame, acq: pd.DataFrame | None = None) -> dict[str, str]:
    f = findings(df, pairs({}) if acq is None else acq)
    return dict(zip(f["finding"], f["verdict"], strict=True))


def test_holm_intervals_by_hand_and_agree_with_holm():
    # sizes UP (p ≈ 0.0202) and FLAT (p ≈ 0.368): Holm multiplies the smaller by 2 and leaves the larger (2·0.0202 < 0.368)
    iv = compare.holm_intervals([np.array(UP), np.array(FLAT)])
    p_up, p_flat = t2_p(0.08, 0.02), t2_p(0.02, 0.03)
    assert iv["p"].tolist() == pytest.approx([p_up, p_flat]) and iv["p_holm"].tolist() == pytest.approx([2 * p_up, p_flat])
    assert iv["level"].tolist() == pytest.approx([0.975, 0.95])
    half = st.t.ppf(1 - 0.0125, 2) * 0.02 / math.sqrt(3)  # 6.205 · 0.01155 = 0.0717
    assert (iv.loc[0, "low"], iv.loc[0, "high"]) == pytest.approx((0.08 - half, 0.08 + half))
    assert (iv.loc[1, "low"], iv.loc[1, "high"]) == pytest.approx(compare.t_interval(np.array(FLAT)))
    # on any family, an interval is off 0 exactly when the Holm-adjusted p-value is below 0.05
    rng = np.random.default_rng(0)
    for _ in range(50):
        ds = [rng.normal(rng.uniform(-0.05, 0.1), 0.05, size=5) for _ in range(4)]
        iv = compare.holm_intervals(ds)
        assert ((iv["low"] > 0) | (iv["high"] < 0)).tolist() == (holm(iv["p"]) < 0.05).tolist()
    # no spread: outside the family, a point interval
    iv = compare.holm_intervals([np.array([0.02, 0.02, 0.02]), np.array(UP)])
    assert math.isnan(iv.loc[0, "p"]) and (iv.loc[0, "low"], iv.loc[0, "high"]) == (0.02, 0.02) and iv.loc[1, "level"] == 0.95


def test_first_step_identical_by_construction_reproduced_not_and_undecided():
    assert verdicts(frame({"certainty": {32: UP, 48: UP}}))["i"] == "identical by construction"
    f = findings(frame({"certainty": {}, "entropy": {16: NULL}}), pairs({}))
    assert f.loc[0, "verdict"] == "reproduced"
    assert "Pref certainty: every paired difference is 0, n = 3 (identical by construction)" in f.loc[0, "evidence"]
    lo, hi = compare.t_interval(np.array(NULL))
    assert f"Entropy: +0.003 [{lo:+.3f}, {hi:+.3f}], n = 3 (contains 0)" in f.loc[0, "evidence"]
    assert verdicts(frame({"certainty": {}, "entropy": {16: UP}}))["i"] == "not reproduced"  # 0.08 ± 0.050 excludes 0
    assert verdicts(frame({"entropy": {16: [0.02]}}))["i"] == "undecided"  # one seed: no interval
    # contains 0 but reaches past ±0.06 (mean 0, sd 0.05, n 3: half width 4.30 · 0.05/√3 = 0.124): too wide to call it no difference
    assert verdicts(frame({"entropy": {16: [0.05, -0.05, 0.0]}}))["i"] == "undecided"


def test_certainty_from_the_second_step_each_branch():
    # 32: FLAT (contains 0), 48: UP at the Holm level 0.975 → [+0.008, +0.152]: above 0, nothing below
    f = findings(frame({"certainty": {32: FLAT, 48: UP}}), pairs({}))
    assert f.loc[1, "verdict"] == "reproduced" and "final budget 48: [+0.008, +0.152]" in f.loc[1, "evidence"]
    # final budget: five seeds around 0, sd = √(6.25e-5) = 0.0079; Holm level ≤ 0.975 → upper end ≤ 3.495·0.00354 = +0.012 < +0.03
    five = [0.01, -0.01, 0.0, 0.005, -0.005]
    f = findings(frame({"certainty": {32: [0.0] * 5, 48: five}}), pairs({}))
    assert f.loc[1, "verdict"] == "not reproduced" and "upper end below +0.03" in f.loc[1, "evidence"]
    assert f.loc[1, "detail"][-1]["high"] < st.t.ppf(0.9875, 4) * math.sqrt(6.25e-5 / 5) + 1e-12
    assert verdicts(frame({"certainty": {32: UP, 48: FLAT}}))["ii"] == "undecided"  # [−0.05, +0.09] at 48: neither
    # above 0 at the end but below 0 at a later size: not reproduced by the first rule, not ruled out by the second
    assert verdicts(frame({"certainty": {32: [-0.10, -0.06, -0.08], 48: UP2}}))["ii"] == "undecided"


def test_entropy_not_robust_each_branch():
    # measurably worse at a later size: [−0.10, −0.06, −0.08] at 32 (Holm level 0.975 → [−0.152, −0.008])
    f = findings(frame({"entropy": {32: [-0.10, -0.06, -0.08], 48: FLAT}}), pairs({}))
    assert f.loc[2, "verdict"] == "reproduced" and f.loc[2, "evidence"].startswith("below 0 at [32]")
    # five seeds around 0 at the final budget (upper end ≤ +0.012, as in (ii)'s test) and nothing above 0: gain ruled out
    five = [0.01, -0.01, 0.0, 0.005, -0.005]
    f = findings(frame({"entropy": {32: [0.0] * 5, 48: five}}), pairs({}))
    assert f.loc[2, "verdict"] == "reproduced" and "upper end below +0.03" in f.loc[2, "evidence"]
    # wide intervals that contain 0 are not evidence (the old rule called this reproduced): NULL, then FLAT [−0.05, +0.09]
    f = findings(frame({"entropy": {32: NULL, 48: FLAT}}), pairs({}))
    assert f.loc[2, "verdict"] == "undecided" and f.loc[2, "evidence"].startswith("final budget 48: [")
    # means that change sign are not evidence either: UP above 0 at 32 (Holm 0.975), DOWN at 48 contains 0
    # (p 0.074, level 0.95: −0.02 ± 4.303·0.01/√3 = [−0.045, +0.005])
    f = findings(frame({"entropy": {32: UP, 48: DOWN}}), pairs({}))
    assert f.loc[2, "verdict"] == "undecided" and ", above 0 at [32]. Entropy − random" in f.loc[2, "evidence"]
    # UP (p 0.0202) and UP2 (p 0.0163): Holm 0.0326 and 0.0326 → both above 0, so the final budget is: robust
    f = findings(frame({"entropy": {32: UP, 48: UP2}}), pairs({}))
    assert f.loc[2, "verdict"] == "not reproduced" and f.loc[2, "evidence"].startswith("final budget 48: above 0")
    assert verdicts(frame({"entropy": {32: UP, 48: FLAT}}))["iii"] == "undecided"  # above at 32 only


def test_confident_wrong_shares_pool_steps_and_each_branch():
    acq = pairs({"certainty": [(5, 5), (4, 6), (5, 5)], "random": [(1, 9), (1, 9), (1, 9)]})
    extra = pd.DataFrame(  # seed 0 of certainty also at step 3: 3 wrong of 10, one no-prediction and one unlabelled pair
        [{"task": "imdb", "strategy": "certainty", "seed": 0, "step": 3, "bt_prob": 0.2, "preferred": 1}] * 3
        + [{"task": "imdb", "strategy": "certainty", "seed": 0, "step": 3, "bt_prob": 0.2, "preferred": 0}] * 7
        + [{"task": "imdb", "strategy": "certainty", "seed": 0, "step": 3, "bt_prob": 0.5, "preferred": 1}]
        + [{"task": "imdb", "strategy": "certainty", "seed": 0, "step": 3, "bt_prob": 0.9, "preferred": None}]
    )
    shares = confident_error_shares(pd.concat([acq, extra], ignore_index=True)).set_index(["strategy", "seed"])
    assert shares.loc[("certainty", 0), "share"] == pytest.approx(8 / 20)  # pooled (5 + 3) / (10 + 10), not the mean of shares
    assert shares.loc[("random", 1), ["pairs", "confident_wrong"]].tolist() == [10, 1]

    # differences 0.4, 0.3, 0.4: mean 0.367, sd 0.0577 → 0.367 ± 4.303 · 0.0333 = [+0.223, +0.510]
    f = findings(frame({"certainty": {}}), acq)
    half = st.t.ppf(0.975, 2) * math.sqrt(1 / 300) / math.sqrt(3)
    assert f.loc[3, "verdict"] == "reproduced"
    assert (
        f"certainty 0.467, random 0.100; difference +0.367 [{0.11 / 0.3 - half:+.3f}, {0.11 / 0.3 + half:+.3f}], n = 3 seeds"
        in f.loc[3, "evidence"]
    )
    flipped = pairs({"random": [(5, 5), (4, 6), (5, 5)], "certainty": [(1, 9), (1, 9), (1, 9)]})
    assert verdicts(frame({"certainty": {}}), flipped)["iv"] == "not reproduced"
    mixed = pairs({"certainty": [(2, 8), (1, 9), (3, 7)], "random": [(1, 9), (2, 8), (2, 8)]})  # +0.1, −0.1, +0.1
    assert verdicts(frame({"certainty": {}}), mixed)["iv"] == "undecided"
    assert verdicts(frame({"certainty": {}}), pairs({}))["iv"] == "undecided"  # nothing acquired


def test_findings_markdown_and_no_random():
    f = findings(frame({"certainty": {32: FLAT, 48: UP}, "entropy": {32: NULL, 48: FLAT}}), pairs({}))
    assert f["finding"].tolist() == ["i", "ii", "iii", "iv"]
    md = findings_markdown(f)
    assert "| imdb | (ii) certainty above random from the second step on | **reproduced** | final budget 48" in md
    assert "below +0.03 (the paper reports +0.06)" in md
    only = frame({"certainty": {}}).query("strategy != 'random'")
    assert set(findings(only, pairs({}))["verdict"]) == {"undecided"}


def test_paired_comparison_on_a_companion_metric():
    df = frame({"certainty": {32: UP, 48: FLAT}})
    soft = {0: 0.03, 1: 0.01, 2: 0.02}  # soft win-rate differences at 32: mean 0.02, sd 0.01
    df["soft_win_rate"] = 0.6 + np.where(df["strategy"] == "certainty", df["seed"].map(soft), 0.0)
    df.loc[(df["strategy"] == "certainty") & (df["seed"] == 2) & (df["acquired"] == 48), "soft_win_rate"] = np.nan
    old = compare.paired_comparison(df)
    assert old.equals(compare.paired_comparison(df, metric="win_rate")) and set(old["metric"]) == {"win_rate"}
    # the win-rate one against significance_vs_random's mean and SE: the interval is mean ± t(0.975, n−1)·SE
    from aplkit.results.compare import significance_vs_random

    sig = significance_vs_random(df.assign(run=df["strategy"] + df["seed"].astype(str))).set_index(["acquired", "strategy"])
    r = old.set_index(["acquired", "strategy"]).loc[(32, "certainty")]
    half = st.t.ppf(0.975, 2) * sig.loc[(32, "certainty"), "se"]
    assert (r["t_low"], r["t_high"]) == pytest.approx((0.08 - half, 0.08 + half)) and r["mean_diff"] == pytest.approx(0.08)
    # the same machinery on the soft win-rate: 0.02 ± 4.303 · 0.01/√3 = [−0.0048, +0.0448]; a seed without it is left out
    s = compare.paired_comparison(df, metric="soft_win_rate").set_index(["acquired", "strategy"])
    c = s.loc[(32, "certainty")]
    assert c["metric"] == "soft_win_rate" and c["n"] == 3 and c["mean_diff"] == pytest.approx(0.02) and c["sd"] == pytest.approx(0.01)
    assert (c["t_low"], c["t_high"]) == pytest.approx(
        (0.02 - st.t.ppf(0.975, 2) * 0.01 / math.sqrt(3), 0.02 + st.t.ppf(0.975, 2) * 0.01 / math.sqrt(3))
    )
    assert c["p_improve"] == 1.0 and c["verdict"] == "undecided" and s.loc[(48, "certainty"), "n"] == 2
    relabelled = compare.paired_comparison(df.assign(win_rate=df["soft_win_rate"]))
    soft_cmp = compare.paired_comparison(df, metric="soft_win_rate")
    pd.testing.assert_frame_equal(relabelled.drop(columns="metric"), soft_cmp.drop(columns="metric"))
    assert compare.paired_comparison(df, metric="reward_gap").empty  # not recorded by any run
    assert compare.paired_comparison(df, metric="soft_win_rate", effect=None)["seeds_80"].isna().all()
