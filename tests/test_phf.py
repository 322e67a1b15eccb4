"""The PHF experiment end to end on tiny-random: every objective fills its run folder; a killed run resumes to the same result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aplkit.objectives import PHF_OBJECTIVES
from aplkit.phf.config import load_phf_config
from aplkit.phf.experiment import run_phf
from aplkit.runfolder import read_jsonl

TINY = [
    "model.spec=tiny-random",
    "data.train_size=200",
    "data.test_size=40",
    "phf.token_budget=400",
    "phf.doc_tokens=40",
    "phf.batch_docs=4",
    "phf.checkpoints=2",
    "phf.unconditional_samples=3",
    "phf.prompted_samples=3",
    "phf.max_new_tokens=6",
    "phf.lm_texts=3",
    "phf.lm_tokens=12",
    "training.lr=1e-3",
    "training.phf.threshold_percentile=40",
    "oracle.sentiment.model=vader",
]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def _cli(out: Path, objective: str, extra: list[str] = ()) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "aplkit.cli",
        "phf",
        "phf-imdb-cpu",
        "--objective",
        objective,
        "--seed",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    for s in [*TINY, *extra]:
        args += ["--set", s]
    return args


def _rows(path: Path, drop=("seconds",)) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(path)]


@pytest.mark.parametrize("objective", PHF_OBJECTIVES)
def test_every_objective_fills_the_run_folder(tmp_path, objective):
    cfg = load_phf_config("phf-imdb-cpu", TINY, objective=objective)
    summary = run_phf(cfg, tmp_path, progress=False)
    assert summary["complete"] and summary["tokens"] >= 400
    segs = list(read_jsonl(tmp_path / "phf_segments.jsonl"))
    docs: dict[int, list[float]] = {}
    for s in segs:
        docs.setdefault(s["doc"], []).append(-s["p_negative"])
    score = {d: sum(r) / len(r) for d, r in docs.items()}  # a review's score: its sentences' mean reward
    # t is the 40th percentile of the training sentences' rewards (filtering: of the reviews' scores), and exactly
    # the sentences with R >= t are good
    t = summary["threshold"]
    scores = list(score.values()) if objective == "filtering" else [-s["p_negative"] for s in segs]
    assert t == pytest.approx(float(np.percentile(scores, 40)))
    assert all(s["good"] == (-s["p_negative"] >= t) for s in segs) and 0 < sum(s["good"] for s in segs) < len(segs)
    ev = list(read_jsonl(tmp_path / "phf_eval.jsonl"))
    steps = summary["steps"]
    assert [e["step"] for e in ev] == [0, (steps + 1) // 2, steps]
    assert ev[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # θ0 (with its control tokens for conditional) against itself
    assert ev[-1]["kl"] > 0 and ev[-1]["lm_loss"] != ev[-1]["lm_loss_theta0"]  # training moved θ
    assert all(0 <= e["misalignment"] <= 1 and 0 <= e["prompted_negative_share"] <= 1 for e in ev)
    train = list(read_jsonl(tmp_path / "phf_train.jsonl"))
    assert [r["step"] for r in train] == list(range(1, steps + 1))
    n_tokens = sum(s["tokens"] for s in segs)
    trained = sum(r["trained_tokens"] for r in train)
    if objective == "filtering":  # exactly the tokens of the reviews scoring t or more, whole
        kept = {d for d, x in score.items() if x >= t}
        assert 0 < len(kept) < len(docs) and trained == sum(s["tokens"] for s in segs if s["doc"] in kept)
    elif objective == "conditional":  # every token, plus one control token per sentence
        assert trained == n_tokens + len(segs)
    else:
        assert trained == n_tokens
    samples = list(read_jsonl(tmp_path / "phf_samples.jsonl"))
    assert len(samples) == 3 * (9 if objective == "conditional" else 6)  # conditional: 3 more under <|bad|> per checkpoint
    if objective == "conditional":
        from aplkit.models import load_tokenizer

        tok = load_tokenizer("tiny-random")
        vocab = len(tok)  # the control tokens are appended after the base vocabulary
        assert not any(t >= vocab for s in samples for t in s["ids"])


def test_conditional_training_rows_begin_with_the_first_segments_own_control_token(tmp_path):
    """Generation is prompted with [EOS, <|good|>] and continues with text; a training row is EOS, then each
    segment after its own control token, so in training too the token after [EOS, <|good|>] is text."""
    from aplkit.objectives.segments import Document, Segment
    from aplkit.phf.experiment import PHFExperiment

    exp = PHFExperiment(load_phf_config("phf-imdb-cpu", TINY, objective="conditional"), tmp_path, progress=False)
    try:
        eos, good, bad = exp.models.tokenizer.eos_token_id, exp.trainer.loss.good_id, exp.trainer.loss.bad_id
        assert exp.measurer.prefix == [eos, good]  # sampling and LM loss: the model as deployed
        t, s1, s2 = exp.threshold, [11, 12, 13], [14, 15]
        doc = Document([Segment(s1, t - 0.1), Segment(s2, t + 0.1)])
        assert exp.trainer.batch([doc], t).input_ids.tolist() == [[eos, bad, *s1, good, *s2]]
        rows = [row for b in exp.batches for row in exp.trainer.batch([r.document() for r in b], t).input_ids.tolist()]
        prompted = [row for row in rows if row[:2] == [eos, good]]
        assert prompted and len(prompted) < len(rows)  # reviews opening with a good sentence, and others
        assert all(row[2] not in (good, bad) for row in prompted)
    finally:
        exp.run_dir.release()


def test_conditional_theta0_is_scored_as_deployed_by_policy_and_reference_alike(tmp_path):
    """At step 0 the conditional policy is θ0: with the control tokens masked in both, its LM loss is θ0's and its KL 0."""
    from aplkit.phf.experiment import PHFExperiment

    exp = PHFExperiment(load_phf_config("phf-imdb-cpu", TINY, objective="conditional"), tmp_path, progress=False)
    try:
        m = exp.measurer
        assert m.lm_loss(exp.models.policy) == pytest.approx(m.lm_loss_theta0(), abs=1e-6)
        row = exp.measure(0)
        assert row.kl == pytest.approx(0.0, abs=1e-6)
    finally:
        exp.run_dir.release()


def test_conditional_runs_measure_samples_under_bad_by_hand(tmp_path):
    """The <|bad|> measurement is the unconditional one from EOS <|bad|>, with the <|good|> samples' seed: at θ0 both
    control tokens sit at the mean embedding, so the two sets are the same samples; once trained they part."""
    from aplkit.generation import sample_ids
    from aplkit.phf.experiment import PHFExperiment
    from aplkit.phf.measure import BAD_KIND
    from aplkit.seeding import derive_seed

    exp = PHFExperiment(load_phf_config("phf-imdb-cpu", TINY, objective="conditional", seed=1), tmp_path, progress=False)
    try:
        m, tok, bad = exp.measurer, exp.models.tokenizer, exp.trainer.loss.bad_id
        assert m.bad_prefix == [tok.eos_token_id, bad]
        for step in (0, 2):
            if step:
                for s in range(1, step + 1):
                    exp.trainer.step([r.document() for r in exp.batches[s - 1]], exp.threshold)
            row, samples = m.compute(step, 0)
            mine = [s for s in samples if s.kind == BAD_KIND]
            ids = sample_ids(
                exp.models.policy, [[tok.eos_token_id, bad]] * 3, tok.pad_token_id, tok.eos_token_id,
                max_new_tokens=6, batch_size=16, seed=derive_seed(1, step, "phf-unconditional"),
            )  # fmt: skip
            assert [s.ids for s in mine] == ids and [s.text for s in mine] == tok.batch_decode(ids, skip_special_tokens=True)
            p = [float(q) for q in m.misalignment([s.text for s in mine])]
            assert [s.p_negative for s in mine] == p
            assert row.misalignment_bad == pytest.approx(np.mean(p)) and row.negative_share_bad == sum(q > 0.5 for q in p) / 3
            assert row.misalignment_bad_stderr == pytest.approx(np.std(p, ddof=1) / np.sqrt(3))
            good = [s.ids for s in samples if s.kind == "unconditional"]
            assert (good == ids) == (step == 0)
    finally:
        exp.run_dir.release()
    mle = PHFExperiment(load_phf_config("phf-imdb-cpu", TINY, objective="mle", seed=1), tmp_path / "mle", progress=False)
    try:
        row, samples = mle.measurer.compute(0, 0)
        assert (
            mle.measurer.bad_prefix is None and row.misalignment_bad is None and {s.kind for s in samples} == {"unconditional", "prompted"}
        )
    finally:
        mle.run_dir.release()


def test_bad_settings_fail_in_one_line_before_loading(tmp_path):
    for extra, field in (
        (["phf.token_budget=-1"], "phf.token_budget"),
        (["training.phf.threshold_percentile=0"], "training.phf.threshold_percentile"),
        (["training.phf.alpha=-2"], "training.phf.alpha"),
    ):
        r = subprocess.run(_cli(tmp_path / "x", "mle", extra), env=_env(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and field in r.stderr
    r = subprocess.run(_cli(tmp_path / "x", "ppo"), env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "training.objective: unknown 'ppo'" in r.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # CLI subprocesses that train
def test_kill_and_resume_matches_uninterrupted(tmp_path):
    """SIGKILL the CLI after the first checkpoint, mid-way to the next; the rerun ends where an uninterrupted run does."""
    extra = ["phf.token_budget=900", "phf.checkpoints=3"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_cli(ref, "awr", extra), env=_env(), check=True, capture_output=True, timeout=600)
    first = [e["step"] for e in read_jsonl(ref / "phf_eval.jsonl")][1]
    proc = subprocess.Popen(_cli(cut, "awr", extra), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if any(r["step"] > first for r in read_jsonl(cut / "phf_train.jsonl")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (cut / "checkpoint" / "state.pt").exists()
    subprocess.run(_cli(cut, "awr", extra), env=_env(), check=True, capture_output=True, timeout=600)
    for name in ("phf_eval.jsonl", "phf_train.jsonl", "phf_samples.jsonl", "phf_segments.jsonl"):
        assert _rows(cut / name) == _rows(ref / name), name


def _eval_row(step, tokens, mis, lm, objective):
    return {
        "step": step,
        "tokens": tokens,
        "objective": objective,
        "misalignment": mis,
        "misalignment_stderr": 0.0,
        "negative_share": mis,
        "prompted_misalignment": mis / 2,
        "prompted_stderr": 0.0,
        "prompted_negative_share": 0.5,
        "lm_loss": lm,
        "lm_loss_theta0": 4.0,
        "kl": 0.1,
        "kl_stderr": 0.0,
    }


def test_report_means_and_standard_errors_over_seeds(tmp_path):
    """Two objectives × two seeds of hand-made rows: the table's cells are mean ± s/√n, Δ LM loss against MLE."""
    import json

    from aplkit.results.phf import phf_report

    final = {("mle", 0): (0.5, 4.0), ("mle", 1): (0.7, 4.2), ("conditional", 0): (0.2, 4.1), ("conditional", 1): (0.4, 4.1)}
    for (obj, seed), (mis, lm) in final.items():
        d = tmp_path / "runs" / obj / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(f"seed: {seed}\n")
        rows = [_eval_row(0, 0, 0.6, 4.0, obj), _eval_row(4, 512, mis, lm, obj)]
        (d / "phf_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = phf_report(tmp_path / "runs", tmp_path / "fig")
    assert paths["phf_tradeoff.png"].stat().st_size > 10_000
    md = paths["phf_table.md"].read_text().splitlines()
    mle = next(r for r in md if r.startswith("| MLE"))
    cond = next(r for r in md if r.startswith("| Conditional"))
    # MLE: mean 0.6, s = 0.1414, SE = 0.1; LM loss 4.1 ± 0.1; conditional: 0.3 ± 0.1, LM loss 4.1 ± 0, Δ = 0
    assert "| 0.600 ± 0.100 |" in mle and "| 4.100 ± 0.100 |" in mle and "| 2 |" in mle
    assert "| 0.300 ± 0.100 |" in cond and "| 4.100 ± 0.000 | +0.000 |" in cond
    assert md.index(mle) < md.index(cond)  # MLE first, the reference
    assert r"\pm" in paths["phf_table.tex"].read_text()


def test_vs_mle_pairs_by_seed_at_the_last_checkpoint():
    """Objective − MLE per seed at the last checkpoint, t interval by hand."""
    import math

    import pandas as pd
    from scipy import stats

    from aplkit.results.phf import vs_mle

    rows = []
    for seed, (m_mle, m_cond) in enumerate([(0.50, 0.44), (0.52, 0.47), (0.48, 0.42)]):
        rows.append({"objective": "mle", "seed": seed, "step": 0, "misalignment": 0.9, "prompted_misalignment": 0.5, "lm_loss": 4.0})
        rows.append({"objective": "mle", "seed": seed, "step": 8, "misalignment": m_mle, "prompted_misalignment": 0.5, "lm_loss": 4.0})
        rows.append(
            {"objective": "conditional", "seed": seed, "step": 8, "misalignment": m_cond, "prompted_misalignment": 0.5, "lm_loss": 4.1}
        )
    v = vs_mle(pd.DataFrame(rows)).set_index("metric")
    d = [-0.06, -0.05, -0.06]
    mean, se = sum(d) / 3, pd.Series(d).std(ddof=1) / math.sqrt(3)
    r = v.loc["misalignment"]
    assert r["diff"] == pytest.approx(mean) and r["seeds"] == 3
    assert r["hi"] == pytest.approx(mean + stats.t.ppf(0.975, 2) * se) and r["verdict"] == "lower"  # interval below 0
    assert v.loc["lm_loss"]["diff"] == pytest.approx(0.1) and v.loc["lm_loss"]["verdict"] == "higher"
    assert v.loc["prompted_misalignment"]["verdict"] == "undecided"


def test_lm_loss_cost_is_read_from_each_runs_own_theta0():
    """Conditional training's θ0 reads a new control token and starts 0.024 above MLE's θ0: its LM-loss cost is the
    change from its own θ0 (+0.004 here), not the gap to MLE's LM loss (+0.026)."""
    import pandas as pd

    from aplkit.results.phf import curves, table, vs_mle

    rows = []
    for seed, (d_mle, d_cond) in enumerate([(0.010, 0.013), (0.012, 0.016), (0.008, 0.013)]):
        for step, frac in ((0, 0.0), (8, 1.0)):
            rows.append({"objective": "mle", "seed": seed, "step": step, "lm_loss": 4.200 + frac * d_mle, "lm_loss_theta0": 4.200})
            rows.append({"objective": "conditional", "seed": seed, "step": step, "lm_loss": 4.224 + frac * d_cond, "lm_loss_theta0": 4.224})
    df = pd.DataFrame(rows).assign(run=lambda d: d["objective"] + d["seed"].astype(str), tokens=0)
    v = vs_mle(df).set_index("metric")
    assert v.loc["lm_loss_change", "diff"] == pytest.approx((0.003 + 0.004 + 0.005) / 3)
    assert v.loc["lm_loss", "diff"] == pytest.approx(0.024 + 0.004)
    t = table(curves(df)).set_index("objective")
    assert t.loc["Conditional", "Δ LM loss from own θ0"].startswith("0.014 ±")


def test_misalignment_under_bad_is_reported_against_mle_only_where_measured(tmp_path):
    """Conditional's samples under <|bad|> − MLE's misalignment, paired by seed, as a family of one; records without
    the field (MLE, older runs) leave the table and comparison as they were."""
    import math

    import pandas as pd
    from scipy import stats

    from aplkit.results.phf import curves, table, vs_mle, vs_mle_markdown

    rows = []
    for seed, (m_mle, m_bad) in enumerate([(0.50, 0.71), (0.52, 0.70), (0.48, 0.66)]):
        rows.append({"objective": "mle", "seed": seed, "step": 8, "misalignment": m_mle, "lm_loss": 4.0, "misalignment_bad": None})
        rows.append({"objective": "rwr", "seed": seed, "step": 8, "misalignment": 0.5, "lm_loss": 4.0, "misalignment_bad": None})
        rows.append({"objective": "conditional", "seed": seed, "step": 8, "misalignment": 0.4, "lm_loss": 4.0, "misalignment_bad": m_bad})
    df = pd.DataFrame(rows).assign(run=lambda d: d["objective"] + d["seed"].astype(str), tokens=0)
    full = vs_mle(df)
    bad = full[full["metric"] == "misalignment_bad"]
    d = [0.21, 0.18, 0.18]
    assert list(bad["objective"]) == ["conditional"] and bad["diff"].iloc[0] == pytest.approx(0.19)
    hw = stats.t.ppf(0.975, 2) * pd.Series(d).std(ddof=1) / math.sqrt(3)
    assert bad["lo"].iloc[0] == pytest.approx(0.19 - hw) and bad["holm_lo"].iloc[0] == pytest.approx(0.19 - hw)  # one comparison
    assert bad["verdict"].iloc[0] == "higher"
    md = vs_mle_markdown(full)
    assert "family of 2 comparisons" in md and "misalignment_bad is each conditional run's" in md
    t = table(curves(df)).set_index("objective")
    assert t.loc["Conditional", "misalignment under <|bad|>"].startswith("0.690 ±") and t.loc["MLE", "misalignment under <|bad|>"] == "–"
    old = df.assign(misalignment_bad=None)
    assert "misalignment under <|bad|>" not in table(curves(old)).columns
    assert "misalignment_bad" not in set(vs_mle(old)["metric"]) and "misalignment_bad" not in curves(old).columns


def test_control_token_gap_pairs_bad_with_good_within_each_conditional_run():
    """Conditional runs at misalignment 0.40, 0.42, 0.38 under <|good|> and 0.71, 0.70, 0.66 under <|bad|>: the gap
    0.31, 0.28, 0.28 has mean 0.29 and SD 0.01·√3, so its t half-width is t₀.₉₇₅,₂ · 0.01 ≈ 0.043; a seed without
    <|bad|> samples is left out, and a grid without them has no gap."""
    import pandas as pd
    from scipy import stats

    from aplkit.results.phf import control_token_gap, vs_mle, vs_mle_markdown

    rows = []
    for seed, (good, bad) in enumerate([(0.40, 0.71), (0.42, 0.70), (0.38, 0.66), (0.45, None)]):
        rows.append({"objective": "mle", "seed": seed, "step": 8, "misalignment": 0.9, "lm_loss": 4.0, "misalignment_bad": None})
        rows.append({"objective": "conditional", "seed": seed, "step": 4, "misalignment": 0.5, "lm_loss": 4.0, "misalignment_bad": 0.5})
        rows.append({"objective": "conditional", "seed": seed, "step": 8, "misalignment": good, "lm_loss": 4.0, "misalignment_bad": bad})
    df = pd.DataFrame(rows).assign(run=lambda d: d["objective"] + d["seed"].astype(str), tokens=0)
    g = control_token_gap(df)
    hw = stats.t.ppf(0.975, 2) * 0.01
    assert g["n"] == 3 and g["mean_diff"] == pytest.approx(0.29)
    assert (g["t_low"], g["t_high"]) == (pytest.approx(0.29 - hw), pytest.approx(0.29 + hw))
    assert 0.28 - 1e-9 <= g["boot_low"] <= 0.29 <= g["boot_high"] <= 0.31 + 1e-9  # the resampled means lie within the seeds' range
    md = vs_mle_markdown(vs_mle(df), gap=g)
    assert f"under <|good|> +0.290 [{0.29 - hw:+.3f}, {0.29 + hw:+.3f}]" in md and "(3 seeds)" in md
    assert control_token_gap(df.assign(misalignment_bad=None)) is None
    assert control_token_gap(df[df["objective"] == "mle"].drop(columns="misalignment_bad")) is None


def test_vs_mle_adjusts_each_metric_for_the_objectives_compared():
    """Two objectives against MLE: per metric a family of 2, Holm by hand. Each misalignment − MLE is off 0
    at 95 % alone (p ≈ 0.035 and 0.039) but not after Holm (both ≈ 0.070); the verdict follows Holm."""
    import math

    import pandas as pd
    from scipy import stats

    from aplkit.results.phf import vs_mle, vs_mle_markdown

    d = {"conditional": [-0.04, -0.03, -0.02], "filtering": [-0.027, -0.02, -0.013]}  # t = 5.20 and 4.95, 2 df
    rows = []
    for seed in range(3):
        rows.append({"objective": "mle", "seed": seed, "step": 8, "misalignment": 0.5, "prompted_misalignment": 0.5, "lm_loss": 4.0})
        for o, x in d.items():
            rows.append(
                {"objective": o, "seed": seed, "step": 8, "misalignment": 0.5 + x[seed], "prompted_misalignment": 0.5, "lm_loss": 4.0}
            )
    full = vs_mle(pd.DataFrame(rows))
    v = full.query("metric == 'misalignment'").set_index("objective")
    p = {o: 2 * stats.t.sf(abs(sum(x) / 3) / (pd.Series(x).std(ddof=1) / math.sqrt(3)), 2) for o, x in d.items()}
    assert p["conditional"] < p["filtering"] < 0.05 < 2 * p["conditional"]
    # Holm: the smaller p times 2; the larger times 1, but never below the step before it
    assert v.loc["conditional", "p_holm"] == pytest.approx(2 * p["conditional"])
    assert v.loc["filtering", "p_holm"] == pytest.approx(2 * p["conditional"])
    hi = -0.02 + stats.t.ppf(0.975, 2) * 0.007 / math.sqrt(3)  # unadjusted: below 0
    assert hi < 0 and v.loc["filtering", "hi"] == pytest.approx(hi)
    assert v["holm_hi"].gt(0).all() and v["verdict"].eq("undecided").all()
    assert "family of 2 comparisons" in vs_mle_markdown(full)


# --------------------------------------------------------------------------- a classifier oracle as the misalignment scorer


@pytest.fixture(scope="module")
def tiny_cls(tmp_path_factory):
    from tests.fixtures_models import tiny_classifier

    path = tmp_path_factory.mktemp("tiny-cls")
    net, tok = tiny_classifier(path, num_labels=2)
    return path, net, tok


def _p_class(net, tok, texts, col):
    """P(class ``col``) of each text from the model's own logits, one text at a time: the hand reference."""
    import torch

    from tests.fixtures_models import direct_logits

    return [float(torch.softmax(lg.double(), -1)[col]) for lg in direct_logits(net, tok, texts)]


def test_classifier_scores_segments_and_samples_with_its_p_bad(tmp_path, tiny_cls):
    """oracle.kind=classifier: every segment and every sample is scored P(bad) = softmax(logits)[bad], and the run completes."""
    path, net, tok = tiny_cls
    cfg = load_phf_config("phf-imdb-cpu", [*TINY, "oracle.kind=classifier", f"oracle.classifier.model={path}"], objective="mle")
    summary = run_phf(cfg, tmp_path, progress=False)
    assert summary["complete"] and summary["tokens"] >= 400
    segs = list(read_jsonl(tmp_path / "phf_segments.jsonl"))
    # default good class: the last (1), so bad is column 0
    assert [s["p_negative"] for s in segs] == pytest.approx(_p_class(net, tok, [s["text"] for s in segs], 0), abs=1e-5)
    t = summary["threshold"]
    assert all(s["good"] == (-s["p_negative"] >= t) for s in segs) and 0 < sum(s["good"] for s in segs) < len(segs)
    samples = list(read_jsonl(tmp_path / "phf_samples.jsonl"))
    assert len(samples) == 3 * 6
    assert [s["p_negative"] for s in samples] == pytest.approx(_p_class(net, tok, [s["text"] for s in samples], 0), abs=1e-5)
    ev = list(read_jsonl(tmp_path / "phf_eval.jsonl"))
    for e in ev:
        un = [s["p_negative"] for s in samples if s["step"] == e["step"] and s["kind"] == "unconditional"]
        assert e["misalignment"] == pytest.approx(sum(un) / len(un)) and e["negative_share"] == sum(q > 0.5 for q in un) / len(un)
    assert "classifier-p-bad" in (tmp_path / "phf_scorer.json").read_text()


def test_positive_label_picks_the_good_class(tiny_cls):
    """positive_label=0 makes column 1 the bad class: the two scorers' misalignments sum to 1 text by text."""
    from aplkit.phf.misalignment import misalignment_scorer

    path, net, tok = tiny_cls
    texts = ["The acting is wooden.", "The score, though, is superb!", "ok"]
    base = [*TINY, "oracle.kind=classifier", f"oracle.classifier.model={path}"]
    last = misalignment_scorer(load_phf_config("phf-imdb-cpu", base))
    first = misalignment_scorer(load_phf_config("phf-imdb-cpu", [*base, "oracle.classifier.positive_label=0"]))
    assert first(texts).tolist() == pytest.approx(_p_class(net, tok, texts, 1), abs=1e-5)
    assert (first(texts) + last(texts)).tolist() == pytest.approx([1.0] * 3, abs=1e-9)
    assert first.identity != last.identity and str(path) in first.identity
    assert misalignment_scorer(load_phf_config("phf-imdb-cpu", TINY)).identity == "sentiment-p-negative:vader"


def test_bad_oracle_kinds_and_classifiers_fail_in_one_line(tmp_path):
    from aplkit.config import ConfigError
    from aplkit.phf.misalignment import misalignment_scorer
    from tests.fixtures_models import tiny_classifier

    r = subprocess.run(_cli(tmp_path / "x", "mle", ["oracle.kind=llm"]), env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "oracle.kind" in r.stderr and "sentiment, classifier" in r.stderr
    for kind in ("human", "rouge", "ngram"):
        with pytest.raises(ConfigError, match=f"^oracle.kind: .*choose from sentiment, classifier, got '{kind}'$"):
            load_phf_config("phf-imdb-cpu", [*TINY, f"oracle.kind={kind}"])
    for noise in ("oracle.flip_prob=0.1", "oracle.sample_bt=true"):  # label noise has no meaning here: not silently dropped
        with pytest.raises(ConfigError, match=f"^{noise.split('=')[0]}: simulates noise in a pair's label"):
            load_phf_config("phf-imdb-cpu", [noise])
    with pytest.raises(ConfigError, match="^oracle.classifier.model: required"):
        load_phf_config("phf-imdb-cpu", [*TINY, "oracle.kind=classifier"])
    one = tmp_path / "reward-model"
    tiny_classifier(one, num_labels=1)
    cfg = load_phf_config("phf-imdb-cpu", [*TINY, "oracle.kind=classifier", f"oracle.classifier.model={one}"])
    with pytest.raises(ConfigError, match="^oracle.classifier.model: .* one output") as e:
        run_phf(cfg, tmp_path / "y", progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "y").exists()  # refused before the run folder or the policy
    two = tmp_path / "two"
    tiny_classifier(two, num_labels=2)
    cfg = load_phf_config(
        "phf-imdb-cpu", [*TINY, "oracle.kind=classifier", f"oracle.classifier.model={two}", "oracle.classifier.positive_label=2"]
    )
    with pytest.raises(ConfigError, match="^oracle.classifier.positive_label: 2 is no class"):
        misalignment_scorer(cfg)


def test_resume_under_another_scorer_is_refused(tmp_path):
    """A folder scored by one classifier refuses another oracle kind, another model, or the same path with new weights."""
    import shutil

    import torch

    from aplkit.config import ConfigError
    from tests.fixtures_models import tiny_classifier

    cls = tmp_path / "cls"
    tiny_classifier(cls, num_labels=2)
    args = [*TINY, "phf.token_budget=100", "oracle.kind=classifier", f"oracle.classifier.model={cls}"]
    run = tmp_path / "run"
    run_phf(load_phf_config("phf-imdb-cpu", args, objective="mle"), run, progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"different config \(oracle\."):
        run_phf(load_phf_config("phf-imdb-cpu", TINY, objective="mle"), run, progress=False)
    other = tmp_path / "other"
    shutil.copytree(cls, other)
    with pytest.raises(ConfigError, match="different config .*oracle.classifier.model"):
        run_phf(load_phf_config("phf-imdb-cpu", [*args, f"oracle.classifier.model={other}"], objective="mle"), run, progress=False)
    # the same path, retrained weights: only the scorer's identity tells
    from transformers import AutoModelForSequenceClassification

    net = AutoModelForSequenceClassification.from_pretrained(cls)
    with torch.no_grad():
        net.score.weight.mul_(-1.0)
    net.save_pretrained(cls)
    with pytest.raises(ConfigError, match="another misalignment scorer") as e:
        run_phf(load_phf_config("phf-imdb-cpu", args, objective="mle"), run, progress=False)
    assert "\n" not in str(e.value)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing written by the refused runs


@pytest.mark.slow  # five tiny runs
def test_theta0_is_measured_once_per_seed_and_shared_across_objectives(tmp_path, monkeypatch, tiny_theta0_shared):
    """MLE measures θ0; RWR (the same θ0) reads it; conditional (θ0 + control tokens) measures its own; a fresh RWR agrees."""
    from aplkit.phf.measure import Measurer

    calls: list[tuple[str, int]] = []
    compute = Measurer.compute

    def counted(self, step, tokens):
        calls.append((self.cfg.objective, step))
        return compute(self, step, tokens)

    monkeypatch.setattr(Measurer, "compute", counted)
    args = [*TINY, "phf.token_budget=100"]

    def run(objective: str, name: str, extra=()) -> tuple[list[dict], list[dict]]:
        run_phf(load_phf_config("phf-imdb-cpu", [*args, *extra], objective=objective), tmp_path / name, progress=False)
        ev = [r for r in _rows(tmp_path / name / "phf_eval.jsonl", drop=("seconds", "objective")) if r["step"] == 0]
        return ev, [r for r in _rows(tmp_path / name / "phf_samples.jsonl") if r["step"] == 0]

    mle = run("mle", "mle")
    rwr = run("rwr", "rwr")
    cond = run("conditional", "cond")
    assert [c for c in calls if c[1] == 0] == [("mle", 0), ("conditional", 0)]  # RWR's θ0 was not measured again
    assert ("rwr", 1) in calls or ("rwr", 2) in calls  # its later checkpoints were
    assert rwr == mle and len(mle[1]) == 6
    assert cond[0][0]["lm_loss_theta0"] != mle[0][0]["lm_loss_theta0"]  # θ0 with control tokens is another model
    monkeypatch.setenv("APLKIT_CACHE", str(tmp_path / "fresh"))
    assert run("rwr", "rwr-fresh") == mle and ("rwr", 0) in calls  # measured afresh, RWR's θ0 gives exactly MLE's
    run("rwr", "rwr-seed2", ["seed=2"])
    assert calls.count(("rwr", 0)) == 2  # another seed is another θ0 measurement


def test_vs_mle_gives_the_percentile_bootstrap_beside_t():
    """d = (0, 0, 0.1): a resample's mean is 0 (p 8/27), 1/30 (12/27), 2/30 (6/27) or 0.1 (1/27), so the 2.5th
    percentile of the resample means is 0 and the 97.5th is 0.1 (3.7 % of them): the interval is exactly [0, 0.1]."""
    import pandas as pd

    from aplkit.results.phf import vs_mle, vs_mle_markdown

    rows = []
    for seed, m in enumerate([0.5, 0.5, 0.6]):
        rows.append({"objective": "mle", "seed": seed, "step": 8, "misalignment": 0.5})
        rows.append({"objective": "rwr", "seed": seed, "step": 8, "misalignment": m})
    v = vs_mle(pd.DataFrame(rows))
    r = v.set_index("metric").loc["misalignment"]
    assert r["boot_lo"] == pytest.approx(0.0, abs=1e-12) and r["boot_hi"] == pytest.approx(0.1)
    assert r["lo"] < 0 < r["hi"] and r["verdict"] == "undecided"  # the verdict still reads the Holm-adjusted t interval
    md = vs_mle_markdown(v)
    assert "bootstrap" in md.splitlines()[0] and "| [+0.000, +0.100] |" in md


def _phf_rows(root: Path, objective: str, seed: int, misalignment: float, cpu: str) -> None:
    """A compact PHF record: config, θ0 and last checkpoint, and the code.jsonl row of one start on ``cpu``."""
    import json

    from aplkit.runfolder import CODE, write_jsonl

    d = root / objective / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"seed: {seed}\nobjective: {objective}\n")
    rows = [_eval_row(0, 0, 0.6, 4.0, objective), _eval_row(4, 512, misalignment, 4.0, objective)]
    (d / "phf_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_jsonl(d / CODE, [{"commit": "c1", "package_hash": "t1", "dirty": False, "cpu": cpu, "isa": "avx2", "cores": 2}])


def test_phf_report_refuses_to_pool_cpus_unless_asked(tmp_path):
    """MLE and RWR at seeds 0–2 on one CPU and 3–5 on another: the report stops in one line naming both strata
    before writing anything; asked to pool, ``phf_strata.md`` gives each stratum's RWR − MLE (means −0.04 and
    +0.04 by hand) and Welch's t between them, and the pooled table says the strata were pooled."""
    import math

    from aplkit.cli import main
    from aplkit.results.compare import StrataError
    from aplkit.results.phf import phf_report

    d = {0: -0.05, 1: -0.03, 2: -0.04, 3: 0.03, 4: 0.05, 5: 0.04}
    for k, x in d.items():
        cpu = "EPYC" if k < 3 else "Xeon"
        _phf_rows(tmp_path / "runs", "mle", k, 0.5, cpu)
        _phf_rows(tmp_path / "runs", "rwr", k, 0.5 + x, cpu)
    with pytest.raises(StrataError) as e:
        phf_report(tmp_path / "runs", tmp_path / "fig")
    msg = str(e.value)
    assert "\n" not in msg and "2 strata" in msg and "t1 · EPYC (avx2)" in msg and "t1 · Xeon (avx2)" in msg and "--pool-strata" in msg
    assert not (tmp_path / "fig").exists()
    assert main(["phf-report", str(tmp_path / "runs"), "--out", str(tmp_path / "fig")]) != 0

    assert main(["phf-report", str(tmp_path / "runs"), "--out", str(tmp_path / "fig"), "--pool-strata"]) == 0
    strata = (tmp_path / "fig" / "phf_strata.md").read_text()
    epyc = next(r for r in strata.splitlines() if "EPYC" in r and r.startswith("|"))
    xeon = next(r for r in strata.splitlines() if "Xeon" in r and r.startswith("|"))
    assert "| -0.040 |" in epyc and "| +0.040 |" in xeon and "Δ vs MLE" in strata
    # Welch's t: both strata have s = 0.01 and n = 3, so t = (−0.04 − 0.04) / √(2 · 0.01² / 3) = −9.80 on 4 df
    t = (-0.04 - 0.04) / math.sqrt(2 * 0.01**2 / 3)
    assert f"= {t:+.2f} (4.0 df)" in strata
    assert "2 strata" in (tmp_path / "fig" / "phf_vs_mle.md").read_text()


def test_phf_report_reads_only_the_planned_runs(tmp_path):
    """Runs outside the plan (seed 2 here) are left out of every table, so a reading is of the planned seeds alone."""
    from aplkit.results.phf import phf_report

    for k, x in {0: 0.1, 1: 0.2, 2: 0.9}.items():
        _phf_rows(tmp_path / "runs", "mle", k, 0.5, "EPYC")
        _phf_rows(tmp_path / "runs", "rwr", k, 0.5 + x, "EPYC")
    paths = phf_report(tmp_path / "runs", tmp_path / "fig", planned={(o, k) for o in ("mle", "rwr") for k in (0, 1)})
    v = paths["phf_vs_mle.md"].read_text()
    assert "| RWR | misalignment | 2 | +0.150 |" in v
    claims = paths["phf_claims.md"].read_text()  # no conditional, filtering or unlikelihood runs: nothing to read
    rows = [r for r in claims.splitlines() if r.startswith("| ") and "finding" not in r]
    assert len(rows) == 8 and all(r.endswith("| n/a |") for r in rows)
    assert "| 2 |" in next(r for r in paths["phf_table.md"].read_text().splitlines() if r.startswith("| RWR"))


def _grid(deltas: dict[str, tuple[list[float], list[float]]], bad: list[float] | None = None):
    """Last checkpoints of a synthetic grid: MLE at misalignment 0.5 and LM loss 5.0 on every seed, each other
    objective at MLE's values plus its per-seed (misalignment, LM loss) differences."""
    import pandas as pd

    rows = []
    for seed in range(len(bad or next(iter(deltas.values()))[0])):
        rows.append({"objective": "mle", "seed": seed, "step": 8, "misalignment": 0.5, "prompted_misalignment": 0.5, "lm_loss": 5.0})
        for o, (dm, dl) in deltas.items():
            row = {
                "objective": o,
                "seed": seed,
                "step": 8,
                "misalignment": 0.5 + dm[seed],
                "prompted_misalignment": 0.5,
                "lm_loss": 5.0 + dl[seed],
            }
            if o == "conditional" and bad is not None:
                row["misalignment_bad"] = 0.5 + bad[seed]
            rows.append(row)
    return pd.DataFrame(rows)


def test_the_papers_claims_are_read_by_their_rules():
    """Each verdict by hand. Conditional lowers misalignment by 0.20 (t ≈ 35) at +0.02 LM loss, whose Holm interval
    (at most Bonferroni's over 5: t₀.₉₉₅,₃ · 0.0129/2 ≈ 0.038 wide) stays below the +0.10 margin; AWR lowers
    misalignment 0.05 more than conditional on every seed, so "the most" is not reproduced; filtering and
    unlikelihood pay ≈ 0.5 and 0.6; RWR's +0.20 lies between conditional's +0.02 and both; AWR's +0.05 ± 0.1 is
    undecided against conditional; under <|bad|> misalignment is 0.2 above MLE's."""
    from aplkit.results.phf import claims_markdown, paper_claims

    df = _grid(
        {
            "filtering": ([-0.10, -0.12, -0.09, -0.11], [0.50, 0.51, 0.49, 0.52]),
            "conditional": ([-0.20, -0.21, -0.19, -0.20], [0.02, 0.03, 0.01, 0.02]),
            "unlikelihood": ([-0.12, -0.13, -0.11, -0.14], [0.60, 0.61, 0.59, 0.62]),
            "rwr": ([-0.05, -0.07, -0.04, -0.05], [0.20, 0.22, 0.19, 0.21]),
            "awr": ([-0.25, -0.27, -0.24, -0.25], [0.15, -0.05, 0.15, -0.05]),
        },
        bad=[0.20, 0.22, 0.18, 0.21],
    )
    c = paper_claims(df)
    assert list(c["verdict"]) == [
        "reproduced",  # conditional lowers misalignment
        "not reproduced",  # … the most: AWR − conditional −0.0525, every seed
        "reproduced",  # … at little LM-loss cost
        "reproduced",  # filtering pays
        "reproduced",  # unlikelihood pays
        "reproduced",  # RWR in between
        "undecided",  # AWR in between: AWR − conditional +0.03 ± 0.1
        "reproduced",  # <|bad|> above MLE
    ]
    assert c.loc[0, "evidence"].startswith("Conditional − MLE -0.200, Holm [")
    # Conditional − AWR per seed 0.05, 0.06, 0.05, 0.05: mean 0.0525, SD 0.005, t₀.₉₇₅,₃ · 0.0025 = 0.008
    assert "Conditional − AWR +0.05" in c.loc[1, "evidence"] and "[+0.045, +0.060]" in c.loc[1, "evidence"]
    assert c.loc[7, "evidence"].startswith("Conditional under <|bad|> − MLE +0.20")
    assert "| … at little LM-loss cost |" in claims_markdown(c) and "below +0.10 nats/token" in claims_markdown(c)
    # filtering below MLE's LM loss: "pays" is contradicted, and RWR (+0.20) is no longer below it
    df.loc[df["objective"] == "filtering", "lm_loss"] = 5.0 - 0.05 + df.loc[df["objective"] == "filtering", "seed"] * 0.001
    c = paper_claims(df).set_index("claim")
    assert c.loc["Filtering pays in LM loss", "verdict"] == "not reproduced"
    assert c.loc["RWR lies in between in LM loss: above conditional, below filtering and unlikelihood", "verdict"] == "not reproduced"
    # a grid without AWR or RWR: their claims cannot be read
    c = paper_claims(df[~df["objective"].isin(["rwr"])]).set_index("claim")
    assert c.loc["RWR lies in between in LM loss: above conditional, below filtering and unlikelihood", "verdict"] == "n/a"
