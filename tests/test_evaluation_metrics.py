"""The win-rate's companions: soft win-rate, reward gap, KL from θ0, LM loss — against hand computations."""

import math

import pandas as pd
import pytest
import torch

from aplkit.checks import load_config
from aplkit.config import ConfigError, DataConfig
from aplkit.evaluation import mean_se, reward_gaps, soft_win_rate, win_rate
from aplkit.generation import completion_kl, ids_logprobs, mean_token_nll
from aplkit.oracles.base import Oracle, OracleError
from aplkit.records import Label, Verdict
from tests.synthetic_runs import make_run
from tests.test_generation import Bigram
from tests.test_loop import TINY

P_TABLE = [[0.0, 1.0, 2.0], [1.0, 0.0, 0.0], [0.5, 0.5, 3.0]]
Q_TABLE = [[0.0, 0.0, 0.0], [2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]


def softmax(row):
    z = sum(math.exp(v) for v in row)
    return [math.exp(v) / z for v in row]


def kl(p_row, q_row):
    p, q = softmax(p_row), softmax(q_row)
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


def logp(table, cur, nxt):
    return math.log(softmax(table[cur])[nxt])


# --------------------------------------------------------------------------- soft win-rate


def label(p_a, order, choice="A"):
    return Label(preferred=None, tie=choice == "tie", shown_order=order, verdict=Verdict(choice=choice, p_a=p_a))


def test_soft_win_rate_hand_computed():
    labels = [
        label(0.2, "01"),  # A = y0 (baseline): P(policy = y1) = 0.8
        label(0.3, "10"),  # A = y1 (policy): 0.3
        label(0.5, "01", "tie"),  # a scoring oracle's tie: 0.5
        label(None, "01", None),  # invalid, no probability: left out
    ]
    soft = soft_win_rate(labels)
    assert soft.n == 3
    assert soft.mean == pytest.approx(1.6 / 3)
    # deviations 0.8 − 1.6/3, 0.3 − 1.6/3, 0.5 − 1.6/3: squares sum to 0.38/3, s² = 0.38/6, SE = √(s²/3)
    assert soft.stderr == pytest.approx(math.sqrt(0.38 / 18))
    flipped = soft_win_rate(labels, policy_index=0)
    assert flipped.mean == pytest.approx(1 - 1.6 / 3) and flipped.stderr == pytest.approx(soft.stderr)


def test_soft_win_rate_is_none_without_probabilities_and_agrees_with_hard_labels_at_the_extremes():
    assert soft_win_rate([label(None, "01"), label(None, "10", "B")]) is None
    sure = [Label(1, False, "01", Verdict("B", p_a=0.0)), Label(0, False, "10", Verdict("B", p_a=0.0))]
    assert soft_win_rate(sure).mean == win_rate(sure).win_rate == 0.5


def test_mean_se():
    assert mean_se([]) is None
    one = mean_se([2.0])
    assert (one.mean, one.stderr, one.n) == (2.0, 0.0, 1)
    m = mean_se([1.0, 2.0, 4.0])
    assert m.mean == pytest.approx(7 / 3) and m.stderr == pytest.approx(math.sqrt((16 / 9 + 1 / 9 + 25 / 9) / 2 / 3))


# --------------------------------------------------------------------------- reward gap


class LengthOracle(Oracle):
    """A pointwise oracle whose score is the completion's length plus one per 'good' in the prompt."""

    kind = "length"

    @property
    def identity(self):
        return "length"

    def judge(self, items):
        raise AssertionError("not asked")

    def pointwise(self, prompts, completions):
        return [len(c) + p.count("good") for p, c in zip(prompts, completions, strict=True)]


class PairwiseOnly(LengthOracle):
    def pointwise(self, prompts, completions):
        return Oracle.pointwise(self, prompts, completions)


def test_reward_gap_with_a_fake_pointwise_oracle():
    prompts = ["good x", "y", "good good z"]
    policy = ["abcd", "a", "abc"]
    baseline = ["ab", "abc", "abc"]
    gaps = reward_gaps(LengthOracle(), prompts, policy, baseline)
    assert gaps == [2.0, -2.0, 0.0]  # the prompt's own term cancels
    m = mean_se(gaps)
    assert m.mean == 0.0 and m.stderr == pytest.approx(math.sqrt((4 + 4 + 0) / 2 / 3))
    assert reward_gaps(PairwiseOnly(), prompts, policy, baseline) is None


def test_scoring_oracles_expose_the_score_their_judge_compares():
    from aplkit.oracles.classifier import ClassifierOracle
    from aplkit.oracles.rouge import RougeOracle
    from aplkit.oracles.sentiment import SentimentOracle
    from aplkit.records import Comparison

    sent = SentimentOracle("vader", fluency_weight=0)
    prompts, ys = ["The film was", "I saw it"], [" wonderful and moving.", " awful awful awful awful"]
    assert sent.pointwise(prompts, ys) == sent.score(prompts, ys)
    v = sent.judge([Comparison(prompts[0], ys[0], ys[1])])[0]
    s = sent.pointwise([prompts[0]] * 2, ys)
    assert v.p_a == pytest.approx(1 / (1 + math.exp(-(s[0] - s[1]) / sent.tau)))

    rouge = RougeOracle({"post": "the cat sat on the mat"})
    assert rouge.pointwise(["post", "post"], ["the cat sat", "a dog"]) == [
        rouge.score("the cat sat on the mat", "the cat sat"),
        rouge.score("the cat sat on the mat", "a dog"),
    ]
    with pytest.raises(OracleError, match="no reference for 1 prompt"):
        rouge.pointwise(["other"], ["x"])

    clf = ClassifierOracle.__new__(ClassifierOracle)  # no model: its score function stubbed, the seam checked
    clf.score = lambda texts: [float(len(t)) for t in texts]
    assert clf.pointwise(["ab", "c"], ["d", "efg"]) == [3.0, 4.0]


# --------------------------------------------------------------------------- KL along the completion


def test_completion_kl_hand_computed_on_a_bigram():
    policy, reference = Bigram(P_TABLE), Bigram(Q_TABLE)
    prompts = [[0], [2, 1], [0, 1, 2, 2], [1]]
    comps = [[1, 2], [0], [], [2, 2]]
    got = completion_kl(policy, reference, prompts, comps, pad_id=0, batch_size=3)
    # the distribution of completion token t comes from the token before it; nothing after the last token counts
    want = [
        kl(P_TABLE[0], Q_TABLE[0]) + kl(P_TABLE[1], Q_TABLE[1]),  # tokens 1 (after 0) and 2 (after 1)
        kl(P_TABLE[1], Q_TABLE[1]),  # token 0 after 1; the prompt's own transition is not counted
        0.0,  # no completion
        kl(P_TABLE[1], Q_TABLE[1]) + kl(P_TABLE[2], Q_TABLE[2]),  # the last term is 0: same row
    ]
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    one_by_one = completion_kl(policy, reference, prompts, comps, pad_id=0, batch_size=1)
    assert one_by_one.tolist() == pytest.approx(want, abs=1e-6)
    assert all(w > 0 for w in (want[0], want[1]))


def test_completion_kl_is_exactly_zero_for_the_reference_itself():
    prompts, comps = [[0], [2, 1], [1]], [[1, 2, 0], [0], [2, 2]]
    same = Bigram(P_TABLE)
    assert completion_kl(same, same, prompts, comps, pad_id=0).tolist() == [0.0, 0.0, 0.0]
    assert completion_kl(same, Bigram(P_TABLE), prompts, comps, pad_id=0).tolist() == [0.0, 0.0, 0.0]


def _renormalised(row, suppressed):
    """The distribution the sampler draws from when ``suppressed`` tokens are never emitted."""
    return [float("-inf") if j in suppressed else v for j, v in enumerate(row)]


def test_suppressed_tokens_are_masked_and_renormalised_in_every_score():
    """A model that never emits token 2 (a control token) is scored as deployed: its probability mass is spread over
    the others for log-probs, KL and LM loss alike (hand-computed on a bigram)."""
    policy, reference = Bigram(P_TABLE), Bigram(Q_TABLE)
    for m in (policy, reference):
        m.aplkit_suppress_tokens = [2]
    p_masked = [_renormalised(r, {2}) for r in P_TABLE]
    q_masked = [_renormalised(r, {2}) for r in Q_TABLE]

    def lp(table, cur, nxt):
        z = sum(math.exp(v) for v in table[cur] if v != float("-inf"))
        return table[cur][nxt] - math.log(z)

    def kl_masked(a, b):
        pa = [math.exp(v) for v in a]
        za, zb = sum(pa), sum(math.exp(v) for v in b if v != float("-inf"))
        return sum(x / za * ((a[j] - math.log(za)) - (b[j] - math.log(zb))) for j, x in enumerate(pa) if x > 0)

    got = ids_logprobs(policy, [[0], [1]], [[1, 0], [0]], pad_id=0)
    assert got.tolist() == pytest.approx([lp(p_masked, 0, 1) + lp(p_masked, 1, 0), lp(p_masked, 1, 0)], abs=1e-6)
    assert got[0] > logp(P_TABLE, 0, 1) + logp(P_TABLE, 1, 0)  # the suppressed token's mass went to the others
    # a prompt may hold a token the model never emits (conditioning on <|good|>): it is read, not scored
    with_control = ids_logprobs(policy, [[0, 2], [2]], [[1], [0]], pad_id=0)
    assert with_control.tolist() == pytest.approx([lp(p_masked, 2, 1), lp(p_masked, 2, 0)], abs=1e-6)
    kl_got = completion_kl(policy, reference, [[0], [1]], [[1, 0], [0]], pad_id=0)
    want = [kl_masked(p_masked[0], q_masked[0]) + kl_masked(p_masked[1], q_masked[1]), kl_masked(p_masked[1], q_masked[1])]
    assert kl_got.tolist() == pytest.approx(want, abs=1e-6)
    assert mean_token_nll(policy, [[0, 1, 0]], pad_id=0) == pytest.approx(-(lp(p_masked, 0, 1) + lp(p_masked, 1, 0)) / 2, abs=1e-6)


def test_token_kl_counts_a_zero_probability_token_as_zero_not_nan():
    from aplkit.generation import token_kl

    lp = torch.log_softmax(torch.tensor([[0.0, 1.0, float("-inf")]]), -1)
    lq = torch.log_softmax(torch.tensor([[1.0, 0.0, float("-inf")]]), -1)
    p = [1 / (1 + math.e), math.e / (1 + math.e)]
    want = p[0] * math.log(p[0] / p[1]) + p[1] * math.log(p[1] / p[0])
    assert token_kl(lp, lq).tolist() == pytest.approx([want], abs=1e-6)


# --------------------------------------------------------------------------- LM loss


def test_mean_token_nll_hand_computed():
    model = Bigram(P_TABLE)
    texts = [[0, 1, 2, 2], [1, 0], [2]]  # the last has no predicted token
    want = -(logp(P_TABLE, 0, 1) + logp(P_TABLE, 1, 2) + logp(P_TABLE, 2, 2) + logp(P_TABLE, 1, 0)) / 4
    assert mean_token_nll(model, texts, pad_id=0, batch_size=2) == pytest.approx(want, abs=1e-6)
    assert mean_token_nll(model, [[1], []], pad_id=0) is None


def test_evaluation_config_checks_the_lm_knobs():
    for key in ("lm_texts", "lm_tokens"):
        with pytest.raises(ConfigError, match=rf"^evaluation\.{key}: must be >= 0, got -1"):
            load_config("imdb-cpu", [f"evaluation.{key}=-1"])
    cfg = load_config("imdb-cpu", ["evaluation.lm_texts=0"])
    assert cfg.evaluation.lm_texts == 0 and cfg.evaluation.lm_tokens == 64


# --------------------------------------------------------------------------- held-out texts


def test_embedded_pools_keep_the_full_test_reviews(tokenizer):
    from aplkit.data import imdb_reviews, load_pools

    pools = load_pools(DataConfig(train_size=200, test_size=50), tokenizer)
    full = imdb_reviews().set_index("id")["text"]
    assert len(pools.test_texts) == 50
    assert pools.held_out_texts() == pools.test_texts == [full[p.id] for p in pools.test]
    assert all(t.startswith(p.text) and len(t) > len(p.text) for p, t in zip(pools.test, pools.test_texts, strict=True))


def test_tldr_and_file_held_out_texts_are_prompt_then_reference(tmp_path):
    from aplkit.data import PromptPools, load_pools
    from aplkit.records import Prompt
    from tests.fixtures_data import tldr_rows, write_rows

    for split in ("train", "test"):
        write_rows([{k: v for k, v in r.items() if k != "keep"} for r in tldr_rows(split)], tmp_path / "tldr" / f"{split}.jsonl")
    pools = load_pools(DataConfig(task="tldr", path=str(tmp_path / "tldr"), train_size=6, test_size=6))
    assert pools.test_texts == [f"{p.text} {p.reference}" for p in pools.test]
    assert all(t.split("TL;DR: ")[1].startswith("summary of test post") for t in pools.test_texts)

    rows = [{"prompt": f"p {i}", "answer": None if i % 2 else f"a {i}"} for i in range(6)]
    cfg = DataConfig(task="file", path=str(write_rows(rows, tmp_path / "p.csv")), reference_field="answer", train_size=3, test_size=3)
    pools = load_pools(cfg)
    assert pools.test_texts == [p.text if p.reference is None else f"{p.text} {p.reference}" for p in pools.test]

    bare = PromptPools(train=[], test=[Prompt("1", "Q:\n", "A"), Prompt("2", "x")])  # built by hand, no test_texts
    assert bare.held_out_texts() == ["Q:\nA", "x"]


# --------------------------------------------------------------------------- in the loop


def test_theta0_evaluation_has_zero_kl_and_theta0_lm_loss(tmp_path):
    from aplkit.data import imdb_reviews
    from aplkit.loop import Experiment

    cfg = load_config("imdb-cpu", TINY, strategy="random")
    exp = Experiment(cfg, tmp_path / "theta0", progress=False)
    try:
        ev = exp.evaluator
        full = imdb_reviews().set_index("id")["text"]
        assert len(ev.lm_texts) == 40 and ev.lm_texts[:8] == [full[p.id] for p in ev.test]  # test_size=40 < lm_texts=64
        row = ev.evaluate(0, 0)  # θ = θ0: nothing trained yet
    finally:
        exp.close()
    # 0 up to rounding: the policy's side comes from generation's incremental (KV-cached) pass, the reference's from a full one
    assert row.kl == pytest.approx(0.0, abs=1e-5) and row.kl_stderr == pytest.approx(0.0, abs=1e-5)
    assert row.lm_loss is not None and row.lm_loss == row.lm_loss_theta0
    assert 0.0 <= row.soft_win_rate <= 1.0 and row.soft_stderr >= 0.0
    assert row.reward_gap is not None and row.reward_gap_stderr >= 0.0


def test_evaluation_kl_from_the_sampler_only_where_its_scores_are_the_models(tmp_path):
    """fp32: the KL comes with the samples (no policy pass); bf16 autocast: it falls back to ``completion_kl``."""
    import torch

    from aplkit.generation import completion_kl, prompt_ids
    from aplkit.loop import Experiment
    from aplkit.models import set_compute_dtype

    cfg = load_config("imdb-cpu", TINY, strategy="random")
    exp = Experiment(cfg, tmp_path / "kl", progress=False)
    try:
        ev, m = exp.evaluator, exp.models
        with torch.no_grad():  # a policy away from θ0
            for w in m.policy.parameters():
                w.mul_(1.5)
        fast = ev.sample(m.policy, seed=5, kl=True)
        assert all(s.kl is not None for s in fast) and ev.kl_path(fast) == [s.kl for s in fast]
        want = completion_kl(
            m.policy, m.reference, prompt_ids(m.tokenizer, [p.text for p in ev.test]), [s.ids for s in fast], m.tokenizer.pad_token_id
        )
        assert torch.allclose(torch.tensor(ev.kl_path(fast), dtype=want.dtype), want, rtol=1e-4, atol=1e-6) and (want > 0).all()
        set_compute_dtype(m.policy, torch.bfloat16)
        slow = ev.sample(m.policy, seed=5, kl=True)
        assert all(s.kl is None for s in slow) and len(ev.kl_path(slow)) == len(slow)  # computed by both models' passes
        assert all(s.kl is None for s in ev.sample(m.reference, seed=5))  # θ0's baseline: no KL asked
    finally:
        exp.close()


def test_lm_texts_zero_turns_the_lm_loss_off(tmp_path):
    from aplkit.loop import Experiment

    cfg = load_config("imdb-cpu", [*TINY, "evaluation.lm_texts=0"], strategy="random")
    exp = Experiment(cfg, tmp_path / "off", progress=False)
    try:
        row = exp.evaluator.evaluate(0, 0)
    finally:
        exp.close()
    assert row.lm_loss is None and row.lm_loss_theta0 is None and row.kl == pytest.approx(0.0, abs=1e-5)


def test_tiny_run_writes_every_metric_at_every_waypoint(tiny_runs):
    from aplkit.records import EvalPairRow, EvalRow
    from aplkit.runfolder import RunFolder, read_jsonl

    run = tiny_runs("certainty")[0]
    raw = list(read_jsonl(run / "eval.jsonl"))
    fields = ("soft_win_rate", "soft_stderr", "reward_gap", "reward_gap_stderr", "kl", "kl_stderr", "lm_loss", "lm_loss_theta0")
    assert [r["acquired"] for r in raw] == [4, 12]
    assert all(isinstance(r[f], float) and math.isfinite(r[f]) for r in raw for f in fields)
    rf = RunFolder(run)
    rows, pairs = rf.read(EvalRow), rf.read(EvalPairRow)
    assert rows[0].lm_loss_theta0 == rows[1].lm_loss_theta0  # computed once per run
    assert rows[-1].kl > 0.0 and rows[-1].lm_loss != rows[-1].lm_loss_theta0  # trained at lr 1e-3: moved from θ0
    for r in rows:
        mine = [p for p in pairs if p.step == r.step]
        assert len(mine) == 8
        assert r.soft_win_rate == pytest.approx(sum(p.p_policy for p in mine) / 8)
        assert r.reward_gap == pytest.approx(sum(p.reward_gap for p in mine) / 8)
        assert r.kl == pytest.approx(sum(p.kl for p in mine) / 8)
        assert r.kl_stderr == pytest.approx(mean_se([p.kl for p in mine]).stderr)
        assert all((p.reward_gap > 0) == (p.p_policy > 0.5) for p in mine if p.reward_gap != 0)


# --------------------------------------------------------------------------- results


def _metrics(soft, gap, kl_, lm, lm0=3.0):
    return {
        "soft_win_rate": soft,
        "soft_stderr": 0.02,
        "reward_gap": gap,
        "reward_gap_stderr": 0.05,
        "kl": kl_,
        "kl_stderr": 0.01,
        "lm_loss": lm,
        "lm_loss_theta0": lm0,
    }


def test_companion_curves_and_table_from_synthetic_runs(tmp_path):
    from aplkit import results as R

    make_run(tmp_path, "random", 0, {16: 0.5, 32: 0.6}, metrics={16: _metrics(0.52, 0.1, 0.2, 3.1), 32: _metrics(0.55, 0.2, 0.4, 3.2)})
    make_run(tmp_path, "random", 1, {16: 0.5, 32: 0.7}, metrics={16: _metrics(0.54, 0.3, 0.4, 3.3), 32: _metrics(0.57, 0.4, 0.6, 3.0)})
    make_run(tmp_path, "certainty", 0, {16: 0.6, 32: 0.7}, metrics={16: _metrics(0.6, 0.5, 1.0, 3.5)})  # 32: an older row
    df = R.load_runs(tmp_path)

    soft = R.soft_winrate_curves(df).set_index(["strategy", "acquired"])
    assert soft.loc[("random", 16), "mean"] == pytest.approx(0.53)
    assert soft.loc[("random", 16), "se"] == pytest.approx(0.01)  # std(.52, .54) / √2
    assert soft.loc[("random", 16), "se_kind"] == "seeds" and soft.loc[("random", 16), "n"] == 2
    assert soft.loc[("certainty", 16), "se"] == pytest.approx(0.02) and soft.loc[("certainty", 16), "se_kind"] == "prompts"
    assert ("certainty", 32) not in soft.index  # not recorded: left out, never a zero
    gap = R.reward_gap_curves(df).set_index(["strategy", "acquired"])
    assert gap.loc[("random", 32), "mean"] == pytest.approx(0.3) and gap.loc[("random", 32), "se"] == pytest.approx(0.1)
    klc = R.kl_curves(df).set_index(["strategy", "acquired"])
    assert klc.loc[("random", 32), "mean"] == pytest.approx(0.5) and klc.loc[("certainty", 16), "se"] == pytest.approx(0.01)
    lm = R.lm_loss_curves(df).set_index(["strategy", "acquired"])
    assert lm.loc[("random", 16), "mean"] == pytest.approx(3.2) and lm.loc[("random", 16), "theta0"] == pytest.approx(3.0)
    assert lm.loc[("random", 16), "delta"] == pytest.approx(0.2) and lm.loc[("random", 16), "delta_se"] == pytest.approx(0.1)
    assert math.isnan(lm.loc[("certainty", 16), "se"]) and lm.loc[("certainty", 16), "se_kind"] == "none"

    table = R.companion_metrics(df).set_index(["strategy", "acquired"])
    assert len(table) == 4 and table.loc[("random", 32), "win_rate"] == pytest.approx(0.65)
    assert table.loc[("random", 32), "kl"] == pytest.approx(0.5) and table.loc[("random", 32), "lm_loss_delta"] == pytest.approx(0.1)
    assert math.isnan(table.loc[("certainty", 32), "soft_win_rate"]) and table.loc[("certainty", 32), "win_rate"] == pytest.approx(0.7)
    md = R.metrics_markdown(R.companion_metrics(df))
    assert "| imdb | 16 | Random | 0.50 ± 0.000 | 0.53 ± 0.010 | +0.200 ± 0.100 | 0.300 ± 0.100 | 3.200 (+0.200 ± 0.100) |" in md
    assert "| imdb | 16 | Pref certainty | 0.60 ± 0.061 | 0.60 ± 0.020 | +0.500 ± 0.050 | 1.000 ± 0.010 | 3.500 (+0.500) |" in md
    assert "| imdb | 32 | Pref certainty | 0.70 ± 0.057 | – | – | – | – |" in md
    assert R.table2(df).equals(R.table2(df.drop(columns=list(R.COMPANION_FIELDS))))  # Table 2 is unchanged by them


def test_report_writes_the_metrics_table(tmp_path):
    from aplkit.results.report import report

    runs = tmp_path / "runs"
    for seed in range(2):
        make_run(runs, "random", seed, {16: 0.5, 32: 0.6}, metrics={s: _metrics(0.5 + 0.01 * seed, 0.1, 0.2, 3.1) for s in (16, 32)})
        make_run(runs, "certainty", seed, {16: 0.55, 32: 0.65})  # no companions: '–'
    written = report(runs, tmp_path / "fig")
    assert {"metrics.md", "metrics.csv"} <= set(written)
    csv = pd.read_csv(written["metrics.csv"])
    assert len(csv) == 4 and {"soft_win_rate", "reward_gap", "kl", "lm_loss", "lm_loss_delta"} <= set(csv.columns)
    assert csv.loc[csv["strategy"] == "random", "soft_win_rate"].tolist() == pytest.approx([0.505, 0.505])
    assert csv.loc[csv["strategy"] == "certainty", "kl"].isna().all()
    assert "| imdb | 32 | Pref certainty | 0.65 ± 0.000 | – | – | – | – |" in written["metrics.md"].read_text()
    assert "companions" not in written["notes.md"].read_text()

    old = tmp_path / "old"
    make_run(old, "random", 0, {16: 0.5})
    assert "no run recorded the win-rate's companions" in report(old, tmp_path / "fig_old")["notes.md"].read_text()
