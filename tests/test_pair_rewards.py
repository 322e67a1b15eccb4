"""``training.phf.pair_rewards: oracle``: a scoring oracle's pointwise scores as the rewards of the bridge's documents.

The scores travel verdict → ledger → acquired.jsonl → ``Preference``; a resumed run reads them back
without asking the oracle; the threshold is the PHF percentile of X_P's scores.
"""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from aplkit.checks import load_config
from aplkit.config import ConfigError, TrainingConfig
from aplkit.objectives.filtering import Filtering
from aplkit.objectives.preferences import PreferenceObjective
from aplkit.objectives.rwr import RWR
from aplkit.objectives.segments import encode, token_logprobs
from aplkit.oracles.base import Oracle, scored_verdict
from aplkit.oracles.labelling import label_pairs
from aplkit.oracles.ledger import Ledger
from aplkit.records import AcquiredRow, Candidate, Preference, Prompt
from aplkit.runfolder import RunFolder
from tests.test_loop import TINY
from tests.test_objectives import Fixed

# (y_w, y_l) scores of three pairs; all six sorted: −0.5, 0.0, 0.1, 0.2, 0.4, 0.9
SCORES = [(0.9, 0.2), (0.4, -0.5), (0.1, 0.0)]


def _prefs() -> list[Preference]:
    ids = [([5, 6], [7]), ([8], [9, 10, 11]), ([12, 13, 14], [15, 16])]
    return [Preference("A film", "w", "l", w, lo, rw, rl) for (w, lo), (rw, rl) in zip(ids, SCORES, strict=True)]


def _objective(tiny, name: str, pair_rewards: str, percentile: float = 50.0, beta: float = 1.0) -> PreferenceObjective:
    cfg = TrainingConfig(objective=name, batch_size=8)
    cfg.phf.pair_rewards, cfg.phf.threshold_percentile, cfg.phf.beta = pair_rewards, percentile, beta
    return PreferenceObjective(name, tiny, cfg)


def test_documents_carry_the_oracles_scores_and_the_percentile_splits_them(tiny):
    prefs = _prefs()
    obj = _objective(tiny, "filtering", "oracle")
    docs = obj.documents(prefs)
    assert [d.segments[0].reward for d in docs] == [0.9, 0.2, 0.4, -0.5, 0.1, 0.0]
    assert [d.segments[0].ids for d in docs] == [[5, 6], [7], [8], [9, 10, 11], [12, 13, 14], [15, 16]]
    # median of the six (linear interpolation): (0.1 + 0.2) / 2; the 75th: 0.2 + 0.75·(0.4 − 0.2)
    t = obj.threshold(prefs)
    assert t == pytest.approx(0.15)
    assert _objective(tiny, "filtering", "oracle", percentile=75.0).threshold(prefs) == pytest.approx(0.35)
    # filtering keeps y_w of pairs 1 and 2 and y_l of pair 1 (0.2 ≥ t), and drops y_w of pair 3 (0.1 < t)
    batch = encode(docs, t, Filtering(), pad_id=tiny.tokenizer.pad_token_id)
    kept = batch.input_ids[:, 1:][batch.trained.bool()].tolist()
    assert kept == [5, 6, 7, 8]
    assert batch.good[batch.trained.bool()].all()
    # the label mode is unchanged: R = 1 for y_w, 0 for y_l, t = ½
    lab = _objective(tiny, "filtering", "label")
    assert [d.segments[0].reward for d in lab.documents(prefs)] == [1.0, 0.0] * 3 and lab.threshold(prefs) == 0.5


def test_rwr_weights_each_completion_by_its_oracle_score(tiny):
    prefs = _prefs()
    obj = _objective(tiny, "rwr", "oracle", beta=0.5)
    batch = encode(obj.documents(prefs), obj.threshold(prefs), obj.loss, pad_id=tiny.tokenizer.pad_token_id)
    vocab = tiny.policy.get_input_embeddings().weight.shape[0]
    logp, _ = token_logprobs(Fixed([1.0 / vocab] * vocab), batch)  # every token: log p = −log V
    value = float(obj.loss.loss(logp, batch)[0].detach())
    lengths = [2, 1, 1, 3, 3, 2]
    rewards = [0.9, 0.2, 0.4, -0.5, 0.1, 0.0]
    expect = sum(n * math.exp(r / 0.5) * math.log(vocab) for n, r in zip(lengths, rewards, strict=True)) / sum(lengths)
    assert isinstance(obj.loss, RWR) and value == pytest.approx(expect, rel=1e-5)


def test_a_pair_without_scores_fails_in_one_line(tiny):
    obj = _objective(tiny, "rwr", "oracle")
    with pytest.raises(ConfigError, match=r"training\.phf\.pair_rewards") as e:
        obj.documents([Preference("x", "a", "b", [1], [2])])
    assert "\n" not in str(e.value)


class Length(Oracle):
    """A real (if simple) scoring oracle: s(x, y) = number of words of y; counts every question and every score."""

    kind = "length"

    def __init__(self) -> None:
        self.asked: list = []
        self.scored = 0

    @property
    def identity(self) -> str:
        return "length/v1"

    def pointwise(self, prompts, completions):
        self.scored += len(completions)
        return [float(len(c.split())) for c in completions]

    def judge(self, items):
        self.asked += list(items)
        return [scored_verdict(len(c.a.split()), len(c.b.split()), 1.0) for c in items]


class Pairwise(Length):
    """The same choices, but no pointwise score (as an LLM judge or a person)."""

    def pointwise(self, prompts, completions):
        return None


PAIRS = [("p1", "one two three", "one"), ("p2", "a", "a b c d e"), ("p3", "x y", "x y z w")]


def _cand(i: int, p: str, y0: str, y1: str) -> Candidate:
    return Candidate(Prompt(f"id{i}", p), y0, y1)


def test_scores_round_trip_through_the_ledger_and_the_run_folder(tmp_path):
    oracle = Length()
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        labels = label_pairs(oracle, ledger, PAIRS, seed=0)
    assert len(oracle.asked) == 3
    assert [lab.scores for lab in labels] == [(3.0, 1.0), (1.0, 5.0), (2.0, 4.0)]  # in pair order, whatever was shown as A
    run = RunFolder(tmp_path / "run").ensure()
    for i, (pair, lab) in enumerate(zip(PAIRS, labels, strict=True)):
        run.add(AcquiredRow.of(1, i, _cand(i, *pair), lab))
    prefs = [r.preference() for r in run.read(AcquiredRow)]
    assert [(p.chosen_reward, p.rejected_reward) for p in prefs] == [(3.0, 1.0), (5.0, 1.0), (4.0, 2.0)]

    again = Length()  # a resumed run: a fresh oracle, the same ledger file
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        cached = label_pairs(again, ledger, PAIRS, seed=0)
        assert ledger.stats()["calls"] == 0
    assert again.asked == [] and again.scored == 0  # nothing asked, nothing scored again
    assert all(lab.cached for lab in cached) and [lab.scores for lab in cached] == [lab.scores for lab in labels]


def test_an_old_ledger_without_scores_loads_and_is_filled_in_without_asking_again(tmp_path):
    path = tmp_path / "old.sqlite"
    with Ledger(path) as ledger:
        label_pairs(Length(), ledger, PAIRS, seed=0)
    with sqlite3.connect(path) as db:  # the file as aplkit wrote it before scores were kept
        db.execute("ALTER TABLE labels DROP COLUMN score_a")
        db.execute("ALTER TABLE labels DROP COLUMN score_b")
    judge = Pairwise()  # a pairwise judge has no scores to fill in: its stored answers stay as they are
    with Ledger(path) as ledger:
        assert [lab.scores for lab in label_pairs(judge, ledger, PAIRS, seed=0)] == [(None, None)] * 3
    assert judge.asked == []
    oracle = Length()
    with Ledger(path) as ledger:
        labels = label_pairs(oracle, ledger, PAIRS, seed=0)
        assert ledger.stats()["calls"] == 0 and ledger.stats()["total"]["calls"] == 3  # nothing billed again
    assert oracle.asked == [] and oracle.scored == 6  # no label asked; each completion scored once, then kept
    assert [lab.scores for lab in labels] == [(3.0, 1.0), (1.0, 5.0), (2.0, 4.0)]
    later = Length()
    with Ledger(path) as ledger:
        assert [lab.scores for lab in label_pairs(later, ledger, PAIRS, seed=0)] == [lab.scores for lab in labels]
    assert later.asked == [] and later.scored == 0


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"oracle.kind": "llm", "training.objective": "rwr"}, "oracle.kind=llm"),
        ({"oracle.kind": "human", "training.objective": "conditional"}, "oracle.kind=human"),
        ({"training.objective": "dpo"}, "training.objective=dpo"),
        ({"training.objective": "rwr", "oracle.flip_prob": 0.1}, "oracle.flip_prob"),
    ],
)
def test_pair_rewards_oracle_without_scores_fails_in_one_line(overrides, names):
    with pytest.raises(ConfigError, match=r"^training\.phf\.pair_rewards: ") as e:
        load_config("imdb-cpu", {**overrides, "training.phf.pair_rewards": "oracle"})
    assert names in str(e.value) and "\n" not in str(e.value)


def test_loop_with_rwr_on_oracle_scores_resumes_without_asking_again(tmp_path):
    """Two steps of Algorithm 1 with RWR on the sentiment judge's scores; a kill after step 2's labels, then resume."""
    from aplkit.loop import Experiment

    cfg = load_config(
        "imdb-cpu",
        [*TINY, "acquisition.budget=8", "evaluation.waypoints=[8]", "training.objective=rwr", "training.phf.pair_rewards=oracle"],
        strategy="random",
    )
    out = tmp_path / "run"
    exp = Experiment(cfg, out, progress=False)
    train = exp.finetuner.finetune
    thresholds: list[float] = []

    def killed_at_step_2(prefs, seed, newest=None):
        thresholds.append(exp.finetuner.threshold(prefs))
        if len(thresholds) == 2:
            raise KeyboardInterrupt  # step 2's labels are in the ledger and acquired.jsonl, its training never ends
        return train(prefs, seed, newest=newest)

    exp.finetuner.finetune = killed_at_step_2
    try:
        with pytest.raises(KeyboardInterrupt):
            exp.run()
    finally:
        exp.close()
    before = list(RunFolder(out).read(AcquiredRow))
    assert [r.step for r in before] == [1] * 4 + [2] * 4
    scored = [r for r in before if r.preferred is not None]
    for r in scored:  # the rewards are the judge's own scores of each completion, the preferred one higher
        s0, s1 = exp.oracle.pointwise([r.prompt, r.prompt], [r.y0, r.y1])
        assert (r.oracle_score0, r.oracle_score1) == pytest.approx((s0, s1))
        assert (s1 > s0) == (r.preferred == 1)
    all_scores = [s for r in scored for s in (r.oracle_score0, r.oracle_score1)]
    assert thresholds[-1] == pytest.approx(float(np.percentile(all_scores, 50.0)))

    exp = Experiment(cfg, out, progress=False)
    asked: list = []
    judge = exp.oracle.judge
    exp.oracle.judge = lambda items: asked.extend(items) or judge(items)
    try:
        res = exp.run()
    finally:
        exp.close()
    assert res.summary["complete"] and res.summary["labels"] == 8
    after = list(RunFolder(out).read(AcquiredRow))
    assert [(r.oracle_score0, r.oracle_score1, r.preferred) for r in after] == [
        (r.oracle_score0, r.oracle_score1, r.preferred) for r in before
    ]
    assert all(r.cached for r in after if r.step == 2)
    step2 = {(r.prompt, r.y0, r.y1) for r in after if r.step == 2}
    assert asked  # the step-2 evaluation's comparisons, new after the kill
    assert not any((c.prompt, c.a, c.b) in step2 or (c.prompt, c.b, c.a) in step2 for c in asked)  # only evaluation was asked
    train_rows = RunFolder(out).rows("train.jsonl")  # both steps trained: the resumed step 2 on all of X_P
    assert [(t["step"], t["epoch"]) for t in train_rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(t["loss"] > 0 and math.isfinite(t["loss"]) for t in train_rows)
    from bench.archive import export_run  # the committed compact record keeps the rewards the run trained on

    assert [(a["oracle_score0"], a["oracle_score1"]) for a in export_run(out)["acquired"]] == [
        (r.oracle_score0, r.oracle_score1) for r in after
    ]
