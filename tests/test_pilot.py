"""The pilot's maths (bench.spread) against hand values, and what it rests on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aplkit.acquisition import acquire, get_scorer
from aplkit.config import AcquisitionConfig
from aplkit.results.compare import seeds_for_halfwidth
from bench.spread import metrics_at, spread
from tests.test_acquisition import ControlledContext, _world


def _pairs(strategy, seed, group, verdicts, step=4):
    """verdicts: list of (preferred, tie, p_policy, gap) in test order."""
    return [
        {
            "group": group,
            "strategy": strategy,
            "seed": seed,
            "step": step,
            "prompt_id": f"t{i}",
            "preferred": p,
            "tie": t,
            "p_policy": q,
            "reward_gap": g,
        }
        for i, (p, t, q, g) in enumerate(verdicts)
    ]


def test_metrics_on_the_first_n_prompts_by_hand():
    rows = _pairs("certainty", 0, "S/M=4", [(1, False, 0.9, 1.0), (None, True, 0.5, 0.0), (0, False, 0.2, -2.0), (1, False, 0.7, 3.0)])
    df = pd.DataFrame(rows)
    m2 = metrics_at(df, 2).iloc[0]
    assert (
        m2["win_rate"] == pytest.approx((1 + 0.5) / 2)
        and m2["soft_win_rate"] == pytest.approx(0.7)
        and m2["reward_gap"] == pytest.approx(0.5)
    )
    m4 = metrics_at(df, 4).iloc[0]
    assert m4["win_rate"] == pytest.approx(2.5 / 4) and m4["reward_gap"] == pytest.approx(0.5)
    # an invalid verdict (no preference, no tie) is excluded from the win-rate, as evaluation.win_rate does
    bad = pd.DataFrame(_pairs("random", 0, "*", [(1, False, 0.6, 0.1), (None, False, None, None)]))
    assert metrics_at(bad, 2).iloc[0]["win_rate"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fewer than 5 test prompts"):
        metrics_at(df, 5)


def test_spread_pairs_by_seed_against_the_shared_random_runs():
    rows = []
    # random (shared group "*"): seed 0 wins 1 of 2, seed 1 wins 0 of 2, seed 2 wins 2 of 2
    for k, wins in enumerate([(1, 0), (0, 0), (1, 1)]):
        rows += _pairs("random", k, "*", [(w, False, 0.5, 0.0) for w in wins])
    # certainty at S/M=16 wins 2, 1, 2 of 2 → differences 0.5, 0.5, 0.0
    for k, wins in enumerate([(1, 1), (1, 0), (1, 1)]):
        rows += _pairs("certainty", k, "S/M=16", [(w, False, 0.5, 0.0) for w in wins])
    t = spread(pd.DataFrame(rows), [2])
    r = t[(t["metric"] == "win_rate")].iloc[0]
    d = np.array([0.5, 0.5, 0.0])
    assert r["group"] == "S/M=16" and r["seeds"] == 3
    assert r["mean_diff"] == pytest.approx(d.mean()) and r["sd_diff"] == pytest.approx(d.std(ddof=1))
    assert r["half_width"] == pytest.approx(stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3))
    assert r["snr"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert math.isnan(t[t["metric"] == "reward_gap"].iloc[0]["seeds_for_half_width"])  # another scale


def test_seeds_for_half_width_is_the_smallest_k():
    k = seeds_for_halfwidth(0.05, 0.03)
    hw = lambda n: stats.t.ppf(0.975, n - 1) * 0.05 / math.sqrt(n)  # noqa: E731
    assert hw(k) <= 0.03 < hw(k - 1)
    assert k == 14


def test_random_draws_do_not_depend_on_S():
    """The pilot shares random's runs across S/M: random draws M prompts whatever S is."""
    prompts, samples, lp_pol, lp_ref = _world(n_prompts=40)
    pool = list(prompts)
    got = []
    for s in (8, 32):
        ctx = ControlledContext(AcquisitionConfig(prompt_batch=s, acquire_batch=4), samples, lp_pol, lp_ref, seed=11)
        got.append([c.prompt.id for c in acquire(get_scorer("random"), ctx, pool)])
    assert got[0] == got[1]


def test_records_keep_each_test_prompts_verdict_without_its_texts(tmp_path):
    """The pilot recomputes metrics from committed records: eval_pairs survive export and materialise, texts do not."""
    import json

    from aplkit.records import EvalPairRow
    from aplkit.runfolder import CONFIG, SUMMARY, RunFolder
    from bench.archive import materialise, read_record, write_record

    run = RunFolder(tmp_path / "run").ensure()
    (run / CONFIG).write_text("name: t\nstrategy: random\nseed: 3\n")
    run.write_json(SUMMARY, {"complete": True})
    run.add(
        EvalPairRow(
            step=1,
            prompt_id="t0",
            prompt="secret prompt",
            baseline="b",
            policy="p",
            preferred=1,
            tie=False,
            p_policy=0.8,
            reward_gap=0.4,
            kl=1.5,
            kl_t1=1.2,
        )
    )
    rec_path = write_record(run.path, tmp_path / "rec.json")
    assert "secret prompt" not in rec_path.read_text()
    rec = read_record(rec_path)
    assert rec["eval_pairs"] == [
        {"step": 1, "prompt_id": "t0", "preferred": 1, "tie": False, "p_policy": 0.8, "reward_gap": 0.4, "kl": 1.5, "kl_t1": 1.2}
    ]
    back = RunFolder(materialise([rec_path], tmp_path / "m") / "t" / "random" / "seed3").read(EvalPairRow)
    assert back[0].p_policy == 0.8 and back[0].prompt is None
    # a record written before eval_pairs were kept still reads
    raw = json.loads(rec_path.read_text())
    del raw["eval_pairs"]
    rec_path.write_text(json.dumps(raw))
    assert read_record(rec_path)["eval_pairs"] == []


def _record(path, lora: bool, seed: int, win: float, train_s: list[float], pairs=()):
    import json

    head = {
        "format": 1,
        "summary": {"complete": True},
        "config": {"strategy": "random", "seed": seed, "training": {"lora": {"enabled": lora}}},
    }
    body = {"eval": [{"win_rate": win}], "steps": [{"train_s": t} for t in train_s], "eval_pairs": list(pairs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"head": head, **body}))


def test_lora_is_paired_with_full_fine_tuning_by_seed_and_kept_out_of_the_spread(tmp_path):
    from bench.pilot import load_pairs, lora_markdown, lora_rows

    pair = {"step": 4, "prompt_id": "p", "preferred": 1, "tie": False, "p_policy": 0.6, "reward_gap": 0.1, "kl": 0.0}
    _record(tmp_path / "random" / "seed1.json", False, 1, 0.60, [10, 20], [pair])
    _record(tmp_path / "random" / "seed2.json", False, 2, 0.50, [10, 30], [pair])
    _record(tmp_path / "random-lora" / "seed1.json", True, 1, 0.58, [5, 10], [pair])
    _record(tmp_path / "random-lora" / "seed2.json", True, 2, 0.54, [5, 15], [pair])
    rows = lora_rows(tmp_path)
    assert [(r["seed"], r["win_lora"] - r["win_full"]) for r in rows] == [(1, pytest.approx(-0.02)), (2, pytest.approx(0.04))]
    md = lora_markdown(tmp_path)
    assert "Mean Δ +0.010" in md and "training 2.00× faster" in md  # (30 + 40) / (15 + 20)
    assert set(load_pairs(tmp_path)["seed"]) == {1, 2} and len(load_pairs(tmp_path)) == 2  # LoRA runs are not random's control


def test_study_cost_by_hand_and_groups_sorted_as_numbers():
    from bench.spread import study_cost

    table = pd.DataFrame(
        [
            {"group": "S/M=16", "test_prompts": 256, "metric": "win_rate", "seeds_for_half_width": 10.0},
            {"group": "S/M=16", "test_prompts": 256, "metric": "soft_win_rate", "seeds_for_half_width": 4.0},
            {"group": "S/M=4", "test_prompts": 512, "metric": "win_rate", "seeds_for_half_width": math.nan},
        ]
    )
    seconds = {
        "random": {"train": 100.0, "acquire": 10.0, "evaluate": 40.0},
        "certainty-S256": {"train": 100.0, "acquire": 50.0, "evaluate": 40.0},
    }
    cost = study_cost(table, seconds, evaluated_at=512, waypoints=4)
    assert len(cost) == 1  # soft win-rate is not costed; S/M=4's certainty cell has no timing
    r = cost.iloc[0]
    # certainty: 100 + 50 + 4 · 40 · 256/512 = 230; random: 100 + 10 + 80 = 190; pair 420 s × 10 seeds = 4200 s
    assert (r.treatment_s, r.control_s, r.pair_s) == (230.0, 190.0, 420.0)
    assert r.cost_core_h == pytest.approx(4200 / 3600)
    v = [(1, False, 0.6, 0.1), (0, False, 0.4, -0.1)]
    pairs = pd.DataFrame(_pairs("random", 1, "*", v) + _pairs("certainty", 1, "S/M=16", v) + _pairs("certainty", 1, "S/M=4", v))
    assert list(spread(pairs, [2])["group"].drop_duplicates()) == ["S/M=4", "S/M=16"]
