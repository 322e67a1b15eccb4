"""Analysis on synthetic run folders whose right answers are worked out by hand here."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aplkit import results as A
from tests.synthetic_runs import make_run, write_consistency

# win-rates per strategy → seed → {size: win-rate}
RANDOM = {0: {16: 0.50, 32: 0.60}, 1: {16: 0.55, 32: 0.62}, 2: {16: 0.60, 32: 0.64}}
CERTAINTY = {0: {16: 0.52, 32: 0.70}, 1: {16: 0.54, 32: 0.66}, 2: {16: 0.53, 32: 0.74}}


@pytest.fixture()
def runs(tmp_path):
    for seed, wr in RANDOM.items():
        make_run(tmp_path, "random", seed, wr)
    for seed, wr in CERTAINTY.items():
        make_run(tmp_path, "certainty", seed, wr)
    make_run(tmp_path, "entropy", 0, {16: 0.5, 32: 0.5}, n_test=100, complete=False)  # one seed: binomial SE 0.05
    return tmp_path


def test_load_runs_identity_skips_and_flags(runs):
    make_run(runs, "certainty", 7, {}, folder="empty/run")  # config.yaml but no eval rows
    df = A.load_runs(runs)
    assert len(df) == 14  # 7 runs × 2 waypoints
    assert df.attrs["skipped"] == ["empty/run"]
    assert df.attrs["incomplete"] == ["imdb-reset-e4-sentiment/entropy/seed0"]
    r = df[(df["strategy"] == "certainty") & (df["seed"] == 2) & (df["acquired"] == 32)].iloc[0]
    assert (r["win_rate"], r["mode"], r["epochs"], r["oracle"], r["task"], bool(r["complete"])) == (
        0.74,
        "reset",
        4,
        "sentiment",
        "imdb",
        True,
    )


def test_winrate_curves_mean_and_se_by_hand(runs):
    curves = A.winrate_curves(A.load_runs(runs))
    assert list(curves["strategy"].unique()) == ["random", "entropy", "certainty"]  # the paper's order
    c = curves.set_index(["strategy", "acquired"])
    vals = [RANDOM[s][32] for s in range(3)]
    assert c.loc[("random", 32), "mean"] == pytest.approx(sum(vals) / 3)
    assert c.loc[("random", 32), "se"] == pytest.approx(statistics.stdev(vals) / math.sqrt(3))
    assert c.loc[("random", 32), "se"] == pytest.approx(0.02 / math.sqrt(3))  # sd of .60,.62,.64 is .02
    assert (c.loc[("random", 32), "n"], c.loc[("random", 32), "se_kind"]) == (3, "seeds")
    # one seed: the run's own binomial stderr sqrt(.5·.5/100) = 0.05
    assert c.loc[("entropy", 16), "se"] == pytest.approx(0.05)
    assert c.loc[("entropy", 16), "se_kind"] == "binomial"


def test_table2_strings_bold_and_writers(runs, tmp_path):
    t = A.table2(A.load_runs(runs))
    assert list(t.columns) == ["random", "entropy", "certainty"]
    assert list(t.index) == [16, 32]
    # random @16: .50 .55 .60 → mean .55, sd .05, SE .05/√3 = .0289; certainty @32: .70 .66 .74 → .70, SE .04/√3 = .0231
    assert t.loc[16, "random"] == "0.55 ± 0.029"
    assert t.loc[16, "certainty"] == "0.53 ± 0.006"
    assert t.loc[32, "random"] == "0.62 ± 0.012"
    assert t.loc[32, "certainty"] == "0.70 ± 0.023"
    assert t.loc[32, "entropy"] == "0.50 ± 0.050"
    md = A.to_markdown(t)
    assert "| Size | Random | Entropy | Pref certainty |" in md
    assert "| 16 | **0.55 ± 0.029** | 0.50 ± 0.050 | 0.53 ± 0.006 |" in md
    assert "| 32 | 0.62 ± 0.012 | 0.50 ± 0.050 | **0.70 ± 0.023** |" in md
    assert "single seed" in md  # entropy's binomial SE is disclosed
    tex = A.to_latex(t)
    assert r"\textbf{0.70 $\pm$ 0.023}" in tex and r"\textbf{0.55 $\pm$ 0.029}" in tex
    assert r"0.62 $\pm$ 0.012 &" in tex and r"\textbf{0.62" not in tex
    csv = pd.read_csv(A.to_csv(t, tmp_path / "t2.csv"))
    row = csv[(csv["strategy"] == "certainty") & (csv["acquired"] == 32)].iloc[0]
    assert row["mean"] == pytest.approx(0.70) and row["se"] == pytest.approx(0.04 / math.sqrt(3)) and row["n"] == 3
    assert bool(row["best"]) and not bool(csv[(csv["strategy"] == "random") & (csv["acquired"] == 32)]["best"].iloc[0])


def test_trained_pairs_are_shown_where_they_differ_from_acquired(tmp_path):
    from matplotlib import pyplot as plt

    from aplkit.results import plots as P
    from aplkit.results.report import report

    # random trained on every label; certainty lost ties/invalid answers: seed 0 trained 15 and 31, seed 1 14 and 30
    for seed in range(2):
        make_run(tmp_path, "random", seed, {16: 0.5, 32: 0.6}, trained={16: 16, 32: 32})
        make_run(tmp_path, "certainty", seed, {16: 0.55, 32: 0.7}, trained={16: 15 - seed, 32: 31 - seed})
    make_run(tmp_path, "entropy", 0, {16: 0.5, 32: 0.5}, folder="old/entropy")  # an older folder: no trained field
    df = A.load_runs(tmp_path)
    assert df.loc[df["strategy"] == "certainty", "trained"].tolist() == [15.0, 31.0, 14.0, 30.0]
    assert df.loc[df["strategy"] == "entropy", "trained"].isna().all()  # unknown, no error

    c = A.winrate_curves(df).set_index(["strategy", "acquired"])
    assert c.loc[("certainty", 16), "trained"] == pytest.approx(14.5) and c.loc[("certainty", 32), "trained"] == pytest.approx(30.5)
    assert c.loc[("random", 32), "trained"] == 32 and math.isnan(c.loc[("entropy", 32), "trained"])
    gaps = A.trained_gaps(A.winrate_curves(df))
    assert set(zip(gaps["strategy"], gaps["acquired"], strict=True)) == {("certainty", 16), ("certainty", 32)}

    t2 = A.table2(df)
    csv = pd.read_csv(A.to_csv(t2, tmp_path / "t2.csv")).set_index(["strategy", "acquired"])
    assert csv.loc[("certainty", 16), "trained"] == pytest.approx(14.5) and csv.loc[("random", 16), "trained"] == 16
    assert math.isnan(csv.loc[("entropy", 16), "trained"])
    assert "some runs trained on fewer pairs" in A.to_markdown(t2)

    notes = A.trained_notes(df)
    assert notes[0] == (
        "imdb certainty: trained on fewer pairs than acquired (ties/invalid labels are not trained on); "
        "labels acquired → pairs trained, mean over seeds: 16 → 14.5, 32 → 30.5"
    )
    assert "1 run(s) did not record how many pairs they trained on" in notes[1] and len(notes) == 2

    fig = P.plot_winrate(A.winrate_curves(df))
    assert "up to 1.5 fewer pairs trained" in fig._suptitle.get_text()
    plt.close(fig)
    same = P.plot_winrate(A.winrate_curves(df[df["strategy"] != "certainty"]))
    assert "fewer pairs" not in same._suptitle.get_text()  # nothing to say when trained == acquired or unknown
    plt.close(same)

    written = report(tmp_path, tmp_path / "fig")
    text = written["notes.md"].read_text()
    assert "Fig 2 / Table 2 x-axis is labels acquired (t·M); imdb certainty: trained on fewer pairs" in text
    assert "16 → 14.5, 32 → 30.5" in text
    assert "trained" in pd.read_csv(written["table2.csv"]).columns


def test_trained_gap_in_the_caption_is_rounded(tmp_path):
    """A seed mean such as 1/3 of a pair is printed to three significant digits, not as 0.333333."""
    from matplotlib import pyplot as plt

    from aplkit.results import plots as P

    for seed in range(3):  # certainty trained 16, 16, 15 of 16 labels: 1/3 of a pair fewer on the seed mean
        make_run(tmp_path, "random", seed, {16: 0.5}, trained={16: 16})
        make_run(tmp_path, "certainty", seed, {16: 0.55}, trained={16: 16 - (seed == 2)})
    fig = P.plot_winrate(A.winrate_curves(A.load_runs(tmp_path)))
    title = fig._suptitle.get_text()
    plt.close(fig)
    assert "up to 0.333 fewer pairs trained" in title and "0.333333" not in title


def test_table2_ties_mark_every_best_and_tasks_split(tmp_path):
    for seed in range(2):
        make_run(tmp_path, "random", seed, {16: 0.6})
        make_run(tmp_path, "certainty", seed, {16: 0.6})
        make_run(tmp_path, "random", seed, {16: 0.5}, task="tldr")
        make_run(tmp_path, "certainty", seed, {16: 0.4}, task="tldr")
    t = A.table2(A.load_runs(tmp_path))
    assert list(t.index) == [("imdb", 16), ("tldr", 16)]
    md = A.to_markdown(t)
    assert "| imdb | 16 | **0.60 ± 0.000** | **0.60 ± 0.000** |" in md
    assert "| tldr | 16 | **0.50 ± 0.000** | 0.40 ± 0.000 |" in md


def test_duplicate_seed_from_mixed_settings_is_refused(runs):
    make_run(runs, "random", 0, {16: 0.9, 32: 0.9}, mode="online")
    df = A.load_runs(runs)
    with pytest.raises(ValueError, match="random.*seed=0.*several runs"):
        A.table2(df)
    main, notes = A.select_main(df)
    assert set(main["mode"]) == {"reset"} and "1 other run(s)" in notes[0]
    assert A.table2(main).loc[16, "random"] == "0.55 ± 0.029"


def test_significance_vs_random_matches_scipy(tmp_path):
    rnd = [0.50, 0.52, 0.55, 0.47, 0.60, 0.58]
    cer = [0.56, 0.55, 0.62, 0.50, 0.61, 0.66]
    for seed, (r, c) in enumerate(zip(rnd, cer, strict=True)):
        make_run(tmp_path, "random", seed, {16: r, 32: r})
        make_run(tmp_path, "certainty", seed, {16: c})
        if seed < 3:
            make_run(tmp_path, "certainty", seed, {32: c}, folder=f"three/{seed}")
    make_run(tmp_path, "entropy", 0, {16: 0.7})
    make_run(tmp_path, "certainty", 99, {16: 0.99})  # no random seed 99: not paired, ignored
    sig = A.significance_vs_random(A.load_runs(tmp_path)).set_index(["strategy", "acquired"])
    d = [c - r for r, c in zip(rnd, cer, strict=True)]  # .06 .03 .07 .03 .01 .08
    row = sig.loc[("certainty", 16)]
    assert row["n"] == 6
    assert row["mean_diff"] == pytest.approx(sum(d) / 6) and row["mean_diff"] == pytest.approx(0.28 / 6)
    assert row["se"] == pytest.approx(statistics.stdev(d) / math.sqrt(6))
    assert row["t_p"] == pytest.approx(stats.ttest_rel(cer, rnd).pvalue)
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(cer, rnd).pvalue)
    three = sig.loc[("certainty", 32)]
    assert three["n"] == 3 and three["t_p"] == pytest.approx(stats.ttest_rel(cer[:3], rnd[:3]).pvalue)
    assert math.isnan(three["wilcoxon_p"])  # fewer than 6 pairs
    one = sig.loc[("entropy", 16)]
    assert one["n"] == 1 and one["mean_diff"] == pytest.approx(0.2) and math.isnan(one["t_p"]) and "n/a" in one["note"]


def test_holm_by_hand():
    # sorted .01 < .03 < .04 → 3·.01 = .03, 2·.03 = .06, max(.06, 1·.04) = .06 (step-down keeps them monotone)
    got = A.holm([0.01, 0.04, float("nan"), 0.03])
    assert got[[0, 1, 3]].tolist() == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(got[2])
    assert A.holm([0.5, 0.6]).tolist() == pytest.approx([1.0, 1.0])  # capped at 1
    assert np.isnan(A.holm([float("nan")])).all() and A.holm([]).size == 0


def test_significance_holm_over_each_tasks_family(tmp_path):
    rnd = {16: [0.50, 0.55, 0.60], 32: [0.60, 0.62, 0.64]}
    cer = {16: [0.56, 0.58, 0.69], 32: [0.70, 0.66, 0.75]}
    ent16 = [0.52, 0.60, 0.61]
    for seed in range(3):
        make_run(tmp_path, "random", seed, {k: v[seed] for k, v in rnd.items()})
        make_run(tmp_path, "certainty", seed, {k: v[seed] for k, v in cer.items()})
        make_run(tmp_path, "entropy", seed, {16: ent16[seed], 32: 0.7} if seed == 0 else {16: ent16[seed]})  # 32: one seed, n/a
        make_run(tmp_path, "random", seed, {16: [0.40, 0.50, 0.45][seed]}, task="tldr")
        make_run(tmp_path, "certainty", seed, {16: [0.50, 0.52, 0.60][seed]}, task="tldr")
    sig = A.significance_vs_random(A.load_runs(tmp_path)).set_index(["task", "strategy", "acquired"])
    p = {
        ("certainty", 16): stats.ttest_rel(cer[16], rnd[16]).pvalue,
        ("certainty", 32): stats.ttest_rel(cer[32], rnd[32]).pvalue,
        ("entropy", 16): stats.ttest_rel(ent16, rnd[16]).pvalue,
    }
    for (s, size), raw in p.items():
        assert sig.loc[("imdb", s, size), "t_p"] == pytest.approx(raw)
    # Holm by hand over imdb's three t-tests (the n/a entropy@32 is not in the family)
    (k1, p1), (k2, p2), (k3, p3) = sorted(p.items(), key=lambda kv: kv[1])
    a1 = min(1.0, 3 * p1)
    a2 = max(a1, min(1.0, 2 * p2))
    a3 = max(a2, min(1.0, p3))
    for k, want in ((k1, a1), (k2, a2), (k3, a3)):
        assert sig.loc[("imdb", *k), "t_p_holm"] == pytest.approx(want)
    assert a1 != pytest.approx(p1)  # the adjustment really changed something
    assert math.isnan(sig.loc[("imdb", "entropy", 32), "t_p_holm"]) and math.isnan(sig.loc[("imdb", "entropy", 32), "t_p"])
    # tldr is its own family of one test: adjusted = raw
    tl = sig.loc[("tldr", "certainty", 16)]
    assert tl["t_p_holm"] == pytest.approx(stats.ttest_rel([0.50, 0.52, 0.60], [0.40, 0.50, 0.45]).pvalue) == pytest.approx(tl["t_p"])
    assert sig["wilcoxon_p_holm"].isna().all()  # n < 6 everywhere: no Wilcoxon test, nothing to adjust

    from aplkit.results.tables import significance_markdown

    md = significance_markdown(sig.reset_index())
    assert "| paired t p | t p (Holm) | Wilcoxon p | Wilcoxon p (Holm) |" in md
    assert "imdb: 3 t-test(s), 0 Wilcoxon test(s); tldr: 1 t-test(s), 0 Wilcoxon test(s)" in md
    assert "same dataset" in md


def test_data_efficiency_on_a_piecewise_linear_curve(tmp_path):
    # random: 16 → .55, 32 → .65, 48 → .60 (a dip), 64 → .75; running max .55 .65 .65 .75
    make_run(tmp_path, "random", 0, {16: 0.55, 32: 0.65, 48: 0.60, 64: 0.75})
    make_run(tmp_path, "certainty", 0, {16: 0.6, 32: 0.70})  # .70 reached between 48 (.65) and 64 (.75): 48 + .5·16 = 56
    make_run(tmp_path, "entropy", 0, {32: 0.62})  # between 16 (.55) and 32 (.65): 16 + .7·16 = 27.2
    make_run(tmp_path, "entropy+certainty", 0, {32: 0.80})  # above random's best
    make_run(tmp_path, "bald", 0, {32: 0.50})  # below random's first point: upper bound 16
    df = A.load_runs(tmp_path)
    eff = A.data_efficiency(df, 32).set_index("strategy")
    assert eff.loc["certainty", "labels_random"] == pytest.approx(56.0)
    assert eff.loc["certainty", "ratio"] == pytest.approx(56 / 32)
    assert eff.loc["entropy", "labels_random"] == pytest.approx(27.2)
    assert eff.loc["random", "ratio"] == pytest.approx(1.0)
    assert math.isinf(eff.loc["entropy+certainty", "ratio"]) and "never reaches" in eff.loc["entropy+certainty", "note"]
    assert eff.loc["bald", "labels_random"] == 16 and "upper bound" in eff.loc["bald", "note"]
    with pytest.raises(ValueError, match="no waypoint at budget=48"):
        A.data_efficiency(df, 48)
    # at 48 random itself is below its earlier best (.60 < .65): its row says the table is unreliable
    dip = A.data_efficiency(df[df["strategy"] == "random"], 48).set_index("strategy")
    assert dip.loc["random", "labels_random"] == pytest.approx(16 + 0.5 * 16) and "not monotone" in dip.loc["random", "note"]
    assert eff.loc["random", "note"] == ""


def test_bt_histogram_by_hand():
    probs = [0.9, 0.9, 0.2, 0.2, 0.5, 0.5, 1.0, 0.0, 0.97, None, 0.51, 0.85, 0.5 + 1e-13, 0.5 - 1e-9, 0.5]
    prefs = [1, 0, 0, 1, 0, 1, 1, 1, None, 1, 1, 0, 1, 1, None]
    edges, inc, cor, no_pred = A.bt_histogram(probs, prefs, bins=10)
    assert len(edges) == 21 and edges[2] == pytest.approx(0.1) and edges[10] == pytest.approx(0.5)
    want_inc = np.zeros(20, int)
    # (.9, y0 won) → 1−.9 = .1 → bin [.1,.15); (.2, y1) → .2 → [.2,.25); (0, y1) → 0 → [0,.05);
    # (.85, y0) → .15 → [.15,.2); (.5 − 1e-9, y1): predicts y0 (barely), wrong → ≈ .5 → last red bin (closed)
    for b in (2, 4, 0, 3, 9):
        want_inc[b] += 1
    want_cor = np.zeros(20, int)
    # (.9, y1) → .9 → [.9,.95); (.2, y0) → .8 → [.8,.85); (1, y1) → 1 → last green (closed); (.51, y1) → [.5,.55)
    for b in (18, 16, 19, 10):
        want_cor[b] += 1
    assert inc.tolist() == want_inc.tolist()
    assert cor.tolist() == want_cor.tolist()
    assert inc[10:].sum() == 0 and cor[:10].sum() == 0
    # (.5, y0), (.5, y1) and (.5 + 1e-13, y1) predict no winner; (.5, None) is a tie/invalid label, not counted here
    assert no_pred == 3
    assert inc.sum() + cor.sum() + no_pred == 12  # 15 pairs − 3 with a null label or bt_prob


def test_bt_histograms_per_strategy_and_step(tmp_path):
    make_run(tmp_path, "certainty", 0, {16: 0.6}, acquired=[(1, 0.9, 0), (1, 0.9, 1), (1, 0.3, None)])
    make_run(tmp_path, "certainty", 1, {16: 0.6}, acquired=[(1, 0.05, 1), (2, 0.6, 1)])
    h = A.bt_histograms(A.load_acquired(tmp_path))
    s1 = h[(h["strategy"] == "certainty") & (h["step"] == 1)]
    assert s1["incorrect"].sum() == 2 and s1["correct"].sum() == 1  # over both seeds
    assert int(s1["n_excluded"].iloc[0]) == 1 and int(s1["n_used"].iloc[0]) == 3 and int(s1["n_no_prediction"].iloc[0]) == 0
    assert s1.loc[s1["bin"] == 1, "incorrect"].item() == 1  # .05 predicted y0 with .95, oracle says y1 → 1 − .95 = .05
    assert s1.loc[s1["bin"] == 2, "incorrect"].item() == 1


def test_step_one_ties_are_no_prediction_not_incorrect(tmp_path):
    # step 1: θ = θ0, every bt_prob is exactly 0.5 — 3 pairs won by y0, 2 by y1, 1 tie label
    step1 = [(1, 0.5, 0), (1, 0.5, 0), (1, 0.5, 0), (1, 0.5, 1), (1, 0.5, 1), (1, 0.5, None)]
    step2 = [(2, 0.7, 1), (2, 0.7, 0), (2, 0.5, 1)]
    make_run(tmp_path, "random", 0, {16: 0.5}, acquired=step1 + step2)
    h = A.bt_histograms(A.load_acquired(tmp_path))
    s1 = h[h["step"] == 1]
    assert s1["incorrect"].sum() == 0 and s1["correct"].sum() == 0  # nothing drawn as "predicts y0"
    assert (int(s1["n_used"].iloc[0]), int(s1["n_no_prediction"].iloc[0]), int(s1["n_excluded"].iloc[0])) == (0, 5, 1)
    s2 = h[h["step"] == 2]
    assert s2["correct"].sum() == 1 and s2["incorrect"].sum() == 1  # (.7, y1) right at .7; (.7, y0) wrong at .3
    assert s2.loc[s2["bin"] == 14, "correct"].item() == 1 and s2.loc[s2["bin"] == 6, "incorrect"].item() == 1
    assert (int(s2["n_used"].iloc[0]), int(s2["n_no_prediction"].iloc[0]), int(s2["n_excluded"].iloc[0])) == (2, 1, 0)
    assert A.bt_left_out(h) == (6, 1)
    note = A.bt_left_out_note(h)
    assert "6 acquired pair(s) with bt_prob = 0.5 make no prediction" in note and "1 acquired pair(s) left out (tie/invalid" in note
    from aplkit.results.plots import bt_panel_caption

    assert bt_panel_caption(s1) == "n=0 (+5 no prediction, +1 tie/invalid)"
    assert bt_panel_caption(s2) == "n=2 (+1 no prediction)"


def test_loss_curves_and_epoch_sweep(tmp_path):
    for seed in range(2):
        make_run(
            tmp_path,
            "random",
            seed,
            {16: 0.5 + 0.1 * seed, 32: 0.6 + 0.1 * seed},
            epochs=3,
            losses={1: [0.7, 0.6 - 0.1 * seed, 0.5], 2: [0.7, 0.5, 0.4]},
        )
        make_run(tmp_path, "random", seed, {16: 0.5, 32: 0.55}, epochs=1, losses={1: [0.7]}, folder=f"short/{seed}")
    loss = A.loss_curves(A.load_train(tmp_path)).set_index(["step", "epoch"])
    assert len(loss) == 6  # only the 3-epoch runs
    assert loss.loc[(1, 2), "loss"] == pytest.approx(0.55) and loss.loc[(1, 2), "n"] == 2
    assert loss.loc[(1, 2), "se"] == pytest.approx(statistics.stdev([0.6, 0.5]) / math.sqrt(2))
    wr = A.winrate_vs_epochs(A.load_runs(tmp_path)).set_index("epochs")
    assert wr.loc[3, "mean"] == pytest.approx(0.65) and wr.loc[3, "acquired"] == 32
    assert wr.loc[1, "mean"] == pytest.approx(0.55)


def test_report_writes_every_file(tmp_path):
    from matplotlib import image

    from aplkit.results.report import report

    runs = tmp_path / "runs"
    acq = [(1, 0.8, 1), (1, 0.3, 1), (1, 0.5, 1), (2, 0.6, 0), (2, 0.5, None)]
    for seed in range(2):
        for s, base, step in (("random", 0.5, 0.01), ("certainty", 0.55, 0.03)):
            make_run(runs, s, seed, {16: base + step * seed, 32: base + 0.1}, acquired=acq, losses={1: [0.7, 0.5], 2: [0.7, 0.4]}, epochs=2)
            make_run(runs, s, seed, {16: base, 32: base + 0.05}, mode="online")
        make_run(runs, "certainty", seed, {32: 0.7}, epochs=4)
    write_consistency(runs, [{"oracle": "gpt-4", "n": 50, "agreement": 0.9, "ci_low": 0.79, "ci_high": 0.96}])
    make_run(runs, "random", 5, {}, folder="crashed")
    written = report(runs, tmp_path / "fig")
    figs = ["fig1_consistency", "fig2_winrate", "fig3_bt_hist", "fig5_online_vs_reset", "fig6_epochs"]
    tables = ["table2.md", "table2.tex", "table2.csv", "metrics.md", "metrics.csv"]
    tables += [
        "significance.csv",
        "significance.md",
        "efficiency.csv",
        "efficiency.md",
        "notes.md",
        "ranking.csv",
        "ranking.md",
        "cost.csv",
        "cost.md",
        "kl_matched.csv",
        "kl_matched.md",
    ]
    assert set(written) == {f"{f}.{ext}" for f in [*figs, "ranking"] for ext in ("png", "pdf")} | set(tables)
    for name, path in written.items():
        assert path.exists() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            img = image.imread(path)
            assert img.shape[0] > 300 and img.shape[1] > 300 and img[..., :3].std() > 0.01, name
        if name.endswith(".pdf"):
            assert path.read_bytes()[:4] == b"%PDF"
    notes = written["notes.md"].read_text()
    assert "skipped (no eval rows): crashed" in notes and "tie/invalid" in notes
    # each of the 4 main-setting runs (reset, 2 epochs) has one labelled bt_prob = 0.5 pair and one tie/invalid label
    assert "Fig 3 imdb: 4 acquired pair(s) with bt_prob = 0.5 make no prediction" in notes
    assert "4 acquired pair(s) left out (tie/invalid label or no bt_prob)" in notes
    sig = pd.read_csv(written["significance.csv"]).set_index("acquired")
    assert sig.loc[32, "mean_diff"] == pytest.approx(0.05) and "identical differences" in sig.loc[32, "note"]  # .65 − .60 for both seeds
    assert sig.loc[16, "t_p"] == pytest.approx(stats.ttest_rel([0.55, 0.58], [0.5, 0.51]).pvalue)
    assert "**0.65 ± 0.000**" in written["table2.md"].read_text()  # main setting (reset, 2 epochs): certainty .65 both seeds


def test_report_rewrites_the_same_bytes_for_the_same_runs(tmp_path, monkeypatch):
    """Re-running the report (make demo) on unchanged runs leaves committed figures untouched: no dates, no versions inside."""
    from aplkit.results.report import report

    runs = tmp_path / "runs"
    for seed in range(2):
        for s, base in (("random", 0.5), ("certainty", 0.55)):
            make_run(runs, s, seed, {16: base, 32: base + 0.1}, acquired=[(1, 0.8, 1), (2, 0.6, 0)], losses={1: [0.7, 0.5]}, epochs=2)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # two saves at different times (matplotlib's clock for PDF dates)
    first = {n: p.read_bytes() for n, p in report(runs, tmp_path / "a").items()}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    second = {n: p.read_bytes() for n, p in report(runs, tmp_path / "b").items()}
    assert any(n.endswith(".pdf") for n in first) and any(n.endswith(".png") for n in first)
    assert first.keys() == second.keys()
    assert [n for n in first if first[n] != second[n]] == []
    for name, data in first.items():
        assert b"CreationDate" not in data and b"Software" not in data, name


def test_results_package_reexports_and_imports_matplotlib_only_for_figures():
    import subprocess
    import sys

    code = (
        "import sys, aplkit.results as R\n"
        "assert 'matplotlib' not in sys.modules, 'the numbers alone must not import matplotlib'\n"
        "from aplkit.results import plots, report\n"
        "for name, module in R._LAZY.items():\n"
        "    assert getattr(R, name) is getattr({'plots': plots, 'report': report}[module], name), name\n"
        "assert callable(report.report) and R.table2 is R.tables.table2 and R.load_runs is R.load.load_runs\n"
        "assert set(R.__all__) <= set(dir(R))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _old_data_efficiency(df: pd.DataFrame, budget: int) -> pd.DataFrame:
    """data_efficiency as it was before it skipped the DataFrame machinery: winrate_curves, then _first_reach."""
    from aplkit.results.stats import _first_reach, not_monotone_note

    rows = []
    for task, g in A.winrate_curves(df).groupby("task", sort=True):
        rnd = g[g["strategy"] == "random"].sort_values("acquired")
        for s in A.strategy_order(g["strategy"]):
            target = float(g.loc[(g["strategy"] == s) & (g["acquired"] == budget), "mean"].iloc[0])
            labels, note = _first_reach(rnd["acquired"].to_numpy(float), rnd["mean"].to_numpy(float), target)
            if s == "random" and labels < budget:
                note = not_monotone_note(budget, target)
            rows.append(
                {
                    "task": task,
                    "strategy": s,
                    "budget": budget,
                    "win_rate": target,
                    "labels_random": labels,
                    "ratio": labels / budget,
                    "note": note,
                }
            )
    return pd.DataFrame(rows, columns=A.EFFICIENCY_COLUMNS)


def _old_efficiency_intervals(df: pd.DataFrame, budget: int, n_resamples: int) -> pd.DataFrame:
    """efficiency_intervals as it was: a DataFrame of the drawn seeds per resample, through data_efficiency."""
    point = _old_data_efficiency(df, budget)
    seeds = np.array(sorted(df["seed"].unique()))
    rng = np.random.default_rng(0)
    draws: dict = {}
    for _ in range(n_resamples):
        pick = rng.choice(seeds, size=len(seeds), replace=True)
        parts = [df[df["seed"] == k].assign(seed=i) for i, k in enumerate(pick)]
        for r in _old_data_efficiency(pd.concat(parts, ignore_index=True), budget).itertuples():
            draws.setdefault((r.task, r.strategy), []).append(r.ratio)
    keys = list(zip(point["task"], point["strategy"], strict=True))
    return point.assign(
        ratio_low=[float(np.quantile(draws[k], 0.025)) for k in keys], ratio_high=[float(np.quantile(draws[k], 0.975)) for k in keys]
    )


def _eval_row(task: str, strategy: str, seed: int, acquired: int, win_rate: float) -> dict:
    """One eval row as ``load_runs`` gives it, for frames built by hand."""
    run = f"{task}/{strategy}/{seed}"
    return {
        "run": run,
        "task": task,
        "strategy": strategy,
        "seed": seed,
        "acquired": acquired,
        "win_rate": win_rate,
        "stderr": 0.05,
        "trained": np.nan,
    }


def test_fast_data_efficiency_and_its_bootstrap_equal_the_frame_based_ones_bit_for_bit():
    """9 seeds (numpy's pairwise sum differs from a plain loop from 8 values on), two tasks, a missing cell, shuffled rows;
    random reaches 1.0 at its last size so no resample gives inf (the old quantile turned inf − inf into NaN)."""
    rng = np.random.default_rng(1)
    rows = []
    for task in ("imdb", "tldr"):
        for s in ("random", "entropy", "certainty", "entropy+certainty"):
            for k in range(9):
                for a in (16, 32, 48, 64):
                    if (task, s, k, a) == ("tldr", "entropy", 3, 32):
                        continue
                    wr = 1.0 if (s == "random" and a == 64) else rng.uniform(0.3, 0.9)
                    rows.append(_eval_row(task, s, k, a, wr))
    df = pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)
    pd.testing.assert_frame_equal(A.data_efficiency(df, 64), _old_data_efficiency(df, 64), check_exact=True)
    pd.testing.assert_frame_equal(A.data_efficiency(df, 32), _old_data_efficiency(df, 32), check_exact=True)
    new = A.efficiency_intervals(df, 48, n_resamples=40)
    pd.testing.assert_frame_equal(new, _old_efficiency_intervals(df, 48, 40), check_exact=True)
    assert new[["ratio_low", "ratio_high"]].notna().all().all()


def test_bootstrap_quantiles_keep_inf_where_numpy_gives_nan():
    with np.errstate(invalid="ignore"):
        assert math.isnan(np.quantile([1.0, 2.0, math.inf, math.inf], 0.975))  # what numpy does
        assert math.isnan(np.quantile([1.0, 2.0, math.inf, math.inf], 1 / 3))  # lands exactly on 2.0, yet NaN
    assert A.quantile_with_inf([1.0, 2.0, math.inf, math.inf], 0.975) == math.inf
    assert A.quantile_with_inf([1.0, 2.0, math.inf, math.inf], 1 / 3) == pytest.approx(2.0)
    assert A.quantile_with_inf([1.0, 2.0, math.inf, math.inf], 0.5) == math.inf  # halfway from 2 to inf
    assert A.quantile_with_inf([1.0, 2.0, 3.0, 5.0], 0.9) == np.quantile([1.0, 2.0, 3.0, 5.0], 0.9)
    assert A.quantile_with_inf([math.inf] * 3, 0.1) == math.inf


def test_efficiency_interval_part_way_through_a_study():
    """Certainty has a seed random does not have yet (shards finish in any order): the bootstrap resamples random's
    seeds, so no resample lacks random (it raised 'no random runs to compare with' on the study's 11 records)."""
    rows = []
    for s, seeds in (("random", (0, 1)), ("certainty", (0, 1, 2))):
        for k in seeds:
            for a, wr in ((16, 0.5), (32, 0.55 + 0.05 * k), (64, 0.6 + 0.05 * k + (0.05 if s == "certainty" else 0.0))):
                rows.append(_eval_row("imdb", s, k, a, wr))
    df = pd.DataFrame(rows)
    out = A.efficiency_intervals(df, 64, n_resamples=200).set_index("strategy")
    assert out.loc["random", "ratio"] == 1.0 and out.loc["random", "ratio_low"] <= 1.0 <= out.loc["random", "ratio_high"]
    assert not math.isnan(out.loc["certainty", "ratio_low"]) and out.loc["certainty", "ratio_low"] <= out.loc["certainty", "ratio_high"]


def test_efficiency_reads_random_on_the_strategys_own_seeds():
    """Entropy ran seeds 0–1, random 0–3: entropy's 0.62 at 64 labels is read on random's curve over seeds 0–1
    (0.5 at 16, 0.6 at 32, 0.7 at 64 → 0.62 at 32 + (0.02 / 0.1)·32 = 38.4 labels), not over all four seeds
    (0.5, 0.5, 0.6 → never reached). Random's own row and certainty (all four seeds) use all of random's."""
    rows = []
    for k in range(4):
        early = k < 2
        for a, wr in ((16, 0.5), (32, 0.6 if early else 0.4), (64, 0.7 if early else 0.5)):
            rows.append(_eval_row("imdb", "random", k, a, wr))
            rows.append(_eval_row("imdb", "certainty", k, a, wr + 0.05))
            if early:
                rows.append(_eval_row("imdb", "entropy", k, a, 0.62 if a == 64 else wr))
    df = pd.DataFrame(rows)
    eff = A.data_efficiency(df, 64).set_index("strategy")
    assert eff.loc["entropy", "labels_random"] == pytest.approx(38.4)
    assert eff.loc["random", "labels_random"] == 64.0 and eff.loc["certainty", "labels_random"] == math.inf
    boot = A.efficiency_intervals(df, 64, n_resamples=200).set_index("strategy")
    assert boot.loc["entropy", "ratio"] == pytest.approx(0.6)
    assert math.isfinite(boot.loc["entropy", "ratio_low"])  # every resample reads entropy against its own seeds


def test_value_at_kl_reads_the_first_crossing_through_theta0():
    from aplkit.results.compare import value_at_kl

    assert value_at_kl([0.6, 1.0], [0.58, 0.66], 0.3) == pytest.approx(0.54)  # on the segment from θ0's (0, 0.5)
    assert value_at_kl([0.5, 2.0], [0.55, 0.70], 1.0) == pytest.approx(0.60)
    assert value_at_kl([0.5, 1.5, 1.0], [0.55, 0.75, 0.60], 1.0) == pytest.approx(0.65)  # first crossing, not the end
    assert value_at_kl([0.5, 1.0], [0.55, 0.60], 1.0) == pytest.approx(0.60)
    assert math.isnan(value_at_kl([0.5, 1.0], [0.55, 0.60], 1.2))  # never drifted that far


def test_kl_matched_pairs_each_seed_at_the_smaller_final_kl(tmp_path):
    """By hand, per seed (κ = the smaller final KL; the other run read on its own curve through (0, 0.5)):
    seed 0: κ 1.0, certainty at 1.0 = 0.55 + (0.5/1.5)·0.15 = 0.60, random ends at 0.60 → 0;
    seed 1: κ 0.8, certainty ends at 0.62, random at 0.8 = 0.52 + (0.4/0.8)·0.06 = 0.55 → +0.07;
    seed 2: κ 0.3, certainty at 0.3 = 0.5 + (0.3/0.6)·0.08 = 0.54 (before its first waypoint), random ends 0.56 → −0.02."""
    runs = {
        ("random", 0): {16: (0.5, 0.55), 32: (1.0, 0.60)},
        ("certainty", 0): {16: (0.5, 0.55), 32: (2.0, 0.70)},
        ("random", 1): {16: (0.4, 0.52), 32: (1.2, 0.58)},
        ("certainty", 1): {16: (0.4, 0.52), 32: (0.8, 0.62)},
        ("random", 2): {16: (0.2, 0.54), 32: (0.3, 0.56)},
        ("certainty", 2): {16: (0.6, 0.58), 32: (1.0, 0.66)},
        # an estimated KL below 0 (sampled completions): certainty's curve never comes back to −0.1, the seed is left out
        ("random", 3): {16: (0.05, 0.51), 32: (-0.1, 0.52)},
        ("certainty", 3): {16: (0.2, 0.53), 32: (0.4, 0.55)},
    }
    for (s, seed), curve in runs.items():
        make_run(tmp_path, s, seed, {a: wr for a, (_, wr) in curve.items()}, metrics={a: {"kl": kl} for a, (kl, _) in curve.items()})
    m = A.kl_matched(A.load_runs(tmp_path))
    assert len(m) == 1
    r = m.iloc[0]
    d = np.array([0.0, 0.07, -0.02])
    assert (r["strategy"], r["acquired"], r["n"]) == ("certainty", 32, 3)
    assert r["mean_diff"] == pytest.approx(d.mean()) and r["kl"] == pytest.approx((1.0 + 0.8 + 0.3) / 3)
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(3))
    assert (r["t_low"], r["t_high"]) == pytest.approx((lo, hi)) and r["verdict"] == "undecided"
    assert r["p_improve"] == pytest.approx((0.5 + 1 + 0) / 3)
    from aplkit.results.report import report

    text = report(tmp_path, tmp_path / "fig")["kl_matched.md"].read_text()
    assert "| imdb | Pref certainty | 3 | 0.70 | +0.017 |" in text


def test_differences_equal_up_to_float_noise_are_not_tested_in_any_table(tmp_path):
    """Every seed moved by 0.08, as floats say it: 0.66 − 0.58 and 0.58 − 0.50 differ in the 17th digit. A t-test of
    that spread would be noise (p ≈ 0); every paired table says n/a and keeps it out of its Holm family."""
    rnd, cer = [0.50, 0.58, 0.52], [0.58, 0.66, 0.60]
    d = np.array(cer) - np.array(rnd)
    assert 0 < np.ptp(d) < 1e-12 and stats.ttest_1samp(d, 0.0).pvalue < 1e-10  # what scipy would report
    assert math.isnan(A.t_pvalue(d)) and A.t_interval(d) == (pytest.approx(0.08), pytest.approx(0.08))
    for seed, (r, c) in enumerate(zip(rnd, cer, strict=True)):
        make_run(tmp_path, "random", seed, {16: r})
        make_run(tmp_path, "certainty", seed, {16: c})
    df = A.load_runs(tmp_path)
    sig = A.significance_vs_random(df).iloc[0]
    assert math.isnan(sig["t_p"]) and math.isnan(sig["t_p_holm"]) and sig["se"] == 0.0 and "identical" in sig["note"]
    rank = A.ranking(A.paired_comparison(df), df).iloc[0]
    assert math.isnan(rank["p"]) and math.isnan(rank["p_holm"])
    against = A.paired_against(df[df["strategy"] == "certainty"].assign(strategy="random"), df[df["strategy"] == "random"])
    assert math.isnan(against.iloc[0]["p"]) and against.iloc[0]["verdict"] == "n/a"


def test_one_engine_gives_every_paired_table_the_same_numbers(tmp_path):
    """significance_vs_random, paired_comparison, paired_against and ranking read the same per-seed differences
    through paired_table: with one strategy at one size, every family holds one test, so all four agree."""
    rnd = [0.50, 0.52, 0.55, 0.47, 0.60, 0.58]
    cer = [0.56, 0.55, 0.62, 0.50, 0.61, 0.66]
    for seed, (r, c) in enumerate(zip(rnd, cer, strict=True)):
        make_run(tmp_path, "random", seed, {16: r}, metrics={16: {"kl": 1.0 + seed / 10}})
        make_run(tmp_path, "certainty", seed, {16: c}, metrics={16: {"kl": 1.5 + seed / 5}})
    df = A.load_runs(tmp_path)
    sig = A.significance_vs_random(df).iloc[0]
    cmp = A.paired_comparison(df).iloc[0]
    rank = A.ranking(A.paired_comparison(df), df).iloc[0]
    cert, base = df[df["strategy"] == "certainty"].assign(strategy="random"), df[df["strategy"] == "random"]
    against = A.paired_against(cert, base).set_index("metric")
    p = stats.ttest_rel(cer, rnd).pvalue
    assert sig["t_p"] == pytest.approx(p) and sig["t_p_holm"] == pytest.approx(p)
    assert rank["p"] == pytest.approx(p) and against.loc["win_rate", "p"] == pytest.approx(p)
    for c in ("mean_diff", "t_low", "t_high", "boot_low", "boot_high"):
        assert cmp[c] == pytest.approx(against.loc["win_rate", c])
    assert rank["holm_low"] == pytest.approx(cmp["t_low"]) and rank["holm_verdict"] == cmp["verdict"] == "better"
    # KL rose on every seed: a drift from θ0 is judged neither way (aplkit.metrics), so both tables say higher
    assert against.loc["kl", "verdict"] == "higher" and A.paired_comparison(df, metric="kl").iloc[0]["verdict"] == "higher"


def test_every_metric_names_the_record_fields_it_reads():
    """The metrics registry (aplkit.metrics) is what tables, trackers and compact records read: its fields must
    exist on the records, and every preference metric beyond the win-rate can be recomputed per test prompt."""
    from aplkit.metrics import COMPANION_FIELDS, ENDPOINTS, HEADLINE, HELDOUT_COLUMNS, METRICS, PER_PROMPT_FIELDS
    from aplkit.records import EvalPairRow, EvalRow, HeldOutRow, field_names
    from aplkit.results.tables import METRIC_NAMES
    from aplkit.tracking.metrics import EVAL_FIELDS
    from bench.archive import EVAL_PAIR_KEEP

    evals, pairs = set(field_names(EvalRow)), set(field_names(EvalPairRow))
    assert set(HELDOUT_COLUMNS) <= set(field_names(HeldOutRow))
    rows = {"eval": evals, "heldout": set(HELDOUT_COLUMNS.values())}  # a held-out row's columns as the eval frame names them
    for m in METRICS:
        assert {m.field, m.se, m.theta0} - {None} <= rows[m.row], m.field
        assert m.per_prompt is None or m.per_prompt in pairs, m.field
        assert m is HEADLINE or not m.preference or m.per_prompt, m.field
        assert m.row == "eval" or (m.opt_in and not m.preference), m.field  # shown only where a pool-based run recorded it
    assert set(COMPANION_FIELDS) <= set(EVAL_FIELDS) and set(PER_PROMPT_FIELDS) <= set(EVAL_PAIR_KEEP)
    assert ENDPOINTS == ("win_rate", "soft_win_rate", "heldout_accuracy")
    assert METRIC_NAMES == {
        "win_rate": "win-rate",
        "soft_win_rate": "soft win-rate",
        "reward_gap": "reward gap",
        "kl": "KL along test completions",  # a record's ``kl``: along the T = 0.25 test completions, not the policy's KL
        "kl_t1": "KL from θ0 (T = 1)",
        "lm_loss": "LM loss",
        "heldout_accuracy": "held-out accuracy",
        "heldout_margin": "held-out margin",
    }
    assert all(m.at_theta0 is not None for m in METRICS if m.preference)  # where every frontier starts


# held-out accuracy per strategy → seed at 32 labels (a pool-based run; every run at ½ after 16, as θ0's)
HELD_RANDOM, HELD_CERTAINTY = [0.60, 0.62, 0.58], [0.70, 0.66, 0.71]


def _pool_runs(root, judged=(0,)) -> None:
    """2 strategies × 3 seeds of a pool-based run; seeds in ``judged`` also have a judge of the generations (win-rates)."""
    for s, acc in (("random", HELD_RANDOM), ("certainty", HELD_CERTAINTY)):
        for k in range(3):
            wr = {16: 0.5, 32: 0.60 if s == "random" else 0.64} if k in judged else {}
            make_run(root, s, k, wr, task="preferences", oracle="dataset", heldout={16: (0.5, 0.0), 32: (acc[k], 0.2 + 0.1 * k)})


def test_a_pool_runs_held_out_accuracy_joins_its_waypoints_and_compares_by_hand(tmp_path):
    """heldout.jsonl joins eval.jsonl on the waypoint; a run without a judge of its generations appears with the
    win-rate NaN, and each metric pairs only the seeds that recorded it in both runs."""
    from aplkit.metrics import HELDOUT_COLUMNS

    _pool_runs(tmp_path)
    df = A.load_runs(tmp_path)
    assert len(df) == 12 and df.attrs["skipped"] == [] and list(df.columns[-5:]) == list(HELDOUT_COLUMNS.values())
    at = df.set_index(["strategy", "seed", "acquired"])
    assert at.loc[("certainty", 0, 32), ["win_rate", "heldout_accuracy", "heldout_n", "trained"]].tolist() == [0.64, 0.70, 64, 32]
    r = at.loc[("certainty", 2, 32)]  # held-out rows only: no eval row, trained from the held-out row
    assert math.isnan(r["win_rate"]) and pd.isna(r["n"]) and (r["heldout_accuracy"], r["heldout_margin"], r["trained"]) == (0.71, 0.4, 32)
    assert r["heldout_stderr"] == pytest.approx(math.sqrt(0.71 * 0.29 / 64))
    # held-out accuracy: differences 0.10, 0.04, 0.13 → mean 0.09, sd √(0.0042/2), t(0.975, 2) = 4.302653
    cmp = A.paired_comparison(df, metric="heldout_accuracy").set_index("acquired")
    sd = math.sqrt(0.0042 / 2)
    assert cmp.loc[32, "n"] == 3 and cmp.loc[32, "mean_diff"] == pytest.approx(0.09) and cmp.loc[32, "sd"] == pytest.approx(sd)
    assert cmp.loc[32, "t_low"] == pytest.approx(0.09 - 4.302653 * sd / math.sqrt(3), abs=1e-6)
    assert cmp.loc[32, "seeds_80"] == A.seeds_for_power(sd, 0.05) and cmp.loc[32, "metric"] == "heldout_accuracy"
    assert cmp.loc[16, "mean_diff"] == 0.0 and cmp.loc[16, "verdict"] == "undecided"  # every run at ½: no difference
    # the win-rate: only seed 0 was judged in both runs → one pair, nothing to test
    wr = A.paired_comparison(df).set_index("acquired").loc[32]
    assert wr["n"] == 1 and wr["mean_diff"] == pytest.approx(0.04) and math.isnan(wr["t_low"]) and wr["verdict"] == "n/a"
    sig = A.significance_vs_random(df, "heldout_accuracy").set_index("acquired").loc[32]
    assert sig["t_p"] == pytest.approx(stats.ttest_rel(HELD_CERTAINTY, HELD_RANDOM).pvalue)
    prec = A.precision(A.paired_comparison(df, metric="heldout_accuracy"), 0.03, metric="heldout_accuracy").iloc[0]
    assert prec["half_width"] == pytest.approx(4.302653 * sd / math.sqrt(3), abs=1e-6) and not prec["within"]
    # the companions table keeps the unjudged waypoints: held-out accuracy 0.69 ± SE over seeds for certainty at 32
    row = A.companion_metrics(df).set_index(["acquired", "strategy"]).loc[(32, "certainty")]
    assert row["heldout_accuracy"] == pytest.approx(0.69) and row["win_rate"] == 0.64 and row["win_rate_n"] == 1
    assert row["heldout_accuracy_se"] == pytest.approx(statistics.stdev(HELD_CERTAINTY) / math.sqrt(3))


def test_an_on_policy_runs_frame_has_the_held_out_columns_all_nan(runs):
    from aplkit.metrics import HELDOUT_COLUMNS, shown
    from aplkit.records import EvalRow, field_names

    df = A.load_runs(runs)
    assert list(df.columns) == [*A.IDENTITY, *field_names(EvalRow), *HELDOUT_COLUMNS.values()]
    assert df[list(HELDOUT_COLUMNS.values())].isna().all().all() and len(df) == 14
    assert A.paired_comparison(df, metric="heldout_accuracy").empty and A.significance_vs_random(df, "heldout_accuracy").empty
    assert "heldout_accuracy" not in {m.field for m in shown(df)}  # opt-in: no table of on-policy runs shows it
    assert "heldout_accuracy" not in A.companion_metrics(df).columns


def test_the_companions_footnote_of_a_study_without_a_judge_counts_its_seeds_and_names_the_held_out_pairs(tmp_path):
    _pool_runs(tmp_path, judged=())
    md = A.metrics_markdown(A.companion_metrics(A.load_runs(tmp_path)))
    assert "Mean ± standard error over seeds (n = 3)" in md
    assert "the held-out accuracy and held-out margin from the pool's held-out pairs" in md
