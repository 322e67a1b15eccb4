"""bench apl-objectives: a training objective against DPO inside the APL loop, paired by strategy, seed and labels.

The paired table is checked by hand on synthetic runs and records (nothing trained); one tiny-random run of the
study shows where its record lands and that ``--report-only`` pairs it with the DPO study's record of that seed.
"""

from __future__ import annotations

import json
import math

import pytest

from aplkit.checks import load_config
from aplkit.results import against_markdown, load_runs, paired_against
from bench import apl_objectives, labels
from bench.archive import read_record, write_record
from tests.synthetic_runs import make_run

T2_975 = 4.302653  # Student t, 2 degrees of freedom, 97.5 % quantile

# per (strategy, size): the objective's win-rate − DPO's on seeds 0, 1, 2 (DPO's own curve is the same on every seed)
DPO_WR = {16: 0.50, 32: 0.58}
WR_DIFF = {
    ("random", 16): [0.00, 0.04, 0.02],
    ("random", 32): [0.10, 0.06, 0.08],
    ("certainty", 16): [0.02, 0.02, 0.04],
    ("certainty", 32): [-0.04, 0.00, -0.02],
}
KL_DIFF = [0.99, 1.00, 1.01]  # every cell: the objective drifts further from θ0
LM_DIFF = [-0.20, -0.21, -0.19]  # every cell: its LM loss is lower


def t2_p(t: float) -> float:
    """Two-sided p of Student's t with 2 degrees of freedom (closed form)."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def t2_quantile(q: float) -> float:
    """Student t quantile, 2 degrees of freedom (closed form)."""
    return (2 * q - 1) / math.sqrt(2 * q * (1 - q))


def _values(arm: str, strategy: str, seed: int) -> tuple[dict[int, float], dict[int, dict[str, float]]]:
    """(win-rates, companions) by size of one run; the objective's are DPO's plus the differences above."""
    wr, metrics = {}, {}
    for size in (16, 32):
        diff = arm != "dpo"
        wr[size] = round(DPO_WR[size] + (WR_DIFF[(strategy, size)][seed] if diff else 0.0), 10)
        metrics[size] = {"kl": 0.5 + (KL_DIFF[seed] if diff else 0.0), "lm_loss": 3.0 + (LM_DIFF[seed] if diff else 0.0)}
    return wr, metrics


def _make(root, arm: str, strategy: str, seed: int, cfg=None):
    wr, metrics = _values(arm, strategy, seed)
    return make_run(root, strategy, seed, wr, folder=f"{strategy}/seed{seed}", cfg=cfg, metrics=metrics)


def test_paired_against_by_hand(tmp_path):
    """Differences, t/bootstrap/Holm intervals and verdicts of objective − DPO, per metric, size and strategy."""
    for k in range(3):
        for s in ("random", "certainty"):
            _make(tmp_path / "cond", "conditional", s, k)
            _make(tmp_path / "dpo", "dpo", s, k)
    make_run(tmp_path / "cond", "random", 3, {16: 0.9, 32: 0.9}, folder="random/seed3")  # no DPO run of seed 3: unpaired
    make_run(tmp_path / "dpo", "entropy", 0, {16: 0.1, 32: 0.1}, folder="entropy/seed0")  # no objective run: no row
    cmp = paired_against(load_runs(tmp_path / "cond"), load_runs(tmp_path / "dpo"))
    assert len(cmp) == 12 and set(cmp["n"]) == {3} and set(cmp["strategy"]) == {"random", "certainty"}
    row = {(r["metric"], r["strategy"], r["acquired"]): r for r in cmp.to_dict("records")}

    # win-rate, random at 32: +0.10, +0.06, +0.08 → 0.08 ± 4.303 · 0.02/√3 = [+0.030, +0.130], off 0 ...
    r = row[("win_rate", "random", 32)]
    se = 0.02 / math.sqrt(3)
    assert r["mean_diff"] == pytest.approx(0.08) and r["sd"] == pytest.approx(0.02)
    assert (r["t_low"], r["t_high"]) == pytest.approx((0.08 - T2_975 * se, 0.08 + T2_975 * se), abs=1e-6)
    assert 0.06 - 1e-9 <= r["boot_low"] < 0.08 < r["boot_high"] <= 0.10 + 1e-9  # within the range of the three differences
    # ... but one of four tests: p = 1 − 4√3/√50 is the smallest of the family (t = 4√3, √3, 4, −√3), Holm × 4
    p = [t2_p(4 * math.sqrt(3)), t2_p(math.sqrt(3)), t2_p(4.0), t2_p(math.sqrt(3))]
    assert r["p"] == pytest.approx(p[0], rel=1e-6) and r["p_holm"] == pytest.approx(4 * p[0], rel=1e-6)
    half = t2_quantile(1 - 0.05 / 4 / 2) * se  # the interval at level 1 − α/4 holds 0: undecided
    assert (r["holm_low"], r["holm_high"]) == pytest.approx((0.08 - half, 0.08 + half), abs=1e-6)
    assert r["holm_low"] < 0 < r["holm_high"] and r["verdict"] == "undecided"
    # certainty at 16: +0.02, +0.02, +0.04 → t = 4 (p × 3); the two at t = ±√3 share Holm's last step: 2 · p
    assert row[("win_rate", "certainty", 16)]["p_holm"] == pytest.approx(3 * p[2], rel=1e-6)
    assert row[("win_rate", "certainty", 32)]["mean_diff"] == pytest.approx(-0.02)
    assert row[("win_rate", "certainty", 32)]["p_holm"] == pytest.approx(2 * p[1], rel=1e-6)
    assert row[("win_rate", "random", 16)]["p_holm"] == pytest.approx(2 * p[1], rel=1e-6)

    # KL: +1 ± 0.01 everywhere (t = 100√3): the family's four equal p's all adjust to 4p; a drift is
    # judged neither way, so the verdict says higher (not worse)
    for s in ("random", "certainty"):
        for size in (16, 32):
            k, lm = row[("kl", s, size)], row[("lm_loss", s, size)]
            assert k["mean_diff"] == pytest.approx(1.0) and k["p_holm"] == pytest.approx(4 * t2_p(100 * math.sqrt(3)), rel=1e-4)
            assert k["verdict"] == "higher"
            # LM loss −0.2 ± 0.01 (t = −20√3): lower is better
            assert lm["mean_diff"] == pytest.approx(-0.2) and lm["holm_high"] < 0 and lm["verdict"] == "better"

    md = against_markdown(cmp, "conditional")
    assert "| win-rate | imdb | 32 | Random | 3 | +0.080 | [+0.030, +0.130] |" in md and "| undecided |" in md
    assert "conditional − DPO" in md and "| KL along test completions | imdb | 16 | Pref certainty | 3 | +1.000 |" in md
    assert "(higher win-rate, lower LM loss; KL along test completions reads higher / lower, judged neither way)" in md


def test_distinct_cells_count_the_first_budget_of_both_strategies_once(tmp_path, monkeypatch):
    """Certainty's first step takes random's draw, so at 16 labels both strategies' runs, and their differences, are
    the same: with ``distinct`` that hypothesis enters the Holm family once (3 win-rate tests, not 4), its rows alike."""
    import tests.test_apl_objectives as me

    monkeypatch.setitem(me.WR_DIFF, ("random", 16), me.WR_DIFF[("certainty", 16)])  # +0.02, +0.02, +0.04 on both
    for k in range(3):
        for s in ("random", "certainty"):
            _make(tmp_path / "cond", "conditional", s, k)
            _make(tmp_path / "dpo", "dpo", s, k)
    cond, dpo = load_runs(tmp_path / "cond"), load_runs(tmp_path / "dpo")
    p0, p2, p1 = t2_p(4 * math.sqrt(3)), t2_p(4.0), t2_p(math.sqrt(3))  # random 32, both at 16, certainty 32
    row = lambda t, s, n: t[(t["metric"] == "win_rate") & (t["strategy"] == s) & (t["acquired"] == n)].iloc[0]  # noqa: E731
    every = paired_against(cond, dpo)
    assert row(every, "random", 32)["p_holm"] == pytest.approx(4 * p0, rel=1e-6)
    assert row(every, "certainty", 16)["p_holm"] == pytest.approx(3 * p2, rel=1e-6)  # counted twice: × 3, then × 3
    once = paired_against(cond, dpo, distinct=True)
    assert row(once, "random", 32)["p_holm"] == pytest.approx(3 * p0, rel=1e-6)
    assert row(once, "random", 16)["p_holm"] == row(once, "certainty", 16)["p_holm"] == pytest.approx(2 * p2, rel=1e-6)
    assert row(once, "certainty", 32)["p_holm"] == pytest.approx(max(2 * p2, p1), rel=1e-6)
    order = ["task", "metric", "strategy", "acquired"]
    assert once[order].values.tolist() == every[order].values.tolist()  # the same rows in the same order
    assert row(once, "certainty", 16)["mean_diff"] == row(once, "random", 16)["mean_diff"] == pytest.approx(0.08 / 3)


def test_one_seed_has_no_interval_and_no_verdict(tmp_path):
    _make(tmp_path / "cond", "conditional", "random", 0)
    _make(tmp_path / "dpo", "dpo", "random", 0)
    cmp = paired_against(load_runs(tmp_path / "cond"), load_runs(tmp_path / "dpo"), metrics=("win_rate",))
    assert list(cmp["acquired"]) == [16, 32] and list(cmp["n"]) == [1, 1]
    assert cmp["mean_diff"].tolist() == pytest.approx([0.0, 0.10])
    assert cmp["t_low"].isna().all() and cmp["p_holm"].isna().all() and set(cmp["verdict"]) == {"n/a"}


SETS = ["acquisition.budget=32"]
PLAN = ["--strategies", "random,certainty", "--seeds", "3", "--set", SETS[0]]


def test_report_pairs_the_objectives_records_with_the_dpo_studys_own(tmp_path):
    """Records as the two studies commit them; a DPO record of another config is not the study's: its pair waits."""
    root = tmp_path / "records"
    for k in range(3):
        for s in ("random", "certainty"):
            dpo_sets = [*SETS, "training.lr=1e-5"] if (s, k) == ("certainty", 2) else SETS
            dpo = load_config("imdb-cpu", dpo_sets, strategy=s, seed=k)
            cond = load_config("imdb-cpu", [*SETS, "training.objective=conditional"], strategy=s, seed=k)
            write_record(_make(tmp_path / "runs" / "dpo", "dpo", s, k, cfg=dpo), labels.record_path(root / "imdb-cpu", s, k))
            write_record(
                _make(tmp_path / "runs" / "c", "conditional", s, k, cfg=cond), labels.record_path(root / "imdb-cpu-conditional", s, k)
            )
    with pytest.raises(SystemExit, match=r"DPO: 5 of the plan's 6 runs are recorded \(not yet: certainty seed 2\).*--interim"):
        apl_objectives.main(["--report-only", *PLAN, "--records-root", str(root)])  # read once: the plan is not all in
    assert not (root / "imdb-cpu-conditional" / "comparison.json").exists()
    assert apl_objectives.main(["--report-only", "--interim", *PLAN, "--records-root", str(root)]) == 0
    doc = json.loads((root / "imdb-cpu-conditional" / "comparison.json").read_text())
    assert doc["interim"].startswith("DPO: 5 of the plan's 6 runs") and doc["markdown"].startswith("**Interim, not the plan's reading**")
    assert doc["objective"] == "conditional" and doc["pairs"] == 5 and doc["config"]["training"]["objective"] == "conditional"
    row = {(r["metric"], r["strategy"], r["acquired"]): r for r in doc["comparison"]}
    assert row[("win_rate", "random", 32)]["n"] == 3 and row[("win_rate", "random", 32)]["mean_diff"] == pytest.approx(0.08)
    c32 = row[("win_rate", "certainty", 32)]  # seeds 0, 1: −0.04, 0 → −0.02 ± 12.706 · 0.02 (sd 0.04/√2, SE sd/√2)
    assert c32["n"] == 2 and c32["mean_diff"] == pytest.approx(-0.02)
    c16 = row[("win_rate", "certainty", 16)]  # seeds 0, 1: +0.02 twice: no spread, nothing to test
    assert c16["n"] == 2 and c16["p"] is None and c16["verdict"] == "n/a"
    assert [r["metric"] for r in doc["comparison"]] == ["win_rate"] * 4 + ["kl"] * 4 + ["lm_loss"] * 4
    assert c32["t_high"] == pytest.approx(-0.02 + 12.706205 * 0.02, abs=1e-5)
    md = (root / "imdb-cpu-conditional" / "comparison.md").read_text()
    assert "5 paired runs of 6 planned" in md and "No DPO record yet for: certainty seed 2." in md
    assert md == doc["markdown"] and "| win-rate | imdb | 32 | Pref certainty | 2 | -0.020 |" in md
    assert "Holm over distinct cells" not in md
    assert apl_objectives.main(["--report-only", "--interim", *PLAN, "--records-root", str(root), "--distinct-cells"]) == 0
    again = json.loads((root / "imdb-cpu-conditional" / "comparison.json").read_text())
    assert "Holm over distinct cells: a cell identical to another strategy's at its size is counted once." in again["markdown"]
    assert again["comparison"] == doc["comparison"]  # no two cells alike here (random has seed 2, certainty not)


def test_bad_objectives_fail_in_one_line_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setattr("aplkit.loop.run_experiment", lambda *a, **k: pytest.fail("no run may start"))
    base = ["--records-root", str(tmp_path), "--out", str(tmp_path / "o")]
    for argv, msg in [
        (["--objectives", "dpo"], "--objectives: dpo is the baseline"),
        (["--objectives", "conditional,nosuch"], "--objectives: unknown objective 'nosuch'"),
        (["--set", "training.objective=rwr"], "--set training.objective:"),
        (["--set", "training.lora.enabled=true"], "training.lora.enabled: conditional training"),
        (["--set", "training.phf.alpha=-1"], "training.phf.alpha"),
    ]:
        with pytest.raises(SystemExit, match=msg):
            apl_objectives.main([*argv, *base])


def test_tiny_run_lands_in_its_own_records_and_pairs_with_the_dpo_record(tmp_path, monkeypatch):
    """bench apl-objectives end to end on the tiny model (1 seed, random, 4 labels), then --report-only against a
    DPO record of the same seed as the labels study would have committed it."""
    from tests.test_loop import TINY

    tiny = [*TINY, "acquisition.budget=4", "evaluation.waypoints=[4]", "training.epochs=1"]
    root = tmp_path / "records"
    argv = ["--strategies", "random", "--seeds", "1", "--records-root", str(root), "--out", str(tmp_path / "runs")]
    argv += [a for s in tiny for a in ("--set", s)]
    assert apl_objectives.main(argv) == 0
    path = root / "imdb-cpu-conditional" / "random" / "seed0.json"
    rec = read_record(path)
    assert rec["config"]["training"]["objective"] == "conditional" and rec["summary"]["complete"]
    assert not (root / "imdb-cpu").exists()  # the DPO study's folder is only read
    assert not (root / "imdb-cpu-conditional" / "comparison.json").exists()  # its DPO pair is not recorded: no reading yet
    [ev] = rec["eval"]
    assert ev["acquired"] == 4 and ev["kl"] is not None and ev["lm_loss"] is not None

    dpo = load_config("imdb-cpu", tiny, strategy="random", seed=0)
    run = make_run(tmp_path / "dpo-runs", "random", 0, {4: 0.25}, folder="random/seed0", cfg=dpo, metrics={4: {"kl": 0.0, "lm_loss": 9.0}})
    write_record(run, labels.record_path(root / "imdb-cpu", "random", 0))
    monkeypatch.setattr("aplkit.loop.run_experiment", lambda *a, **k: pytest.fail("recorded: nothing runs again"))
    assert apl_objectives.main(argv) == 0  # resumes: the recorded run is skipped
    assert apl_objectives.main(["--report-only", *argv]) == 0
    doc = json.loads((root / "imdb-cpu-conditional" / "comparison.json").read_text())
    assert doc["interim"] is None and not doc["markdown"].startswith("**Interim")
    got = {r["metric"]: r for r in doc["comparison"]}
    assert doc["pairs"] == 1 and set(got) == {"win_rate", "kl", "lm_loss"}
    assert got["win_rate"]["mean_diff"] == pytest.approx(ev["win_rate"] - 0.25)
    assert got["kl"]["mean_diff"] == pytest.approx(ev["kl"]) and got["lm_loss"]["mean_diff"] == pytest.approx(ev["lm_loss"] - 9.0)
    assert all(r["acquired"] == 4 and r["n"] == 1 and r["verdict"] == "n/a" for r in got.values())


def test_apl_objectives_is_a_bench_command(monkeypatch):
    from bench.__main__ import main

    seen = []
    monkeypatch.setattr(apl_objectives, "main", lambda argv: seen.append(argv) or 0)
    assert main(["apl-objectives", "--report-only"]) == 0 and seen == [["--report-only"]]
